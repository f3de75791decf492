{#- The fare rule's noiseless quote for a search, in euros: list price (base fare x passengers x
    class and return multipliers) x yield markup (near departure, weekend and holiday travel).
    The rule's home is railflow/fares.py; var('fare_rule') mirrors its constants and
    tests/python/test_anomalies.py fails when they drift apart. -#}
{% macro fare_rule_quote(base_fare, passengers, is_first_class, is_round_trip, lead_time_days, is_weekend_travel, is_holiday_travel) -%}
    {%- set rule = var('fare_rule') -%}
    (
        {{ base_fare }} * {{ passengers }}
        * (case when {{ is_first_class }} then {{ rule.first_class_multiplier }} else 1.0 end)
        * (case when {{ is_round_trip }} then {{ rule.round_trip_multiplier }} else 1.0 end)
        * (1 + {{ rule.near_departure_markup }} * exp(
            -1.0 * greatest({{ lead_time_days }}, 0) / {{ rule.near_departure_scale_days }}
        ))
        * (case when {{ is_weekend_travel }} then 1 + {{ rule.weekend_travel_markup }} else 1.0 end)
        * (case when {{ is_holiday_travel }} then 1 + {{ rule.holiday_travel_markup }} else 1.0 end)
    )
{%- endmacro %}
