{#- Data tests check every row by default. A daily run may pass var('test_since') (an ISO date,
    e.g. the first day its incremental models rebuilt) to check only the event rows from that
    day on: tests on a model with an `event_time` config (the staging event models and the
    incremental facts) then read only those days, which the staging views' dedupe lets DuckDB
    prune at the raw scan. Tests on dimensions and aggregates still read every row. Overrides
    dbt's get_where_subquery, which applies a test's `where` config the same way. -#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- do conditions.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- set recent = recent_rows_condition(event_time_of(model.get('attached_node'))) -%}
    {%- if recent -%}
        {%- do conditions.append(recent) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{#- The `event_time` config of a model, given its unique id or name (none if it has none). -#}
{% macro event_time_of(node) -%}
    {%- if node is none or not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set unique_id = node if node.startswith('model.') else 'model.' ~ project_name ~ '.' ~ node -%}
    {%- set found = graph.nodes.get(unique_id) -%}
    {{ return(found.config.get('event_time') if found else none) }}
{%- endmacro %}

{#- The condition keeping rows since var('test_since') on `event_time` (a timestamp, compared
    as is so the filter reaches the raw scan), or none (no var, or no event time). -#}
{% macro recent_rows_condition(event_time) -%}
    {%- set since = var('test_since', none) -%}
    {%- if since is none or event_time is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(event_time ~ ' >= ' ~ since_literal(since)) }}
{%- endmacro %}

{#- For singular tests: `where <recent rows of model>` or nothing. -#}
{% macro where_recent_rows(model_name) -%}
    {%- set recent = recent_rows_condition(event_time_of(model_name)) -%}
    {%- if recent %}
        where {{ recent }}
    {%- endif %}
{%- endmacro %}
