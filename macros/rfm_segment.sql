{#- Rule-based RFM segment from 1-5 quintile scores (5 = best). -#}
{% macro rfm_segment(recency_score, frequency_score, monetary_score) -%}
    case
        when {{ recency_score }} >= 4 and {{ frequency_score }} >= 4 then 'Champions'
        when {{ frequency_score }} >= 4 then 'Loyal'
        when {{ recency_score }} >= 4 and {{ frequency_score }} <= 2 then 'New or promising'
        when {{ recency_score }} <= 2 and {{ frequency_score }} >= 3 then 'At risk'
        when {{ recency_score }} <= 2 then 'Hibernating'
        else 'Needs attention'
    end
{%- endmacro %}
