{#- Hourly KPIs per platform (UTC hours: a tracking outage or a results outage lasts hours),
    for anomaly detection (ml/anomalies.py). Excluded traffic (classified bots, internal
    accounts) is left out; a bot wave the classification misses therefore shows up here. An hour
    without any event on a platform has no row. -#}
with

searches as (

    select * from {{ ref('fct_searches') }}
    where not is_excluded_traffic

),

results as (

    select * from {{ ref('stg_app__search_results') }}

),

checkouts as (

    select * from {{ ref('stg_app__checkouts') }}

),

purchases as (

    select * from {{ ref('stg_app__purchases') }}

),

users as (

    select * from {{ ref('int_users_classified') }}
    where not is_excluded_traffic

),

search_results as (

    select
        search_id,
        max(results_count) as results_count

    from results
    group by 1

),

search_hours as (

    select
        searches.platform,
        {{ dbt.date_trunc('hour', 'searches.searched_at') }} as hour_started_at,
        count(*) as searches,
        count(distinct searches.session_id) as search_sessions,
        sum(case when search_results.results_count > 0 then 1 else 0 end) as searches_with_results

    from searches
    left join search_results on searches.search_id = search_results.search_id
    group by 1, 2

),

checkout_hours as (

    select
        checkouts.platform,
        {{ dbt.date_trunc('hour', 'checkouts.checkout_started_at') }} as hour_started_at,
        count(distinct checkouts.search_id) as checkouts

    from checkouts
    inner join users on checkouts.user_id = users.user_id
    group by 1, 2

),

purchase_hours as (

    select
        purchases.platform,
        {{ dbt.date_trunc('hour', 'purchases.purchased_at') }} as hour_started_at,
        count(*) as purchases,
        sum(purchases.gross_price_eur) as gross_revenue_eur

    from purchases
    inner join users on purchases.user_id = users.user_id
    group by 1, 2

),

platform_hours as (

    select
        platform,
        hour_started_at
    from search_hours
    union distinct
    select
        platform,
        hour_started_at
    from checkout_hours
    union distinct
    select
        platform,
        hour_started_at
    from purchase_hours

),

final as (

    select
        {{ dbt.concat(['platform_hours.platform', "'|'", "cast(platform_hours.hour_started_at as " ~ dbt.type_string() ~ ")"]) }} as platform_hour_id,
        platform_hours.platform,
        platform_hours.hour_started_at,
        cast(platform_hours.hour_started_at as date) as hour_date,
        coalesce(search_hours.searches, 0) as searches,
        coalesce(search_hours.search_sessions, 0) as search_sessions,
        coalesce(search_hours.searches_with_results, 0) as searches_with_results,
        {{ safe_ratio('search_hours.searches_with_results', 'search_hours.searches') }} as results_rate,
        coalesce(checkout_hours.checkouts, 0) as checkouts,
        coalesce(purchase_hours.purchases, 0) as purchases,
        {{ safe_ratio('purchase_hours.purchases', 'checkout_hours.checkouts') }} as checkout_completion_rate,
        coalesce(purchase_hours.gross_revenue_eur, 0) as gross_revenue_eur

    from platform_hours
    left join search_hours
        on
            platform_hours.platform = search_hours.platform
            and platform_hours.hour_started_at = search_hours.hour_started_at
    left join checkout_hours
        on
            platform_hours.platform = checkout_hours.platform
            and platform_hours.hour_started_at = checkout_hours.hour_started_at
    left join purchase_hours
        on
            platform_hours.platform = purchase_hours.platform
            and platform_hours.hour_started_at = purchase_hours.hour_started_at

)

select * from final
