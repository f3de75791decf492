{#- Incremental strategy per adapter: DuckDB replaces rows by unique key; BigQuery overwrites the
    day partitions touched by the run (cheaper than a MERGE on large tables). -#}
{% macro incremental_strategy() -%}
    {{ return(adapter.dispatch('incremental_strategy', 'railflow')()) }}
{%- endmacro %}

{% macro default__incremental_strategy() -%}
    {{ return('delete+insert') }}
{%- endmacro %}

{% macro bigquery__incremental_strategy() -%}
    {{ return('insert_overwrite') }}
{%- endmacro %}

{#- Rows to (re)process in an incremental run: those at or after the latest already-built
    timestamp minus the late-arrival lookback (var lookback_days). -#}
{% macro incremental_lookback_filter(column) -%}
    {%- if is_incremental() %}
        where {{ column }} >= (
            select {{ add_days_to_timestamp(-1 * var('lookback_days'), 'max(' ~ column ~ ')') }}
            from {{ this }}
        )
    {%- endif %}
{%- endmacro %}

{#- Day partitioning config: BigQuery partitions by the date column; DuckDB has no partitions. -#}
{% macro day_partition(field) -%}
    {{ return(adapter.dispatch('day_partition', 'railflow')(field)) }}
{%- endmacro %}

{% macro default__day_partition(field) -%}
    {{ return(none) }}
{%- endmacro %}

{% macro bigquery__day_partition(field) -%}
    {{ return({'field': field, 'data_type': 'date', 'granularity': 'day'}) }}
{%- endmacro %}
