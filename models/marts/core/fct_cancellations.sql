{#- One row per cancelled booking: a booking with a cancellation, a refund, or both (a refund
    whose cancellation event was lost still counts). Refunds are reported on their refund date,
    not on the booking date, so a closed month never changes when a refund arrives later. A
    booking is refunded once (tracking plan); were it refunded in parts, the parts add up and
    the last one's time is the refund time. Bookings revenue lives in fct_bookings. -#}
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

users as (

    select * from {{ ref('int_users_classified') }}

),

first_cancellation as (

    select
        booking_id,
        cancelled_at,
        cancel_reason,
        row_number() over (
            partition by booking_id order by cancelled_at, event_id
        ) as cancellation_rank

    from cancellations

),

refund_totals as (

    select
        booking_id,
        sum(refund_eur) as refund_eur,
        max(refunded_at) as refunded_at

    from refunds
    group by 1

),

cancelled_bookings as (

    select booking_id from first_cancellation
    where cancellation_rank = 1
    union distinct
    select booking_id from refund_totals

),

final as (

    select
        purchases.booking_id,
        purchases.user_id,
        purchases.platform,
        purchases.purchased_at,
        cast(purchases.purchased_at as date) as booking_date,
        {{ dbt.concat(['purchases.origin_station_id', "'-'", 'purchases.destination_station_id']) }} as route_id,
        first_cancellation.cancelled_at,
        cast(first_cancellation.cancelled_at as date) as cancellation_date,
        coalesce(first_cancellation.cancel_reason, 'unknown') as cancel_reason,
        cast(coalesce(refund_totals.refund_eur, 0) as {{ dbt.type_numeric() }}) as refund_eur,
        refund_totals.refunded_at,
        cast(refund_totals.refunded_at as date) as refund_date,
        {{ dbt.datediff('cast(purchases.purchased_at as date)', 'cast(refund_totals.refunded_at as date)', 'day') }}
            as days_booking_to_refund,
        refund_totals.booking_id is not null as is_refunded,
        users.is_bot_user,
        users.is_internal_user,
        users.is_excluded_traffic

    from cancelled_bookings
    inner join purchases on cancelled_bookings.booking_id = purchases.booking_id
    left join first_cancellation
        on
            cancelled_bookings.booking_id = first_cancellation.booking_id
            and first_cancellation.cancellation_rank = 1
    left join refund_totals on cancelled_bookings.booking_id = refund_totals.booking_id
    inner join users on purchases.user_id = users.user_id

)

select * from final
