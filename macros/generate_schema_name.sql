{#- Models with `+schema: <layer>` land in that layer's schema/dataset (see layer_schema_name),
    not dbt's default `<target schema>_<layer>`. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ layer_schema_name(custom_schema_name | trim) }}
    {%- endif -%}
{%- endmacro %}
