with

searches as (

    select * from {{ ref('fct_searches') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

human_searches as (

    select searches.*

    from searches
    inner join users on searches.user_id = users.user_id
    where not users.is_excluded_traffic

),

steps as (

    select
        search_date as funnel_date,
        platform,
        count(distinct user_id) as searched_users,
        count(distinct case when has_viewed_results then user_id end) as results_users,
        count(distinct case when has_selected_fare then user_id end) as fare_selected_users,
        count(distinct case when has_begun_checkout then user_id end) as checkout_users,
        count(distinct case when is_converted then user_id end) as purchased_users

    from human_searches
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
