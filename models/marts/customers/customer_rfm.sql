with

rfm as (

    select * from {{ ref('ml_rfm_features') }}

),

scored as (

    select
        user_id,
        as_of_date,
        recency_days,
        frequency,
        monetary_eur,
        ntile(5) over (order by recency_days desc, user_id asc) as recency_score,
        ntile(5) over (order by frequency, user_id) as frequency_score,
        ntile(5) over (order by monetary_eur, user_id) as monetary_score

    from rfm

),

final as (

    select
        user_id,
        as_of_date,
        recency_days,
        frequency,
        monetary_eur,
        recency_score,
        frequency_score,
        monetary_score,
        {{ dbt.concat(['cast(recency_score as ' ~ dbt.type_string() ~ ')', 'cast(frequency_score as ' ~ dbt.type_string() ~ ')', 'cast(monetary_score as ' ~ dbt.type_string() ~ ')']) }} as rfm_code,
        {{ rfm_segment('recency_score', 'frequency_score', 'monetary_score') }} as rfm_segment

    from scored

)

select * from final
