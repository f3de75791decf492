{#- Point-in-time features: user history counts only what happened before the search.
    Incremental like fct_searches (a late purchase can still convert an older search); a user's
    history before the rebuilt days is summed once per user instead of re-walking every event.
    search_id breaks ties between searches at the same instant: without it the counts, and the
    model trained on them, would change from run to run.
    Late users: a user known only from events (inferred: no users extract row yet) has no
    features. When their extract row arrives, an incremental run also rebuilds every search of
    each real user who has searches but no row here yet, so it gives the same rows as a full
    refresh (their history is then walked in full instead of summed). -#}
{{
    config(
        materialized='incremental',
        unique_key='search_id',
        incremental_strategy=incremental_strategy(),
        partition_by=day_partition('search_date'),
        cluster_by=['user_id'],
        on_schema_change='append_new_columns',
        post_hook="{{ delete_rows_of_excluded_users() }}",
    )
}}

{%- set since = incremental_since('search_date', extra_days=var('attribution_window_days')) %}

with

users as (

    select * from {{ ref('dim_users') }}

),

late_users as (

    {#- real users with searches before the rebuilt days but no feature row yet: their extract
        row arrived after their searches were built (none on a first run or full refresh) -#}
    {%- if since is none %}
        select users.user_id
        from users
        where false
    {%- else %}
        select users.user_id

        from users
        where
            not users.is_excluded_traffic
            and not users.is_inferred_user
            and users.user_id in (
                select user_id from {{ ref('fct_searches') }}
                {{ where_before('search_date', since, 'date') }}
            )
            and users.user_id not in (select user_id from {{ this }})
    {%- endif %}

),

searches as (

    select * from {{ ref('fct_searches') }}
    {%- if since is not none %}
        where
            search_date >= {{ since_literal(since, 'date') }}
            or user_id in (select user_id from late_users)
    {%- endif %}

),

bookings as (

    select * from {{ ref('fct_bookings') }}
    {%- if since is not none %}
        where
            purchased_at >= {{ since_literal(since) }}
            or user_id in (select user_id from late_users)
    {%- endif %}

),

earlier_searches as (

    select
        earlier.user_id,
        count(*) as searches

    from {{ ref('fct_searches') }} as earlier
    where
        {{ 'false' if since is none else 'earlier.search_date < ' ~ since_literal(since, 'date') }}
        and earlier.user_id not in (select late_users.user_id from late_users)
    group by 1

),

earlier_bookings as (

    select
        earlier.user_id,
        count(*) as bookings

    from {{ ref('fct_bookings') }} as earlier
    where
        {{ 'false' if since is none else 'earlier.purchased_at < ' ~ since_literal(since) }}
        and earlier.user_id not in (select late_users.user_id from late_users)
    group by 1

),

routes as (

    select * from {{ ref('dim_routes') }}

),

user_events as (

    select
        user_id,
        searched_at as event_at,
        search_id,
        1 as is_search,
        0 as is_booking

    from searches

    union all

    select
        user_id,
        purchased_at as event_at,
        cast(null as {{ dbt.type_string() }}) as search_id,
        0 as is_search,
        1 as is_booking

    from bookings

),

history as (

    select
        search_id,
        sum(is_search) over (
            partition by user_id order by event_at asc, is_booking desc, search_id asc
            rows between unbounded preceding and 1 preceding
        ) as user_prior_searches,
        sum(is_booking) over (
            partition by user_id order by event_at asc, is_booking desc, search_id asc
            rows between unbounded preceding and 1 preceding
        ) as user_prior_bookings

    from user_events

),

final as (

    select
        searches.search_id,
        searches.user_id,
        searches.searched_at,
        searches.search_date,
        searches.origin_station_id,
        searches.destination_station_id,
        searches.route_id,
        searches.platform,
        cast(searches.lead_time_days as {{ dbt.type_bigint() }}) as lead_time_days,
        cast(searches.search_hour as {{ dbt.type_bigint() }}) as search_hour,
        cast(searches.search_day_of_week as {{ dbt.type_bigint() }}) as search_day_of_week,
        cast(searches.price_seen_eur as {{ type_double() }}) as price_seen_eur,
        cast(routes.base_fare_eur as {{ type_double() }}) as route_base_fare_eur,
        cast(searches.passengers as {{ dbt.type_bigint() }}) as passengers,
        searches.fare_class,
        searches.is_round_trip,
        searches.is_holiday_travel as is_holiday,
        cast(
            coalesce(earlier_searches.searches, 0) + coalesce(history.user_prior_searches, 0)
            as {{ dbt.type_bigint() }}
        ) as user_prior_searches,
        cast(
            coalesce(earlier_bookings.bookings, 0) + coalesce(history.user_prior_bookings, 0)
            as {{ dbt.type_bigint() }}
        ) as user_prior_bookings,
        cast({{ dbt.datediff('users.signup_date', 'searches.search_date', 'day') }} as {{ dbt.type_bigint() }}
        )
            as days_since_signup,
        searches.is_converted

    from searches
    inner join users on searches.user_id = users.user_id
    inner join routes on searches.route_id = routes.route_id
    left join history on searches.search_id = history.search_id
    left join earlier_searches on searches.user_id = earlier_searches.user_id
    left join earlier_bookings on searches.user_id = earlier_bookings.user_id
    where
        not users.is_excluded_traffic
        and not users.is_inferred_user  -- profile features unknown
        and searches.price_seen_eur is not null

)

select * from final
