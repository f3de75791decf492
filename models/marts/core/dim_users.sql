{#- The LTV scores are written by the ml stage, after this model's first build: they are read
    when the table exists (null columns before the first scoring) and the pipeline's dbt_sync
    stage rebuilds this model once scoring is done, so after a run dim_users carries the scores
    of that run. (A dbt ref would be a cycle: the ml feature marts read dim_users.) -#}
{%- set ltv_scores = adapter.get_relation(
    database=target.database,
    schema=layer_schema_name('ml'),
    identifier='user_ltv_scores',
) if execute else none %}
{%- set ltv_value = 'ltv_scores.predicted_net_revenue_90d_eur' if ltv_scores is not none else 'null' %}
{%- set ltv_band = 'ltv_scores.ltv_band' if ltv_scores is not none else 'null' %}

with

users as (

    select * from {{ ref('stg_app__users') }}

),

classified as (

    select * from {{ ref('int_users_classified') }}

),

activity as (

    select * from {{ ref('int_user_activity_daily') }}

),

bookings as (

    select * from {{ ref('fct_bookings') }}

),

as_of as (

    select max(activity_date) as as_of_date from activity

),

user_bookings as (

    select
        user_id,
        count(*) as lifetime_bookings,
        sum(booking_cohort_net_revenue_eur) as lifetime_net_revenue_eur,
        min(purchased_at) as first_booking_at,
        max(purchased_at) as last_booking_at

    from bookings
    group by 1

),

{%- if ltv_scores is not none %}

ltv_scores as (

    select * from {{ ltv_scores }}

),
{%- endif %}

user_activity as (

    select
        user_id,
        max(activity_date) as last_active_date

    from activity
    group by 1

),

final as (

    select
        classified.user_id,
        classified.is_inferred_user,
        users.email_sha256,
        users.signed_up_at,
        cast(users.signed_up_at as date) as signup_date,
        users.country_code,
        users.home_station_id,
        users.age_band,
        users.acquisition_channel,
        users.signup_platform,
        users.has_loyalty_card,
        users.has_marketing_consent,
        classified.is_internal_user,
        classified.is_bot_user,
        classified.is_excluded_traffic,
        cast(coalesce(user_bookings.lifetime_bookings, 0) as {{ dbt.type_bigint() }}) as lifetime_bookings,
        cast(coalesce(user_bookings.lifetime_net_revenue_eur, 0) as {{ dbt.type_numeric() }}) as lifetime_net_revenue_eur,
        user_bookings.first_booking_at,
        user_bookings.last_booking_at,
        user_activity.last_active_date,
        as_of.as_of_date,
        {{ dbt.datediff('cast(users.signed_up_at as date)', 'as_of.as_of_date', 'day') }}             as days_since_signup,
        {{ dbt.datediff('user_activity.last_active_date', 'as_of.as_of_date', 'day') }}             as days_since_last_activity,
        {{ lifecycle_stage(
            dbt.datediff('cast(users.signed_up_at as date)', 'as_of.as_of_date', 'day'),
            dbt.datediff('user_activity.last_active_date', 'as_of.as_of_date', 'day'),
            'coalesce(user_bookings.lifetime_bookings, 0)'
        ) }} as lifecycle_stage,
        cast({{ ltv_value }} as {{ type_double() }}) as predicted_net_revenue_90d_eur,
        cast({{ ltv_band }} as {{ dbt.type_string() }}) as ltv_band

    from classified
    cross join as_of
    left join users on classified.user_id = users.user_id
    left join user_bookings on classified.user_id = user_bookings.user_id
    left join user_activity on classified.user_id = user_activity.user_id
    {%- if ltv_scores is not none %}
    left join ltv_scores on classified.user_id = ltv_scores.user_id
    {%- endif %}

)

select * from final
