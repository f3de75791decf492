{#- A 1-5 quintile score by `order_by` (the best value last), equal values scored equally: each
    value sits at the middle of the places its ties take (mid-rank), 1 + floor(5 * that / n).
    ntile() would split a tie across two scores by an arbitrary order. Distinct values score
    as ntile(5) does when n is a multiple of 5. Integer arithmetic up to one exact division. -#}
{% macro quintile_score(order_by) -%}
    1 + cast(floor(
        5 * (rank() over (order by {{ order_by }}) - 1 + count(*) over (order by {{ order_by }}))
        / (2 * count(*) over ())
    ) as {{ dbt.type_int() }})
{%- endmacro %}

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
