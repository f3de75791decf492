{#- The search may have led to the purchase: same user, origin, destination and travel date,
    made at most var('attribution_window_days') before it. The one definition the attribution
    model and its completeness test share. -#}
{% macro is_attribution_candidate(purchases, searches) -%}
    {{ purchases }}.user_id = {{ searches }}.user_id
    and {{ purchases }}.origin_station_id = {{ searches }}.origin_station_id
    and {{ purchases }}.destination_station_id = {{ searches }}.destination_station_id
    and {{ purchases }}.travel_date = {{ searches }}.travel_date
    and {{ purchases }}.purchased_at >= {{ searches }}.searched_at
    and {{ searches }}.searched_at
    >= {{ add_days_to_timestamp(-1 * var('attribution_window_days'), purchases ~ '.purchased_at') }}
{%- endmacro %}
