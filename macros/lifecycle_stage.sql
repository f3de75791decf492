{#- Lifecycle stage of a user from day counts (documented in macros/_macros__models.yml). -#}
{% macro lifecycle_stage(days_since_signup, days_since_last_activity, lifetime_bookings) -%}
    case
        when {{ days_since_signup }} <= 14 then 'new'
        when {{ days_since_last_activity }} is null then 'inactive'
        when {{ days_since_last_activity }} <= 14 and {{ lifetime_bookings }} > 0 then 'active'
        when {{ days_since_last_activity }} <= 14 then 'browsing'
        when {{ days_since_last_activity }} <= 42 then 'at_risk'
        when {{ days_since_last_activity }} <= 90 then 'dormant'
        else 'churned'
    end
{%- endmacro %}
