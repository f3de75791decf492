{#- One row per user and weekly cutoff (Mondays). Features look back from the cutoff; the label
    looks forward var('churn_horizon_days') and is null where that horizon is not yet observed.
    Each user-day carries running totals and the user's next active day, so a cutoff reads its
    features from the latest active day before it (and before it minus 30 and 90 days): three
    joins of one row per user and cutoff, instead of every cutoff against every active day.
    Incremental by cutoff: a late event can change the features of later cutoffs and the label
    of cutoffs up to var('churn_horizon_days') earlier; older cutoffs are final. -#}
{{
    config(
        materialized='incremental',
        unique_key='user_cutoff_id',
        incremental_strategy=incremental_strategy(),
        partition_by=day_partition('cutoff_date'),
        cluster_by=['user_id'],
        on_schema_change='append_new_columns',
        post_hook="{{ delete_rows_of_excluded_users() }}",
    )
}}

{%- set since = incremental_since('cutoff_date', extra_days=var('churn_horizon_days')) %}

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
        and dates.date_day >= {{ since_literal(since, 'date') if since is not none else 'bounds.first_date' }}

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

activity_history as (

    select
        activity.user_id,
        activity.activity_date,
        lead(activity.activity_date) over (
            partition by activity.user_id order by activity.activity_date
        ) as next_activity_date,
        sum(activity.sessions) over user_to_date as sessions_to_date,
        sum(activity.searches) over user_to_date as searches_to_date,
        sum(activity.bookings) over user_to_date as bookings_to_date,
        sum(activity.net_revenue_eur) over user_to_date as net_revenue_to_date_eur

    from activity
    window user_to_date as (
        partition by activity.user_id order by activity.activity_date
        rows between unbounded preceding and current row
    )

),

spans as (

    {#- the days for which this active day is the latest one before: up to the next active day,
        or past the last observed day -#}
    select
        activity_history.*,
        coalesce(
            activity_history.next_activity_date, {{ add_days_to_date(1, 'bounds.last_date') }}
        ) as latest_until_date

    from activity_history
    cross join bounds

),

{%- for name, days_before in [('at_cutoff', 0), ('at_30d_before', 30), ('at_90d_before', 90)] %}

    {{ name }} as (

        select
            cutoffs.cutoff_date,
            spans.*

        from cutoffs
        inner join spans
            on
                spans.activity_date < {{ add_days_to_date(-days_before, 'cutoffs.cutoff_date') }}
                and spans.latest_until_date >= {{ add_days_to_date(-days_before, 'cutoffs.cutoff_date') }}

    ),
{%- endfor %}

features as (

    select
        eligible.user_id,
        eligible.cutoff_date,
        eligible.signup_date,
        eligible.has_loyalty_card,
        at_cutoff.activity_date as last_active_date,
        at_cutoff.sessions_to_date - coalesce(at_30d_before.sessions_to_date, 0) as sessions_30d,
        at_cutoff.searches_to_date - coalesce(at_30d_before.searches_to_date, 0) as searches_30d,
        at_cutoff.bookings_to_date - coalesce(at_30d_before.bookings_to_date, 0) as bookings_30d,
        at_cutoff.net_revenue_to_date_eur - coalesce(at_90d_before.net_revenue_to_date_eur, 0)
            as net_revenue_90d_eur,
        at_cutoff.bookings_to_date as lifetime_bookings,
        coalesce(
            at_cutoff.next_activity_date
            < {{ add_days_to_date(var('churn_horizon_days'), 'eligible.cutoff_date') }},
            false
        ) as is_active_after

    from eligible
    inner join at_cutoff
        on
            eligible.user_id = at_cutoff.user_id
            and eligible.cutoff_date = at_cutoff.cutoff_date
    left join at_30d_before
        on
            eligible.user_id = at_30d_before.user_id
            and eligible.cutoff_date = at_30d_before.cutoff_date
    left join at_90d_before
        on
            eligible.user_id = at_90d_before.user_id
            and eligible.cutoff_date = at_90d_before.cutoff_date

),

final as (

    select
        {{ dbt.concat(['features.user_id', "'|'", 'cast(features.cutoff_date as ' ~ dbt.type_string() ~ ')']) }} as user_cutoff_id,
        features.user_id,
        features.cutoff_date,
        cast({{ dbt.datediff('features.signup_date', 'features.cutoff_date', 'day') }} as {{ dbt.type_bigint() }}
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
        features.has_loyalty_card,
        case
            when {{ add_days_to_date(var('churn_horizon_days'), 'features.cutoff_date') }} > bounds.last_date
                then null
            else not features.is_active_after
        end as is_churned

    from features
    cross join bounds

)

select * from final
