{#- A UTC timestamp as the wall-clock date and time in an IANA time zone (a column or a quoted
    literal), without a zone: DuckDB's timezone() (ICU, built in), BigQuery's datetime(). -#}
{% macro local_datetime(utc_timestamp, time_zone) -%}
    {{ return(adapter.dispatch('local_datetime', 'railflow')(utc_timestamp, time_zone)) }}
{%- endmacro %}

{% macro default__local_datetime(utc_timestamp, time_zone) -%}
    timezone({{ time_zone }}, timezone('UTC', {{ utc_timestamp }}))
{%- endmacro %}

{% macro bigquery__local_datetime(utc_timestamp, time_zone) -%}
    datetime({{ utc_timestamp }}, {{ time_zone }})
{%- endmacro %}
