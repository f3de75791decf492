with

exposures as (

    select * from {{ ref('int_experiment_exposures_deduped') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

final as (

    select
        exposures.exposure_id,
        exposures.experiment_id,
        exposures.user_id,
        exposures.variant,
        exposures.exposed_at,
        cast(exposures.exposed_at as date) as exposure_date,
        exposures.platform,
        exposures.has_conflicting_variants,
        users.is_excluded_traffic

    from exposures
    inner join users on exposures.user_id = users.user_id

)

select * from final
