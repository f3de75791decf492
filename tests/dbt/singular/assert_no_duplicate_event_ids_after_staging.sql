-- Duplicate deliveries share an event id; staging keeps exactly one row per id.
{% set staging = [
    'stg_app__sessions', 'stg_app__searches', 'stg_app__search_results',
    'stg_app__fare_selections', 'stg_app__checkouts', 'stg_app__purchases',
    'stg_app__cancellations', 'stg_app__refunds', 'stg_app__experiment_exposures',
    'stg_app__consent_updates'
] %}

{% for model in staging %}
    select
        '{{ model }}' as model_name,
        event_id,
        count(*) as occurrences
    from {{ ref(model) }}
    {{ where_recent_rows(model) }}
    group by 1, 2
    having count(*) > 1
    {% if not loop.last %}union all{% endif %}
{% endfor %}
