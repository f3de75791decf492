{#- dbt.dateadd returns a DATETIME on BigQuery, which does not compare with TIMESTAMP or DATE
    columns; these wrappers keep the type of what they shift. -#}
{% macro add_days_to_timestamp(days, expression) -%}
    cast({{ dbt.dateadd('day', days, expression) }} as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro add_days_to_date(days, expression) -%}
    cast({{ dbt.dateadd('day', days, expression) }} as date)
{%- endmacro %}
