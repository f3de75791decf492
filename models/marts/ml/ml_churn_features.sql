{#- One row per user and weekly cutoff (Mondays). Features look back from the cutoff; the label
    looks forward var('churn_horizon_days') and is null where that horizon is not yet observed. -#}
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

bounds as (

    select
        min(activity_date) as first_date,
        max(activity_date) as last_date

    from activity

),

cutoffs as (

    select dates.date_day as cutoff_date

    from dates
    cross join bounds
    where
        dates.day_of_week = 1
        and dates.date_day >= {{ add_days_to_date(28, 'bounds.first_date') }}
        and dates.date_day <= bounds.last_date

),

eligible as (

    select
        users.user_id,
        users.signup_date,
        users.has_loyalty_card,
        cutoffs.cutoff_date

    from users
    cross join cutoffs
    where not users.is_excluded_traffic and users.signup_date < cutoffs.cutoff_date

),

features as (

    select
        eligible.user_id,
        eligible.cutoff_date,
        max(case when activity.activity_date < eligible.cutoff_date then activity.activity_date end)
            as last_active_date,
        sum(
            case
                when
                    activity.activity_date < eligible.cutoff_date
                    and activity.activity_date >= {{ add_days_to_date(-30, 'eligible.cutoff_date') }}
                    then activity.sessions else
                    0
            end
        )
            as sessions_30d,
        sum(
            case
                when
                    activity.activity_date < eligible.cutoff_date
                    and activity.activity_date >= {{ add_days_to_date(-30, 'eligible.cutoff_date') }}
                    then activity.searches else
                    0
            end
        )
            as searches_30d,
        sum(
            case
                when
                    activity.activity_date < eligible.cutoff_date
                    and activity.activity_date >= {{ add_days_to_date(-30, 'eligible.cutoff_date') }}
                    then activity.bookings else
                    0
            end
        )
            as bookings_30d,
        sum(
            case
                when
                    activity.activity_date < eligible.cutoff_date
                    and activity.activity_date >= {{ add_days_to_date(-90, 'eligible.cutoff_date') }}
                    then activity.net_revenue_eur else
                    0
            end
        )
            as net_revenue_90d_eur,
        sum(case when activity.activity_date < eligible.cutoff_date then activity.bookings else 0 end)
            as lifetime_bookings,
        max(
            case
                when
                    activity.activity_date >= eligible.cutoff_date
                    and activity.activity_date
                    < {{ add_days_to_date(var('churn_horizon_days'), 'eligible.cutoff_date') }}
                    then 1 else
                    0
            end
        )
            as is_active_after

    from eligible
    left join activity on eligible.user_id = activity.user_id
    group by 1, 2

),

final as (

    select
        {{ dbt.concat(['features.user_id', "'|'", 'cast(features.cutoff_date as ' ~ dbt.type_string() ~ ')']) }} as user_cutoff_id,
        features.user_id,
        features.cutoff_date,
        cast({{ dbt.datediff('eligible.signup_date', 'features.cutoff_date', 'day') }} as {{ dbt.type_bigint() }}
        )
            as tenure_days,
        cast({{ dbt.datediff('features.last_active_date', 'features.cutoff_date', 'day') }} as {{ dbt.type_bigint() }}
        )
            as days_since_last_activity,
        cast(features.sessions_30d as {{ dbt.type_bigint() }}) as sessions_30d,
        cast(features.searches_30d as {{ dbt.type_bigint() }}) as searches_30d,
        cast(features.bookings_30d as {{ dbt.type_bigint() }}) as bookings_30d,
        cast(features.net_revenue_90d_eur as {{ type_double() }}) as net_revenue_90d_eur,
        cast(features.lifetime_bookings as {{ dbt.type_bigint() }}) as lifetime_bookings,
        eligible.has_loyalty_card,
        case
            when {{ add_days_to_date(var('churn_horizon_days'), 'features.cutoff_date') }} > bounds.last_date
                then null
            else features.is_active_after = 0
        end as is_churned

    from features
    inner join eligible
        on
            features.user_id = eligible.user_id
            and features.cutoff_date = eligible.cutoff_date
    cross join bounds
    where features.last_active_date is not null

)

select * from final
