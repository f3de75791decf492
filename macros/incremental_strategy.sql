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

{#- First day an incremental run rebuilds: the latest day already built in `date_column` of this
    model minus var('lookback_days') (late arrivals) and `extra_days` (history the model needs
    to recompute that day). None on a first run or a full refresh. It is looked up once and
    inlined as a literal, not left as a subquery, so DuckDB prunes the raw scan through the
    staging views and BigQuery prunes partitions; whole days keep insert_overwrite exact. -#}
{% macro incremental_since(date_column, extra_days=0) -%}
    {%- if not is_incremental() -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set days = var('lookback_days') + extra_days -%}
    {%- set query -%}
        select cast(
            {{ add_days_to_date(-1 * days, 'max(cast(' ~ date_column ~ ' as date))') }}
            as {{ dbt.type_string() }}
        ) as since
        from {{ this }}
    {%- endset -%}
    {%- set since = run_query(query).columns[0].values()[0] -%}
    {{ return(none if since is none else (since | string)[:10]) }}
{%- endmacro %}

{#- The ISO day `days` before `since` (none stays none): a second window from one lookup. -#}
{% macro days_before(since, days) -%}
    {%- if since is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set day = modules.datetime.date.fromisoformat(since) - modules.datetime.timedelta(days=days) -%}
    {{ return(day.isoformat()) }}
{%- endmacro %}

{#- `since` as a SQL literal of the column's type ('timestamp' or 'date'). -#}
{% macro since_literal(since, data_type='timestamp') -%}
    cast('{{ since }}' as {{ dbt.type_timestamp() if data_type == 'timestamp' else 'date' }})
{%- endmacro %}

{#- Rows on or after `since` (no filter when since is none: first run or full refresh). -#}
{% macro where_since(column, since, data_type='timestamp') -%}
    {%- if since is not none %}
        where {{ column }} >= {{ since_literal(since, data_type) }}
    {%- endif %}
{%- endmacro %}

{#- Rows before `since`: the history an incremental run sums instead of recomputing (none on a
    first run, where everything is recomputed). -#}
{% macro where_before(column, since, data_type='timestamp') -%}
    {%- if since is none %}
        where false
    {%- else %}
        where {{ column }} < {{ since_literal(since, data_type) }}
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
