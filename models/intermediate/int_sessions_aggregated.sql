{#- Incremental: sessions starting on the rebuilt days, with one extra day so a session that
    started the evening before still gets its late events (sessions last hours, not days). -#}
{{
    config(
        materialized='incremental',
        unique_key='session_id',
        incremental_strategy=incremental_strategy(),
        partition_by=day_partition('session_date'),
        cluster_by=['user_id'],
    )
}}

{%- set since = incremental_since('session_date', extra_days=1) %}

with

sessions as (

    select * from {{ ref('stg_app__sessions') }}
    {{ where_since('started_at', since) }}

),

searches as (

    select * from {{ ref('stg_app__searches') }}
    {{ where_since('searched_at', since) }}

),

purchases as (

    select * from {{ ref('stg_app__purchases') }}
    {{ where_since('purchased_at', since) }}

),

search_counts as (

    select
        session_id,
        count(*) as searches,
        max(searched_at) as last_searched_at

    from searches
    group by 1

),

purchase_counts as (

    select
        session_id,
        count(*) as purchases,
        max(purchased_at) as last_purchased_at

    from purchases
    group by 1

),

final as (

    select
        sessions.session_id,
        sessions.user_id,
        sessions.platform,
        sessions.utm_source,
        sessions.started_at,
        cast(sessions.started_at as date) as session_date,
        coalesce(search_counts.searches, 0) as searches,
        coalesce(purchase_counts.purchases, 0) as purchases,
        greatest(
            sessions.started_at,
            coalesce(search_counts.last_searched_at, sessions.started_at),
            coalesce(purchase_counts.last_purchased_at, sessions.started_at)
        ) as last_event_at

    from sessions
    left join search_counts on sessions.session_id = search_counts.session_id
    left join purchase_counts on sessions.session_id = purchase_counts.session_id

)

select * from final
