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

final as (

    select
        days.date_day as activity_date,
        count(distinct case when human_activity.activity_date = days.date_day then human_activity.user_id end)
            as daily_active_users,
        count(
            distinct case
                when
                    human_activity.activity_date > {{ add_days_to_date(-7, 'days.date_day') }}
                    then human_activity.user_id
            end
        )
            as weekly_active_users,
        count(distinct human_activity.user_id) as monthly_active_users,
        {{ safe_ratio(
            'count(distinct case when human_activity.activity_date = days.date_day then human_activity.user_id end)',
            'count(distinct human_activity.user_id)'
        ) }} as stickiness

    from days
    left join human_activity
        on
            days.date_day >= human_activity.activity_date
            and human_activity.activity_date > {{ add_days_to_date(-30, 'days.date_day') }}
    group by 1

)

select * from final
