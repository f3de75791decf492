with

searches as (

    select * from {{ ref('fct_searches') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

user_days as (

    {#- one row per user, day and platform first: five distinct counts over every search would
        each build their own hash table -#}
    select
        searches.search_local_date as funnel_date,
        searches.platform,
        searches.user_id,
        max(case when searches.has_viewed_results then 1 else 0 end) as has_viewed_results,
        max(case when searches.has_selected_fare then 1 else 0 end) as has_selected_fare,
        max(case when searches.has_begun_checkout then 1 else 0 end) as has_begun_checkout,
        max(case when searches.is_converted then 1 else 0 end) as is_converted

    from searches
    inner join users on searches.user_id = users.user_id
    where not users.is_excluded_traffic
    group by 1, 2, 3

),

all_platform_user_days as (

    {#- a user on two platforms the same day is one user of the day: platform rows do not add up
        to daily users, so the day's total is its own row (platform 'all') -#}
    select
        funnel_date,
        'all' as platform,
        user_id,
        max(has_viewed_results) as has_viewed_results,
        max(has_selected_fare) as has_selected_fare,
        max(has_begun_checkout) as has_begun_checkout,
        max(is_converted) as is_converted

    from user_days
    group by 1, 2, 3

),

every_user_day as (

    select * from user_days
    union all
    select * from all_platform_user_days

),

steps as (

    select
        funnel_date,
        platform,
        count(*) as searched_users,
        cast(sum(has_viewed_results) as {{ dbt.type_bigint() }}) as results_users,
        cast(sum(has_selected_fare) as {{ dbt.type_bigint() }}) as fare_selected_users,
        cast(sum(has_begun_checkout) as {{ dbt.type_bigint() }}) as checkout_users,
        cast(sum(is_converted) as {{ dbt.type_bigint() }}) as purchased_users

    from every_user_day
    group by 1, 2

),

final as (

    select
        {{ dbt.concat(["cast(funnel_date as " ~ dbt.type_string() ~ ")", "'|'", 'platform']) }} as funnel_day_platform_id,
        funnel_date,
        platform,
        searched_users,
        results_users,
        fare_selected_users,
        checkout_users,
        purchased_users,
        {{ safe_ratio('results_users', 'searched_users') }} as search_to_results_rate,
        {{ safe_ratio('fare_selected_users', 'results_users') }} as results_to_fare_rate,
        {{ safe_ratio('checkout_users', 'fare_selected_users') }} as fare_to_checkout_rate,
        {{ safe_ratio('purchased_users', 'checkout_users') }} as checkout_to_purchase_rate,
        {{ safe_ratio('purchased_users', 'searched_users') }} as search_to_purchase_rate

    from steps

)

select * from final
