-- No email- or phone-looking value in any string column of the user-facing marts.
{% set checks = [
    ('dim_users', ['user_id', 'country_code', 'home_station_id', 'acquisition_channel', 'lifecycle_stage']),
    ('fct_bookings', ['booking_id', 'user_id', 'session_id', 'search_id', 'route_id']),
    ('fct_searches', ['search_id', 'user_id', 'session_id', 'route_id', 'booking_id']),
    ('customer_rfm', ['user_id', 'rfm_segment', 'rfm_code']),
    ('experiment_exposures', ['exposure_id', 'user_id', 'experiment_id', 'variant']),
] %}

{% for model, columns in checks %}
    {#- with var('test_since'), only the recent rows of event-grain marts -#}
    {%- set recent = recent_rows_condition(event_time_of(model)) %}
    {% for column in columns %}
        select
            '{{ model }}.{{ column }}' as pii_location,
            {{ column }} as pii_value
        from {{ ref(model) }}
        where
            (
                {{ column }} like '%@%'
                or {{ regexp_like(column, '[+]?[0-9][0-9 ().-]{8,}[0-9]') }}
            ){% if recent %} and {{ recent }}{% endif %}
        {% if not loop.last %}union all{% endif %}
    {% endfor %}
    {% if not loop.last %}union all{% endif %}
{% endfor %}
