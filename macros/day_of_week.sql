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

{#- The Monday starting the ISO week of a date or timestamp, as a date, on every adapter
    (BigQuery's `week` starts on Sunday). -#}
{% macro week_start(expression) -%}
    {{ return(adapter.dispatch('week_start', 'railflow')(expression)) }}
{%- endmacro %}

{% macro default__week_start(expression) -%}
    cast({{ dbt.date_trunc('week', expression) }} as date)
{%- endmacro %}

{% macro bigquery__week_start(expression) -%}
    date_trunc(cast({{ expression }} as date), isoweek)
{%- endmacro %}

{#- Hour of day (0-23) of a UTC timestamp. -#}
{% macro hour_of_day(expression) -%}
    extract(hour from {{ expression }})
{%- endmacro %}
