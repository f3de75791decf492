-- Net revenue agrees exactly across fct_daily_performance, fct_bookings and the raw events
-- (purchases − discounts − refunds, first delivery of each event, real users only).
with

users as (

    select * from {{ ref('dim_users') }}
    where not is_excluded_traffic

),

performance as (

    select sum(net_revenue_eur) as net_revenue_eur from {{ ref('fct_daily_performance') }}

),

bookings as (

    select sum(fct_bookings.net_revenue_eur) as net_revenue_eur
    from {{ ref('fct_bookings') }} as fct_bookings
    inner join users on fct_bookings.user_id = users.user_id

),

raw_purchases as (

    select distinct
        purchases.event_id,
        purchases.booking_id,
        cast(purchases.price_eur as {{ dbt.type_numeric() }})
        - cast(purchases.discount_eur as {{ dbt.type_numeric() }}) as paid_eur
    from {{ source('app', 'ticket_purchased') }} as purchases
    inner join users on purchases.user_id = users.user_id

),

raw_refunds as (

    select distinct
        refunds.event_id,
        cast(refunds.refund_eur as {{ dbt.type_numeric() }}) as refund_eur
    from {{ source('app', 'booking_refunded') }} as refunds
    inner join raw_purchases on refunds.booking_id = raw_purchases.booking_id

),

raw_totals as (

    select
        (select sum(paid_eur) from raw_purchases)
        - coalesce((select sum(refund_eur) from raw_refunds), 0) as net_revenue_eur

)

-- `is distinct from`: an empty mart sums to null, which must not pass for agreement
select
    performance.net_revenue_eur as performance_net_eur,
    bookings.net_revenue_eur as bookings_net_eur,
    raw_totals.net_revenue_eur as raw_net_eur
from performance
cross join bookings
cross join raw_totals
where
    performance.net_revenue_eur is distinct from bookings.net_revenue_eur
    or bookings.net_revenue_eur is distinct from raw_totals.net_revenue_eur
