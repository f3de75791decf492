{#- The estimand: outcomes count from the searches a user made at or after their first exposure
    and within var('experiment_outcome_window_days') after it; a booking counts with the search
    it was made from (a search made before exposure never counts, even if booked after it).
    Revenue is net: gross - discount - the refunds paid inside the window (fct_bookings'
    definitions). The CUPED covariates are the same user's searches, bookings, revenue and the
    prices quoted to them (a proxy for the routes they travel) over
    var('experiment_pre_period_days') before the exposure (for a triggered experiment: before
    the trigger). A user exposed less than the window before the end of the data has an open
    window: flagged, so readouts compare whole windows only. -#}
with

exposures as (

    select * from {{ ref('experiment_exposures') }}
    where not is_excluded_traffic and not has_conflicting_variants

),

designs as (

    select * from {{ ref('experiment_designs') }}

),

searches as (

    select * from {{ ref('fct_searches') }}

),

bookings as (

    select * from {{ ref('fct_bookings') }}

),

windows as (

    select
        exposures.exposure_id,
        exposures.experiment_id,
        exposures.user_id,
        exposures.variant,
        exposures.exposed_at,
        {{ add_days_to_timestamp(var('experiment_outcome_window_days'), 'exposures.exposed_at') }}
            as outcome_window_end_at,
        {{ add_days_to_timestamp(-1 * var('experiment_pre_period_days'), 'exposures.exposed_at') }}
            as pre_period_start_at

    from exposures

),

user_searches as (

    select
        windows.exposure_id,
        searches.searched_at >= windows.exposed_at
        and searches.searched_at < windows.outcome_window_end_at as is_in_outcome_window,
        searches.searched_at < windows.exposed_at
        and searches.searched_at >= windows.pre_period_start_at as is_in_pre_period,
        bookings.booking_id is not null as is_booked,
        coalesce(searches.price_seen_eur, 0) as price_seen_eur,
        coalesce(bookings.gross_revenue_eur, 0) as gross_revenue_eur,
        coalesce(bookings.discount_eur, 0) as discount_eur,
        case
            when bookings.refunded_at < windows.outcome_window_end_at then bookings.refund_eur
            else 0
        end as refund_in_window_eur

    from windows
    inner join searches on windows.user_id = searches.user_id
    left join bookings on searches.booking_id = bookings.booking_id
    where
        searches.searched_at >= windows.pre_period_start_at
        and searches.searched_at < windows.outcome_window_end_at

),

outcomes as (

    select
        exposure_id,
        sum(case when is_in_outcome_window then 1 else 0 end) as searches,
        sum(case when is_in_outcome_window and is_booked then 1 else 0 end) as bookings,
        sum(case when is_in_outcome_window then gross_revenue_eur else 0 end) as gross_revenue_eur,
        sum(case when is_in_outcome_window then discount_eur else 0 end) as discount_eur,
        sum(case when is_in_outcome_window then refund_in_window_eur else 0 end) as refund_eur,
        sum(case when is_in_pre_period then 1 else 0 end) as pre_exposure_searches,
        sum(case when is_in_pre_period and is_booked then 1 else 0 end) as pre_exposure_bookings,
        sum(case when is_in_pre_period then gross_revenue_eur - discount_eur else 0 end)
            as pre_exposure_revenue_eur,
        sum(case when is_in_pre_period then price_seen_eur else 0 end) as pre_exposure_quoted_eur

    from user_searches
    group by 1

),

final as (

    select
        windows.exposure_id,
        windows.experiment_id,
        windows.user_id,
        windows.variant,
        windows.exposed_at,
        windows.outcome_window_end_at,
        cast(coalesce(outcomes.searches, 0) as {{ dbt.type_bigint() }}) as searches,
        cast(coalesce(outcomes.bookings, 0) as {{ dbt.type_bigint() }}) as bookings,
        coalesce(outcomes.bookings, 0) > 0 as is_converted,
        cast(coalesce(outcomes.gross_revenue_eur, 0) as {{ type_double() }}) as gross_revenue_eur,
        cast(coalesce(outcomes.discount_eur, 0) as {{ type_double() }}) as discount_eur,
        cast(coalesce(outcomes.refund_eur, 0) as {{ type_double() }}) as refund_eur,
        cast(
            coalesce(outcomes.gross_revenue_eur, 0)
            - coalesce(outcomes.discount_eur, 0)
            - coalesce(outcomes.refund_eur, 0)
            as {{ type_double() }}
        ) as revenue_eur,
        cast(coalesce(outcomes.pre_exposure_searches, 0) as {{ dbt.type_bigint() }}) as pre_exposure_searches,
        cast(coalesce(outcomes.pre_exposure_bookings, 0) as {{ dbt.type_bigint() }}) as pre_exposure_bookings,
        cast(coalesce(outcomes.pre_exposure_revenue_eur, 0) as {{ type_double() }}) as pre_exposure_revenue_eur,
        cast(coalesce(outcomes.pre_exposure_quoted_eur, 0) as {{ type_double() }}) as pre_exposure_quoted_eur,
        windows.outcome_window_end_at <= designs.data_end_at as is_outcome_window_complete

    from windows
    inner join designs on windows.experiment_id = designs.experiment_id
    left join outcomes on windows.exposure_id = outcomes.exposure_id

)

select * from final
