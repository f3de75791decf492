with

purchases as (

    select * from {{ ref('stg_app__purchases') }}

),

cancellations as (

    select * from {{ ref('fct_cancellations') }}

),

users as (

    select * from {{ ref('int_users_classified') }}

),

stations as (

    select * from {{ ref('dim_stations') }}

),

attribution as (

    select * from {{ ref('int_searches_joined_to_bookings') }}
    where booking_id is not null

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
        cast({{ local_datetime('purchases.purchased_at', 'stations.timezone') }} as date) as booking_local_date,
        {{ hour_of_day(local_datetime('purchases.purchased_at', 'stations.timezone')) }} as booking_local_hour,
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
        cast(purchases.gross_price_eur - purchases.discount_eur as {{ dbt.type_numeric() }}) as booking_revenue_eur,
        cast(coalesce(cancellations.refund_eur, 0) as {{ dbt.type_numeric() }}) as refund_eur,
        cast(
            purchases.gross_price_eur - purchases.discount_eur - coalesce(cancellations.refund_eur, 0)
            as {{ dbt.type_numeric() }}
        ) as booking_cohort_net_revenue_eur,
        cancellations.cancelled_at,
        cancellations.cancel_reason,
        cancellations.refunded_at,
        cancellations.refund_date,
        cancellations.booking_id is not null as is_cancelled,
        coalesce(cancellations.is_refunded, false) as is_refunded,
        purchases.discount_eur > 0 as has_discount,
        users.is_bot_user,
        users.is_internal_user,
        users.is_excluded_traffic

    from purchases
    left join attribution on purchases.booking_id = attribution.booking_id
    left join cancellations on purchases.booking_id = cancellations.booking_id
    inner join users on purchases.user_id = users.user_id
    left join stations on purchases.origin_station_id = stations.station_id

)

select * from final
