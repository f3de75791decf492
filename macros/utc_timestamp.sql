{#- A UTC instant from the raw layer as the warehouse's plain (UTC) timestamp type. DuckDB's
    cast from TIMESTAMPTZ goes through the session time zone (ICU): slow on every row a filter
    touches, and only right while the session says UTC. Epoch microseconds are plain
    arithmetic and always UTC. -#}
{% macro utc_timestamp(expression) -%}
    {{ return(adapter.dispatch('utc_timestamp', 'railflow')(expression)) }}
{%- endmacro %}

{% macro default__utc_timestamp(expression) -%}
    cast({{ expression }} as {{ dbt.type_timestamp() }})
{%- endmacro %}

{% macro duckdb__utc_timestamp(expression) -%}
    make_timestamp(epoch_us({{ expression }}))
{%- endmacro %}
