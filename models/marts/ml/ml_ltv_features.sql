{#- One row per user and weekly cutoff: the cutoffs, users and point-in-time features of
    ml_churn_features (one home for them), the user's net revenue before the cutoff, and the
    label net_revenue_next_90d_eur: net revenue in the var('ltv_horizon_days') days from the
    cutoff, null until that horizon is observed.
    Net revenue as the semantic layer's net_revenue_eur defines it (models/marts/core/
    _core__metrics.yml): bookings revenue (gross - discount) on the booking date from
    fct_bookings, minus refunds on the refund date from fct_cancellations. So the label of a
    cutoff counts a refund inside its horizon of a booking made before it, as a finance report
    of those days would, and the features never see a refund issued after the cutoff. -#}

with

churn_features as (

    select * from {{ ref('ml_churn_features') }}

),

bookings as (

    select * from {{ ref('fct_bookings') }}

),

cancellations as (

    select * from {{ ref('fct_cancellations') }}

),

activity as (

    select * from {{ ref('int_user_activity_daily') }}

),

bounds as (

    select
        min(activity_date) as first_date,
        max(activity_date) as last_date

    from activity

),

revenue_days as (

    {#- each amount on its own day: bookings revenue on the booking date, refunds on theirs -#}
    select
        user_id,
        booking_date as revenue_date,
        gross_revenue_eur - discount_eur as net_revenue_eur

    from bookings
    where not is_excluded_traffic

    union all

    select
        user_id,
        refund_date as revenue_date,
        -refund_eur as net_revenue_eur

    from cancellations
    where not is_excluded_traffic and is_refunded

),

revenue_by_cutoff as (

    select
        churn_features.user_cutoff_id,
        sum(
            case
                when revenue_days.revenue_date < churn_features.cutoff_date
                    then revenue_days.net_revenue_eur
                else 0
            end
        ) as net_revenue_to_date_eur,
        sum(
            case
                when
                    revenue_days.revenue_date >= churn_features.cutoff_date
                    and revenue_days.revenue_date < {{ add_days_to_date(var('ltv_horizon_days'), 'churn_features.cutoff_date') }}
                    then revenue_days.net_revenue_eur
                else 0
            end
        ) as net_revenue_next_horizon_eur

    from churn_features
    inner join revenue_days on churn_features.user_id = revenue_days.user_id
    group by 1

),

final as (

    select
        churn_features.user_cutoff_id,
        churn_features.user_id,
        churn_features.cutoff_date,
        churn_features.tenure_days,
        churn_features.days_since_last_activity,
        churn_features.sessions_30d,
        churn_features.searches_30d,
        churn_features.bookings_30d,
        churn_features.net_revenue_90d_eur,
        churn_features.lifetime_bookings,
        churn_features.has_loyalty_card,
        {#- the 90-day windows of the early cutoffs hold less data: the model needs to know -#}
        cast(
            least({{ dbt.datediff('bounds.first_date', 'churn_features.cutoff_date', 'day') }}, 90)
            as {{ dbt.type_bigint() }}
        ) as observed_history_days,
        cast(coalesce(revenue_by_cutoff.net_revenue_to_date_eur, 0) as {{ type_double() }})
            as net_revenue_to_date_eur,
        case
            when {{ add_days_to_date(var('ltv_horizon_days'), 'churn_features.cutoff_date') }} > bounds.last_date
                then null
            else cast(coalesce(revenue_by_cutoff.net_revenue_next_horizon_eur, 0) as {{ type_double() }})
        end as net_revenue_next_90d_eur

    from churn_features
    cross join bounds
    left join revenue_by_cutoff on churn_features.user_cutoff_id = revenue_by_cutoff.user_cutoff_id

)

select * from final
