{{ config(materialized='view') }}

{#- Users the CRM may contact: real users (no internal or bot traffic) whose current consent in
    the users snapshot allows marketing (the latest of the users extract and the consent events,
    see int_users_consent_resolved), with their latest search, their scores and their one CRM
    audience. Audience priority (one audience per user): both audiences start from users who
    searched recently and have not booked since; a user whose latest search scored medium or
    high intent is `high_intent` (a message about that search, with at most a 5% discount),
    whatever their churn risk; the others above the churn threshold are `high_churn_risk`
    (the costlier 10% win-back offer). Users in neither whose predicted 90-day net revenue is
    in the top decile (ltv_band 'high') are `high_value` (recognition, no discount): it needs no
    recent search, since a valuable customer is worth keeping close between trips. -#}
with

users as (

    select * from {{ ref('dim_users') }}

),

consent as (

    select * from {{ ref('users_snapshot') }}
    where dbt_valid_to is null

),

searches as (

    select * from {{ ref('fct_searches') }}

),

propensity as (

    select * from {{ source('ml', 'search_propensity_scores') }}

),

churn as (

    select * from {{ source('ml', 'churn_scores') }}

),

segments as (

    select * from {{ source('ml', 'user_segments') }}

),

ltv as (

    select * from {{ source('ml', 'user_ltv_scores') }}

),

latest_search as (

    select
        searches.user_id,
        searches.search_id,
        searches.route_id,
        searches.searched_at,
        searches.is_converted,
        row_number() over (
            partition by searches.user_id order by searches.searched_at desc, searches.search_id desc
        ) as search_rank

    from searches

),

last_booking as (

    select
        user_id,
        max(purchased_at) as last_booked_at

    from {{ ref('fct_bookings') }}
    group by 1

),

eligible as (

    select
        users.user_id,
        users.as_of_date,
        latest_search.search_id as last_search_id,
        latest_search.route_id as last_searched_route,
        latest_search.searched_at as last_searched_at,
        last_booking.last_booked_at,
        {#- both audiences start from users who searched recently and have not booked since -#}
        latest_search.searched_at
        >= {{ add_days_to_timestamp(-1 * var('crm_recent_search_days'), 'cast(users.as_of_date as ' ~ dbt.type_timestamp() ~ ')') }}
        and not coalesce(last_booking.last_booked_at > latest_search.searched_at, false)
            as is_recent_unbooked_searcher,
        propensity.propensity,
        propensity.intent_band,
        churn.churn_probability,
        churn.churn_band,
        ltv.predicted_net_revenue_90d_eur,
        ltv.ltv_band,
        coalesce(segments.segment_name, 'No bookings yet') as segment_name

    from users
    inner join consent on users.user_id = consent.user_id
    inner join latest_search
        on
            users.user_id = latest_search.user_id
            and latest_search.search_rank = 1
    left join last_booking on users.user_id = last_booking.user_id
    left join propensity on latest_search.search_id = propensity.search_id
    left join churn on users.user_id = churn.user_id
    left join segments on users.user_id = segments.user_id
    left join ltv on users.user_id = ltv.user_id
    where
        not users.is_excluded_traffic
        and consent.has_marketing_consent

),

final as (

    select
        *,
        case
            when is_recent_unbooked_searcher and intent_band in ('medium', 'high') then 'high_intent'
            when is_recent_unbooked_searcher and churn_probability > {{ var('crm_churn_threshold') }}
                then 'high_churn_risk'
            when ltv_band = 'high' then 'high_value'
        end as crm_audience

    from eligible

)

select * from final
