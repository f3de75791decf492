{#- Where a warehouse layer lives. DuckDB: a schema named after the layer (`raw`, `marts`...).
    BigQuery: a dataset `<target dataset>_<layer>` so several projects can share one GCP project.
    railflow/settings.py `Settings.schema` applies the same rule for the Python sidecars. -#}
{% macro layer_schema_name(layer) -%}
    {{ return(adapter.dispatch('layer_schema_name', 'railflow')(layer)) }}
{%- endmacro %}

{% macro default__layer_schema_name(layer) -%}
    {{ return(layer) }}
{%- endmacro %}

{% macro bigquery__layer_schema_name(layer) -%}
    {{ return(target.schema ~ '_' ~ layer) }}
{%- endmacro %}
