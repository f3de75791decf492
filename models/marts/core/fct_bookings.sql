with

purchases as (

    select * from {{ ref('stg_app__purchases') }}

),

cancellations as (

    select * from {{ ref('stg_app__cancellations') }}

),

refunds as (

    select * from {{ ref('stg_app__refunds') }}

),

attribution as (

    select * from {{ ref('int_searches_joined_to_bookings') }}
    where booking_id is not null

),

first_cancellation as (

    select
        booking_id,
        min(cancelled_at) as cancelled_at

    from cancellations
    group by 1

),

refund_totals as (

    select
        booking_id,
        sum(refund_eur) as refund_eur,
        max(refunded_at) as refunded_at

    from refunds
    group by 1

),

final as (

    select
        purchases.booking_id,
        purchases.user_id,
        purchases.session_id,
        attribution.search_id,
        purchases.platform,
        purchases.purchased_at,
        cast(purchases.purchased_at as date) as booking_date,
        {{ dbt.concat(['purchases.origin_station_id', "'-'", 'purchases.destination_station_id']) }} as route_id,
        purchases.origin_station_id,
        purchases.destination_station_id,
        purchases.travel_date,
        {{ dbt.datediff('cast(purchases.purchased_at as date)', 'purchases.travel_date', 'day') }}             as lead_time_days,
        purchases.passengers,
        purchases.fare_class,
        purchases.is_round_trip,
        purchases.gross_price_eur as gross_revenue_eur,
        purchases.discount_eur,
        coalesce(refund_totals.refund_eur, 0) as refund_eur,
        purchases.gross_price_eur - purchases.discount_eur - coalesce(refund_totals.refund_eur, 0) as net_revenue_eur,
        first_cancellation.cancelled_at,
        refund_totals.refunded_at,
        first_cancellation.booking_id is not null as is_cancelled,
        purchases.discount_eur > 0 as has_discount

    from purchases
    left join attribution on purchases.booking_id = attribution.booking_id
    left join first_cancellation on purchases.booking_id = first_cancellation.booking_id
    left join refund_totals on purchases.booking_id = refund_totals.booking_id

)

select * from final
