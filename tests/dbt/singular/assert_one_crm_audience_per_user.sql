-- One CRM audience per user: no user is in both sync marts (priority: int_crm_eligible_users).
{{ config(tags=['post_scoring']) }}

select high_intent.external_id

from {{ ref('sync_crm__high_intent_users') }} as high_intent
inner join {{ ref('sync_crm__high_churn_risk_users') }} as high_churn_risk
    on high_intent.external_id = high_churn_risk.external_id
