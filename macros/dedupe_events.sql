{#- Keep the first delivery of each event id (duplicate deliveries share the id). -#}
{% macro dedupe_events(relation, key='event_id', order_by='received_at, _loaded_at') -%}
    select *
    from {{ relation }}
    where true
    qualify row_number() over (partition by {{ key }} order by {{ order_by }}) = 1
{%- endmacro %}
