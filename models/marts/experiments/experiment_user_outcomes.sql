{#- Outcomes count within var('experiment_outcome_window_days') after the first exposure; the
    CUPED covariate is the same metric over var('experiment_pre_period_days') before it. A user
    exposed less than that window before the end of the data (the last active day, as dim_users'
    as_of_date) has an open window: flagged, so readouts compare whole windows only. -#}
with

exposures as (

    select * from {{ ref('experiment_exposures') }}
    where not is_excluded_traffic and not has_conflicting_variants

),

bookings as (

    select * from {{ ref('fct_bookings') }}

),

activity as (

    select * from {{ ref('int_user_activity_daily') }}

),

data_end as (

    select {{ add_days_to_date(1, 'max(activity_date)') }} as end_date from activity

),

exposure_bookings as (

    select
        exposures.exposure_id,
        bookings.gross_revenue_eur - bookings.discount_eur as paid_eur,
        bookings.purchased_at >= exposures.exposed_at
        and bookings.purchased_at
        < {{ add_days_to_timestamp(var('experiment_outcome_window_days'), 'exposures.exposed_at') }}
            as is_in_outcome_window,
        bookings.purchased_at < exposures.exposed_at
        and bookings.purchased_at
        >= {{ add_days_to_timestamp(-1 * var('experiment_pre_period_days'), 'exposures.exposed_at') }}
            as is_in_pre_period

    from exposures
    inner join bookings on exposures.user_id = bookings.user_id

),

outcomes as (

    select
        exposure_id,
        sum(case when is_in_outcome_window then 1 else 0 end) as conversions,
        sum(case when is_in_outcome_window then paid_eur else 0 end) as revenue_eur,
        sum(case when is_in_pre_period then paid_eur else 0 end) as pre_exposure_revenue_eur,
        sum(case when is_in_pre_period then 1 else 0 end) as pre_exposure_bookings

    from exposure_bookings
    group by 1

),

final as (

    select
        exposures.exposure_id,
        exposures.experiment_id,
        exposures.user_id,
        exposures.variant,
        exposures.exposed_at,
        coalesce(outcomes.conversions, 0) > 0 as is_converted,
        cast(coalesce(outcomes.conversions, 0) as {{ dbt.type_bigint() }}) as conversions,
        cast(coalesce(outcomes.revenue_eur, 0) as {{ type_double() }}) as revenue_eur,
        cast(coalesce(outcomes.pre_exposure_revenue_eur, 0) as {{ type_double() }}) as pre_exposure_revenue_eur,
        cast(coalesce(outcomes.pre_exposure_bookings, 0) as {{ dbt.type_bigint() }}) as pre_exposure_bookings,
        {{ add_days_to_timestamp(var('experiment_outcome_window_days'), 'exposures.exposed_at') }}
        <= cast(data_end.end_date as {{ dbt.type_timestamp() }}) as is_outcome_window_complete

    from exposures
    cross join data_end
    left join outcomes on exposures.exposure_id = outcomes.exposure_id

)

select * from final
