{{
    config(
        materialized='incremental',
        unique_key='search_id',
        incremental_strategy=incremental_strategy(),
        partition_by=day_partition('search_date'),
        cluster_by=['route_id', 'user_id'],
        on_schema_change='append_new_columns',
        post_hook="{{ refresh_traffic_flags() }}",
    )
}}

{#- a late purchase can convert a search up to the attribution window before the lookback -#}
{%- set since = incremental_since('search_date', extra_days=var('attribution_window_days')) %}

with

searches as (

    select * from {{ ref('stg_app__searches') }}
    {{ where_since('searched_at', since) }}

),

results as (

    select * from {{ ref('stg_app__search_results') }}
    {{ where_since('viewed_at', since) }}

),

fare_selections as (

    select * from {{ ref('stg_app__fare_selections') }}
    {{ where_since('selected_at', since) }}

),

checkouts as (

    select * from {{ ref('stg_app__checkouts') }}
    {{ where_since('checkout_started_at', since) }}

),

attribution as (

    select * from {{ ref('int_searches_joined_to_bookings') }}
    {{ where_since('search_date', since, 'date') }}

),

stations as (

    select * from {{ ref('dim_stations') }}

),

holidays as (

    select * from {{ ref('holidays') }}

),

users as (

    select * from {{ ref('int_users_classified') }}

),

first_results as (

    select
        search_id,
        min(price_eur) as price_seen_eur,
        max(discount_eur) as discount_offered_eur

    from results
    group by 1

),

selected as (

    select distinct search_id from fare_selections

),

checked_out as (

    select distinct search_id from checkouts

),

origin_holidays as (

    select distinct
        holiday_date,
        country_code

    from holidays

),

final as (

    select
        searches.search_id,
        searches.user_id,
        searches.session_id,
        searches.platform,
        searches.searched_at,
        cast(searches.searched_at as date) as search_date,
        {{ hour_of_day('searches.searched_at') }} as search_hour,
        {{ day_of_week('searches.searched_at') }} as search_day_of_week,
        cast({{ local_datetime('searches.searched_at', 'stations.timezone') }} as date) as search_local_date,
        {{ hour_of_day(local_datetime('searches.searched_at', 'stations.timezone')) }} as search_local_hour,
        {{ dbt.concat(['searches.origin_station_id', "'-'", 'searches.destination_station_id']) }} as route_id,
        searches.origin_station_id,
        searches.destination_station_id,
        searches.travel_date,
        {{ dbt.datediff('cast(searches.searched_at as date)', 'searches.travel_date', 'day') }}             as lead_time_days,
        searches.passengers,
        searches.fare_class,
        searches.is_round_trip,
        first_results.price_seen_eur,
        coalesce(first_results.discount_offered_eur, 0) as discount_offered_eur,
        origin_holidays.holiday_date is not null as is_holiday_travel,
        first_results.search_id is not null as has_viewed_results,
        selected.search_id is not null as has_selected_fare,
        checked_out.search_id is not null as has_begun_checkout,
        attribution.booking_id,
        attribution.booking_id is not null as is_converted,
        users.is_bot_user,
        users.is_internal_user,
        users.is_excluded_traffic

    from searches
    left join first_results on searches.search_id = first_results.search_id
    left join selected on searches.search_id = selected.search_id
    left join checked_out on searches.search_id = checked_out.search_id
    left join attribution on searches.search_id = attribution.search_id
    left join stations on searches.origin_station_id = stations.station_id
    inner join users on searches.user_id = users.user_id
    left join origin_holidays
        on
            searches.travel_date = origin_holidays.holiday_date
            and stations.country_code = origin_holidays.country_code

)

select * from final
