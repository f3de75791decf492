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
    inner join searches on {{ is_attribution_candidate('purchases', 'searches') }}
    inner join attribution
        on
            searches.search_id = attribution.search_id
            and attribution.booking_id is null
    left join attributed_bookings on purchases.booking_id = attributed_bookings.booking_id
    where attributed_bookings.booking_id is null

)

select * from final
