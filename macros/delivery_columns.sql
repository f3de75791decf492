{#-
    Delivery metadata every staged event carries: how long after it happened it was received,
    whether that makes it late (one rule, var('late_arrival_seconds'), for every event model)
    and which load batch brought it.
-#}
{% macro delivery_columns() -%}
    {{ dbt.datediff('occurred_at', 'received_at', 'second') }} as delivery_delay_seconds,
    {{ dbt.datediff('occurred_at', 'received_at', 'second') }}
    > {{ var('late_arrival_seconds') }} as is_late_arrival,
    _batch_id as batch_id,
    _loaded_at as loaded_at
{%- endmacro %}
