{#- Funnel reconstruction. Purchases do not carry the search id, so each booking is attributed to
    a search by the same user for the same origin, destination and travel date made at most
    var('attribution_window_days') before the purchase (a candidate). Candidates are ranked by
    their evidence, strongest first:
      1. the search reached checkout before the purchase at the price that was paid
         (checkouts carry their search id and price);
      2. it was made in the purchase's session;
      3. it asked for the same ticket (passengers, fare class, round trip);
      4. it reached checkout before the purchase (at any price);
      5. it is the latest (then the highest search id, for a total order).
    Each booking gets at most one search and each search at most one booking. The assignment runs
    in var('attribution_passes') rounds: in each round every booking still unattributed proposes
    its best search not yet taken, and a search proposed by several bookings goes to the one with
    the strongest evidence for it (then the earliest purchase). A booking that loses a contest
    proposes its next candidate in the following round, so no booking is left without a search
    while an eligible one is unclaimed (tests/dbt/singular/assert_no_unattributed_booking_with_a_free_search.sql
    fails the build if the rounds ever run out first).
    Incremental: a late purchase on a rebuilt day may choose a search up to one attribution
    window earlier, so the rebuild covers the lookback plus one window; purchases from one window
    before that compete for the same searches, and their searches reach one window earlier still.
    Each round reads only the previous one (no CTE referenced twice), so the cost grows linearly
    with the rounds. -#}
{{
    config(
        materialized='incremental',
        unique_key='search_id',
        incremental_strategy=incremental_strategy(),
        partition_by=day_partition('search_date'),
        cluster_by=['search_id'],
    )
}}

{%- set window_days = var('attribution_window_days') %}
{%- set since = incremental_since('search_date', extra_days=window_days) %}
{%- set purchases_since = days_before(since, window_days) %}
{%- set searches_since = days_before(purchases_since, window_days) %}

with

searches as (

    select * from {{ ref('stg_app__searches') }}
    {{ where_since('searched_at', searches_since) }}

),

purchases as (

    select * from {{ ref('stg_app__purchases') }}
    {{ where_since('purchased_at', purchases_since) }}

),

checkouts as (

    select * from {{ ref('stg_app__checkouts') }}
    {{ where_since('checkout_started_at', searches_since) }}

),

candidates as (

    select
        purchases.booking_id,
        purchases.purchased_at,
        searches.search_id,
        searches.searched_at,
        coalesce(max(
            case
                when
                    checkouts.checkout_started_at <= purchases.purchased_at
                    and checkouts.price_eur = purchases.gross_price_eur
                    then 1
                else 0
            end
        ), 0) as has_checkout_at_paid_price,
        coalesce(max(case when checkouts.checkout_started_at <= purchases.purchased_at then 1 else 0 end), 0)
            as has_checkout_before_purchase,
        case when searches.session_id = purchases.session_id then 1 else 0 end as is_same_session,
        case
            when
                searches.passengers = purchases.passengers
                and searches.fare_class = purchases.fare_class
                and searches.is_round_trip = purchases.is_round_trip
                then 1
            else 0
        end as is_same_ticket

    from purchases
    inner join searches on {{ is_attribution_candidate('purchases', 'searches') }}
    left join checkouts on searches.search_id = checkouts.search_id
    group by 1, 2, 3, 4, 7, 8

),

ranked as (

    select
        booking_id,
        search_id,
        searched_at,
        {#- the booking's preference among its candidates -#}
        row_number() over (
            partition by booking_id
            order by
                has_checkout_at_paid_price desc,
                is_same_session desc,
                is_same_ticket desc,
                has_checkout_before_purchase desc,
                searched_at desc,
                search_id desc
        ) as search_preference,
        {#- who wins the search when several bookings propose it -#}
        row_number() over (
            partition by search_id
            order by
                has_checkout_at_paid_price desc,
                is_same_session desc,
                is_same_ticket desc,
                has_checkout_before_purchase desc,
                purchased_at asc,
                booking_id asc
        ) as booking_precedence,
        false as is_matched

    from candidates

),

{% for round in range(1, var('attribution_passes') + 1) %}
    {%- set previous = 'ranked' if loop.first else 'round_' ~ (round - 1) %}

    round_{{ round }}_open as (

        select
            *,
            {#- still in play: neither its booking nor its search is taken yet -#}
            max(case when is_matched then 1 else 0 end) over (partition by booking_id) = 0
            and max(case when is_matched then 1 else 0 end) over (partition by search_id) = 0
                as is_open

        from {{ previous }}

    ),

    round_{{ round }}_proposed as (

        select
            *,
            is_open
            and row_number() over (
                partition by booking_id order by is_open desc, search_preference asc
            ) = 1 as is_proposed

        from round_{{ round }}_open

    ),

    round_{{ round }} as (

        select
            booking_id,
            search_id,
            searched_at,
            search_preference,
            booking_precedence,
            is_matched
            or (
                is_proposed
                and row_number() over (
                    partition by search_id order by is_proposed desc, booking_precedence asc
                ) = 1
            ) as is_matched

        from round_{{ round }}_proposed

    ),

{% endfor %}

matched as (

    select
        booking_id,
        search_id

    from round_{{ var('attribution_passes') }}
    where is_matched

),

final as (

    select
        searches.search_id,
        searches.searched_at,
        cast(searches.searched_at as date) as search_date,
        matched.booking_id

    from searches
    left join matched on searches.search_id = matched.search_id
    {{ where_since('searches.searched_at', since) }}

)

select * from final
