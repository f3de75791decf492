-- No booking is left without a search while an eligible search (same user, route and travel
-- date, at most var('attribution_window_days') before the purchase) is attributed to no booking.
-- Failing rows: raise var('attribution_passes').
with

purchases as (

    select * from {{ ref('stg_app__purchases') }}
    {{ where_recent_rows('stg_app__purchases') }}

),

searches as (

    select * from {{ ref('stg_app__searches') }}

),

attribution as (

    select * from {{ ref('int_searches_joined_to_bookings') }}

),

attributed_bookings as (

    select booking_id from attribution
    where booking_id is not null

),

final as (

    select
        purchases.booking_id,
        searches.search_id as free_search_id

    from purchases
    inner join searches
        on
            purchases.user_id = searches.user_id
            and purchases.origin_station_id = searches.origin_station_id
            and purchases.destination_station_id = searches.destination_station_id
            and purchases.travel_date = searches.travel_date
            and purchases.purchased_at >= searches.searched_at
            and searches.searched_at
            >= {{ add_days_to_timestamp(-1 * var('attribution_window_days'), 'purchases.purchased_at') }}
    inner join attribution
        on
            searches.search_id = attribution.search_id
            and attribution.booking_id is null
    left join attributed_bookings on purchases.booking_id = attributed_bookings.booking_id
    where attributed_bookings.booking_id is null

)

select * from final
