{#- A user counts as weekly (monthly) active from an active day until 7 (30) days later or until
    their next active day, whichever comes first. These spans never overlap for one user, so a
    running sum of spans opening and closing counts distinct users without joining every day to
    its 30-day window (linear in active user-days instead of 30 times that). -#}
with

activity as (

    select * from {{ ref('int_user_activity_daily') }}

),

users as (

    select * from {{ ref('dim_users') }}

),

dates as (

    select * from {{ ref('dim_dates') }}

),

human_activity as (

    select distinct
        activity.user_id,
        activity.activity_date

    from activity
    inner join users on activity.user_id = users.user_id
    where not users.is_excluded_traffic and activity.sessions > 0

),

bounds as (

    select
        min(activity_date) as first_date,
        max(activity_date) as last_date

    from human_activity

),

days as (

    select dates.date_day

    from dates
    cross join bounds
    where dates.date_day between bounds.first_date and bounds.last_date

),

active_spans as (

    select
        activity_date,
        lead(activity_date) over (partition by user_id order by activity_date) as next_activity_date

    from human_activity

),

span_changes as (

    select
        activity_date as change_date,
        1 as weekly_change,
        1 as monthly_change

    from active_spans

    union all

    select
        least(
            coalesce(next_activity_date, {{ add_days_to_date(7, 'activity_date') }}),
            {{ add_days_to_date(7, 'activity_date') }}
        ) as change_date,
        -1 as weekly_change,
        0 as monthly_change

    from active_spans

    union all

    select
        least(
            coalesce(next_activity_date, {{ add_days_to_date(30, 'activity_date') }}),
            {{ add_days_to_date(30, 'activity_date') }}
        ) as change_date,
        0 as weekly_change,
        -1 as monthly_change

    from active_spans

),

daily_changes as (

    select
        change_date,
        sum(weekly_change) as weekly_change,
        sum(monthly_change) as monthly_change

    from span_changes
    group by 1

),

daily_users as (

    select
        activity_date,
        count(*) as daily_active_users

    from human_activity
    group by 1

),

counts as (

    select
        days.date_day as activity_date,
        coalesce(daily_users.daily_active_users, 0) as daily_active_users,
        sum(coalesce(daily_changes.weekly_change, 0)) over (
            order by days.date_day rows between unbounded preceding and current row
        ) as weekly_active_users,
        sum(coalesce(daily_changes.monthly_change, 0)) over (
            order by days.date_day rows between unbounded preceding and current row
        ) as monthly_active_users

    from days
    left join daily_users on days.date_day = daily_users.activity_date
    left join daily_changes on days.date_day = daily_changes.change_date

),

final as (

    select
        counts.activity_date,
        cast(counts.daily_active_users as {{ dbt.type_bigint() }}) as daily_active_users,
        cast(counts.weekly_active_users as {{ dbt.type_bigint() }}) as weekly_active_users,
        cast(counts.monthly_active_users as {{ dbt.type_bigint() }}) as monthly_active_users,
        {{ safe_ratio('counts.daily_active_users', 'counts.monthly_active_users') }} as stickiness,
        {#- the window reaches back before the first observed day: the count is partial -#}
        counts.activity_date >= {{ add_days_to_date(6, 'bounds.first_date') }} as is_wau_complete,
        counts.activity_date >= {{ add_days_to_date(29, 'bounds.first_date') }} as is_mau_complete

    from counts
    cross join bounds

)

select * from final
