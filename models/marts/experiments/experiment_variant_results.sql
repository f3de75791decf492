with

outcomes as (

    select * from {{ ref('experiment_user_outcomes') }}
    where is_outcome_window_complete

),

final as (

    select
        {{ dbt.concat(['experiment_id', "'|'", 'variant']) }} as experiment_variant_id,
        experiment_id,
        variant,
        count(*) as exposed_users,
        sum(case when is_converted then 1 else 0 end) as converters,
        sum(searches) as searches,
        sum(bookings) as bookings,
        sum(revenue_eur) as revenue_eur,
        sum(refund_eur) as refund_eur,
        avg(case when is_converted then 1.0 else 0.0 end) as conversion_rate,
        avg(revenue_eur) as revenue_per_user_eur,
        stddev_samp(revenue_eur) as revenue_per_user_sd_eur,
        avg(pre_exposure_revenue_eur) as avg_pre_exposure_revenue_eur,
        min(exposed_at) as first_exposed_at,
        max(exposed_at) as last_exposed_at

    from outcomes
    group by 1, 2, 3

)

select * from final
