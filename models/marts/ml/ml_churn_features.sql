{#- One row per user and weekly cutoff (Mondays). Features look back from the cutoff; the label
    looks forward var('churn_horizon_days') and is null where that horizon is not yet observed.
    Each user-day carries running totals and the user's next active day, so a cutoff reads its
    features from the latest active day before it (and before it minus 30 and 90 days): three
    joins of one row per user and cutoff, instead of every cutoff against every active day.
    Point in time: revenue counts payments on their booking day and refunds on their refund
    day, and the loyalty card is the state of the users_snapshot version current at the cutoff
    (null, unknown, before the first version's updated_at), so nothing that happened after a
    cutoff reaches its features.
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

bookings as (

    select * from {{ ref('fct_bookings') }}

),

user_versions as (

    select * from {{ ref('users_snapshot') }}

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
        and dates.date_day >= {{ add_days_to_date(var('churn_warmup_days'), 'bounds.first_date') }}
        and dates.date_day <= bounds.last_date
        and dates.date_day >= {{ since_literal(since, 'date') if since is not none else 'bounds.first_date' }}

),

loyalty_versions as (

    {#- a version of the extract holds from its updated_at (the user's last change) until the
        next version's; dbt_valid_from is only when a snapshot first saw it -#}
    select
        user_id,
        has_loyalty_card,
        updated_at as valid_from,
        lead(updated_at) over (partition by user_id order by updated_at, dbt_valid_from) as valid_to

    from user_versions

),

eligible as (

    select
        users.user_id,
        users.signup_date,
        loyalty_versions.has_loyalty_card,
        cutoffs.cutoff_date

    from users
    cross join cutoffs
    left join loyalty_versions
        on
            users.user_id = loyalty_versions.user_id
            and loyalty_versions.valid_from <= cast(cutoffs.cutoff_date as {{ dbt.type_timestamp() }})
            and (loyalty_versions.valid_to is null or loyalty_versions.valid_to > cast(cutoffs.cutoff_date as {{ dbt.type_timestamp() }}))
    where not users.is_excluded_traffic and users.signup_date < cutoffs.cutoff_date

),

refunds_90d as (

    {#- refunds issued in the 90 days before each cutoff, on their own day -#}
    select
        bookings.user_id,
        cutoffs.cutoff_date,
        sum(bookings.refund_eur) as refund_eur

    from cutoffs
    inner join bookings
        on
            cast(bookings.refunded_at as date) < cutoffs.cutoff_date
            and cast(bookings.refunded_at as date) >= {{ add_days_to_date(-90, 'cutoffs.cutoff_date') }}
    group by 1, 2

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
        sum(activity.paid_eur) over user_to_date as paid_to_date_eur

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
        at_cutoff.paid_to_date_eur - coalesce(at_90d_before.paid_to_date_eur, 0)
        - coalesce(refunds_90d.refund_eur, 0) as net_revenue_90d_eur,
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
    left join refunds_90d
        on
            eligible.user_id = refunds_90d.user_id
            and eligible.cutoff_date = refunds_90d.cutoff_date

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
