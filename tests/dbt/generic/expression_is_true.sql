{#- Fails for every row where the SQL expression is not true (e.g. an arithmetic rule). -#}
{% test expression_is_true(model, expression, where_clause=none) %}

    select *
    from {{ model }}
    where not ({{ expression }})
    {%- if where_clause %} and ({{ where_clause }}){% endif %}

{% endtest %}
