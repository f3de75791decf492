with

activity as (

    select * from {{ ref('int_user_activity_daily') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

bounds as (

    {#- the days the data covers: what happened outside them is not observed -#}
    select
        min(activity_date) as first_date,
        max(activity_date) as last_date

    from activity

),

cohorts as (

    select
        user_id,
        {{ week_start('signup_date') }} as cohort_week

    from users
    where not is_excluded_traffic and not is_inferred_user  -- no signup date without a profile

),

cohort_sizes as (

    select
        cohort_week,
        count(*) as cohort_users

    from cohorts
    group by 1

),

active_weeks as (

    select distinct
        cohorts.cohort_week,
        cohorts.user_id,
        -- whole weeks: a cast would round (day 4 is still week 0)
        cast(floor({{ dbt.datediff('cohorts.cohort_week', 'activity.activity_date', 'day') }} / 7) as {{ dbt.type_int() }})
            as weeks_since_signup

    from cohorts
    inner join activity on cohorts.user_id = activity.user_id
    where activity.activity_date >= cohorts.cohort_week

),

retention as (

    select
        {{ dbt.concat(["cast(active_weeks.cohort_week as " ~ dbt.type_string() ~ ")", "'|'", "cast(active_weeks.weeks_since_signup as " ~ dbt.type_string() ~ ")"]) }} as cohort_week_id,
        active_weeks.cohort_week,
        active_weeks.weeks_since_signup,
        cohort_sizes.cohort_users,
        count(*) as active_users,
        {{ safe_ratio('count(*)', 'cohort_sizes.cohort_users') }} as retention_rate

    from active_weeks
    inner join cohort_sizes on active_weeks.cohort_week = cohort_sizes.cohort_week
    group by 1, 2, 3, 4

),

final as (

    select
        retention.*,
        {#- signed up before the data starts: their early weeks are not (fully) observed -#}
        retention.cohort_week < bounds.first_date as is_left_censored,
        {#- the week runs past the last observed day: its active users are still counting -#}
        {{ add_days_to_date('7 * retention.weeks_since_signup + 6', 'retention.cohort_week') }}
        > bounds.last_date as is_partial_week

    from retention
    cross join bounds

)

select * from final
