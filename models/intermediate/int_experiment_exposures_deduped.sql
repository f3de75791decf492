with

exposures as (

    select * from {{ ref('stg_app__experiment_exposures') }}

),

ranked as (

    select
        *,
        row_number() over (
            partition by experiment_id, user_id order by exposed_at, event_id
        ) as exposure_rank,
        count(distinct variant) over (partition by experiment_id, user_id) as variants_seen

    from exposures

),

final as (

    select
        {{ dbt.concat(['experiment_id', "'|'", 'user_id']) }} as exposure_id,
        experiment_id,
        user_id,
        variant,
        exposed_at,
        platform,
        variants_seen > 1 as has_conflicting_variants

    from ranked
    where exposure_rank = 1

)

select * from final
