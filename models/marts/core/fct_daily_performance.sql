{#- Each figure on the day it is reported on: searches on the search date, bookings revenue
    (gross, discount) on the booking date, refunds on the refund date; net = gross − discount −
    refund of the same day. A refund after month end therefore moves only the refund's month.
    Excluded traffic (bots, internal accounts) is left out, by the facts' own flag. -#}
with

searches as (

    select * from {{ ref('fct_searches') }}
    where not is_excluded_traffic

),

bookings as (

    select * from {{ ref('fct_bookings') }}
    where not is_excluded_traffic

),

cancellations as (

    select * from {{ ref('fct_cancellations') }}
    where not is_excluded_traffic and is_refunded

),

search_days as (

    select
        route_id,
        search_date as performance_date,
        count(*) as searches,
        sum(case when is_converted then 1 else 0 end) as converted_searches,
        avg(lead_time_days) as avg_lead_time_days,
        avg(price_seen_eur) as avg_price_seen_eur

    from searches
    group by 1, 2

),

booking_days as (

    select
        route_id,
        booking_date as performance_date,
        count(*) as bookings,
        sum(gross_revenue_eur) as gross_revenue_eur,
        sum(discount_eur) as discount_eur

    from bookings
    group by 1, 2

),

refund_days as (

    select
        route_id,
        refund_date as performance_date,
        count(*) as refunded_bookings,
        sum(refund_eur) as refund_eur

    from cancellations
    group by 1, 2

),

route_days as (

    select
        route_id,
        performance_date
    from search_days
    union distinct
    select
        route_id,
        performance_date
    from booking_days
    union distinct
    select
        route_id,
        performance_date
    from refund_days

),

final as (

    select
        {{ dbt.concat(['route_days.route_id', "'|'", "cast(route_days.performance_date as " ~ dbt.type_string() ~ ")"]) }} as route_day_id,
        route_days.route_id,
        route_days.performance_date,
        cast(coalesce(search_days.searches, 0) as {{ dbt.type_bigint() }}) as searches,
        cast(coalesce(search_days.converted_searches, 0) as {{ dbt.type_bigint() }}) as converted_searches,
        cast(coalesce(booking_days.bookings, 0) as {{ dbt.type_bigint() }}) as bookings,
        cast(coalesce(refund_days.refunded_bookings, 0) as {{ dbt.type_bigint() }}) as refunded_bookings,
        {{ safe_ratio('search_days.converted_searches', 'search_days.searches') }} as conversion_rate,
        cast(coalesce(booking_days.gross_revenue_eur, 0) as {{ dbt.type_numeric() }}) as gross_revenue_eur,
        cast(coalesce(booking_days.discount_eur, 0) as {{ dbt.type_numeric() }}) as discount_eur,
        cast(coalesce(refund_days.refund_eur, 0) as {{ dbt.type_numeric() }}) as refund_eur,
        cast(
            coalesce(booking_days.gross_revenue_eur, 0)
            - coalesce(booking_days.discount_eur, 0)
            - coalesce(refund_days.refund_eur, 0)
            as {{ dbt.type_numeric() }}
        ) as net_revenue_eur,
        cast(search_days.avg_lead_time_days as {{ type_double() }}) as avg_lead_time_days,
        cast(search_days.avg_price_seen_eur as {{ type_double() }}) as avg_price_seen_eur

    from route_days
    left join search_days
        on
            route_days.route_id = search_days.route_id
            and route_days.performance_date = search_days.performance_date
    left join booking_days
        on
            route_days.route_id = booking_days.route_id
            and route_days.performance_date = booking_days.performance_date
    left join refund_days
        on
            route_days.route_id = refund_days.route_id
            and route_days.performance_date = refund_days.performance_date

)

select * from final
