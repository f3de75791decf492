{#- Funnel reconstruction. Purchases do not carry the search id, so each booking is attributed to
    a search by the same user for the same origin, destination and travel date made at most
    var('attribution_window_days') before the purchase: the latest one that reached checkout
    before the purchase (checkouts carry their search id), or else the latest one. Each booking
    gets at most one search and each search at most one booking (the earliest purchase that
    chose it).
    Incremental: a late purchase on a rebuilt day may choose a search up to the attribution
    window earlier, so searches are rebuilt from one window before the lookback; a rebuilt search
    can only be chosen by purchases after it, and those compete for searches one window earlier
    still. -#}
{{
    config(
        materialized='incremental',
        unique_key='search_id',
        incremental_strategy=incremental_strategy(),
        partition_by=day_partition('search_date'),
        cluster_by=['search_id'],
    )
}}

{%- set since = incremental_since('search_date', extra_days=var('attribution_window_days')) %}
{%- set window_start = days_before(since, var('attribution_window_days')) %}

with

searches as (

    select * from {{ ref('stg_app__searches') }}
    {{ where_since('searched_at', window_start) }}

),

purchases as (

    select * from {{ ref('stg_app__purchases') }}
    {{ where_since('purchased_at', since) }}

),

checkouts as (

    select * from {{ ref('stg_app__checkouts') }}
    {{ where_since('checkout_started_at', window_start) }}

),

first_checkouts as (

    select
        search_id,
        min(checkout_started_at) as first_checkout_at

    from checkouts
    group by 1

),

candidates as (

    select
        purchases.booking_id,
        purchases.purchased_at,
        searches.search_id,
        row_number() over (
            partition by purchases.booking_id
            order by
                case when first_checkouts.first_checkout_at <= purchases.purchased_at then 0 else 1 end,
                searches.searched_at desc,
                searches.search_id desc
        ) as search_rank

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
    left join first_checkouts on searches.search_id = first_checkouts.search_id

),

chosen as (

    select
        booking_id,
        search_id,
        row_number() over (
            partition by search_id order by purchased_at, booking_id
        ) as booking_rank

    from candidates
    where search_rank = 1

),

final as (

    select
        searches.search_id,
        searches.searched_at,
        cast(searches.searched_at as date) as search_date,
        chosen.booking_id

    from searches
    left join chosen
        on
            searches.search_id = chosen.search_id
            and chosen.booking_rank = 1
    {{ where_since('searches.searched_at', since) }}

)

select * from final
