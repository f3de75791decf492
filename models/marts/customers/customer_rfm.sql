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
        {{ quintile_score('recency_days desc') }} as recency_score,
        {{ quintile_score('frequency') }} as frequency_score,
        {{ quintile_score('monetary_eur') }} as monetary_score

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
