with

eligible as (

    select * from {{ ref('int_crm_eligible_users') }}

),

final as (

    select
        user_id as external_id,
        'high_value' as audience,
        segment_name,
        churn_band,
        cast(churn_probability as {{ type_double() }}) as churn_probability,
        intent_band as propensity_band,
        last_searched_route,
        last_searched_at,
        'vip_recognition_no_discount' as recommended_offer

    from eligible
    where crm_audience = 'high_value'  -- one audience per user: the rule is in int_crm_eligible_users

)

select * from final
