with

sessions as (

    select * from {{ ref('stg_app__sessions') }}

),

searches as (

    select * from {{ ref('stg_app__searches') }}

),

purchases as (

    select * from {{ ref('stg_app__purchases') }}

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
