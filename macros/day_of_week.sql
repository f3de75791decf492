{#- ISO day of week, Monday = 1 ... Sunday = 7, on every adapter. -#}
{% macro day_of_week(expression) -%}
    {{ return(adapter.dispatch('day_of_week', 'railflow')(expression)) }}
{%- endmacro %}

{% macro default__day_of_week(expression) -%}
    extract(isodow from {{ expression }})
{%- endmacro %}

{% macro bigquery__day_of_week(expression) -%}
    mod(extract(dayofweek from {{ expression }}) + 5, 7) + 1
{%- endmacro %}

{#- Hour of day (0-23) of a UTC timestamp. -#}
{% macro hour_of_day(expression) -%}
    extract(hour from {{ expression }})
{%- endmacro %}
