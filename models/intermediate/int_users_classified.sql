{#- A table: read by dim_users and its tests, built once per run. -#}
{{ config(materialized='table') }}

with

users as (

    select * from {{ ref('stg_app__users') }}

),

daily_searches as (

    select * from {{ ref('int_user_searches_daily') }}

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
        users.user_id,
        users.is_internal_user,
        coalesce(bots.max_daily_searches, 0) as max_daily_searches,
        coalesce(bots.max_daily_searches, 0) > {{ var('bot_daily_search_threshold') }} as is_bot_user,
        users.is_internal_user
        or coalesce(bots.max_daily_searches, 0) > {{ var('bot_daily_search_threshold') }} as is_excluded_traffic

    from users
    left join bots on users.user_id = bots.user_id

)

select * from final
