with

searches as (

    select * from {{ ref('fct_searches') }}

),

bookings as (

    select * from {{ ref('fct_bookings') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

search_days as (

    select
        searches.route_id,
        searches.search_date as performance_date,
        count(*) as searches,
        sum(case when searches.is_converted then 1 else 0 end) as converted_searches,
        avg(searches.lead_time_days) as avg_lead_time_days,
        avg(searches.price_seen_eur) as avg_price_seen_eur

    from searches
    inner join users on searches.user_id = users.user_id
    where not users.is_excluded_traffic
    group by 1, 2

),

booking_days as (

    select
        bookings.route_id,
        bookings.booking_date as performance_date,
        count(*) as bookings,
        sum(bookings.gross_revenue_eur) as gross_revenue_eur,
        sum(bookings.discount_eur) as discount_eur,
        sum(bookings.refund_eur) as refund_eur,
        sum(bookings.net_revenue_eur) as net_revenue_eur

    from bookings
    inner join users on bookings.user_id = users.user_id
    where not users.is_excluded_traffic
    group by 1, 2

),

final as (

    select
        {{ dbt.concat(['coalesce(search_days.route_id, booking_days.route_id)', "'|'", "cast(coalesce(search_days.performance_date, booking_days.performance_date) as " ~ dbt.type_string() ~ ")"]) }} as route_day_id,
        coalesce(search_days.route_id, booking_days.route_id) as route_id,
        coalesce(search_days.performance_date, booking_days.performance_date) as performance_date,
        coalesce(search_days.searches, 0) as searches,
        coalesce(search_days.converted_searches, 0) as converted_searches,
        coalesce(booking_days.bookings, 0) as bookings,
        case
            when coalesce(search_days.searches, 0) = 0 then null
            else cast(search_days.converted_searches as {{ type_double() }}) / search_days.searches
        end as conversion_rate,
        coalesce(booking_days.gross_revenue_eur, 0) as gross_revenue_eur,
        coalesce(booking_days.discount_eur, 0) as discount_eur,
        coalesce(booking_days.refund_eur, 0) as refund_eur,
        coalesce(booking_days.net_revenue_eur, 0) as net_revenue_eur,
        search_days.avg_lead_time_days,
        search_days.avg_price_seen_eur

    from search_days
    full outer join booking_days
        on
            search_days.route_id = booking_days.route_id
            and search_days.performance_date = booking_days.performance_date

)

select * from final
