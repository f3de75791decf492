{#- Keep the first delivery of each event. A duplicate delivery is the same event (same id, same
    occurrence time) sent again, so event models partition by both: a filter on the event time
    then reaches the raw scan through this window, which lets incremental models and scoped tests
    read only recent rows instead of deduplicating the whole history. -#}
{% macro dedupe_events(relation, partition_by, order_by='received_at, loaded_at') -%}
    select *
    from {{ relation }}
    where true
    qualify row_number() over (partition by {{ partition_by }} order by {{ order_by }}) = 1
{%- endmacro %}
