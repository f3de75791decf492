with

eligible as (

    select * from {{ ref('int_crm_eligible_users') }}

),

final as (

    select
        user_id as external_id,
        'high_intent' as audience,
        segment_name,
        churn_band,
        cast(churn_probability as {{ type_double() }}) as churn_probability,
        intent_band as propensity_band,
        last_searched_route,
        last_searched_at,
        case
            when intent_band = 'medium' then 'discount_5_percent'
            else 'reminder_no_discount'
        end as recommended_offer

    from eligible
    where is_recent_unbooked_searcher and intent_band in ('medium', 'high')

)

select * from final
