{#- A table: read by dim_users and its tests, built once per run. -#}
{{ config(materialized='table') }}

with

users as (

    select * from {{ ref('stg_app__users') }}

),

daily_searches as (

    select * from {{ ref('int_user_searches_daily') }}

),

sessions as (

    select * from {{ ref('int_sessions_aggregated') }}

),

purchases as (

    select * from {{ ref('stg_app__purchases') }}

),

event_users as (

    select distinct user_id
    from (
        {#- sessions and purchases, not int_user_activity_daily: that reads fct_bookings, which
            carries these flags -#}
        select user_id from daily_searches
        union all
        select user_id from sessions
        union all
        select user_id from purchases
    ) as seen

),

all_users as (

    {#- users in the extract, and users known only from their events: their extract row is
        late or was quarantined (a late-arriving dimension), so facts keep a user to point at -#}
    select
        user_id,
        is_internal_user,
        false as is_inferred_user

    from users

    union all

    select
        event_users.user_id,
        false as is_internal_user,
        true as is_inferred_user

    from event_users
    left join users on event_users.user_id = users.user_id
    where users.user_id is null

),

bots as (

    select
        user_id,
        max(searches) as max_daily_searches

    from daily_searches
    group by 1

),

final as (

    select
        all_users.user_id,
        all_users.is_internal_user,
        all_users.is_inferred_user,
        coalesce(bots.max_daily_searches, 0) as max_daily_searches,
        coalesce(bots.max_daily_searches, 0) > {{ var('bot_daily_search_threshold') }} as is_bot_user,
        all_users.is_internal_user
        or coalesce(bots.max_daily_searches, 0) > {{ var('bot_daily_search_threshold') }} as is_excluded_traffic

    from all_users
    left join bots on all_users.user_id = bots.user_id

)

select * from final
