-- The traffic flags on the facts are the user's current classification (dim_users), also on
-- incremental rows built before the user was classified as a bot (refresh_traffic_flags).
{% for model in ['fct_searches', 'fct_bookings', 'fct_cancellations'] %}
    select
        '{{ model }}' as model_name,
        facts.user_id
    from {{ ref(model) }} as facts
    inner join {{ ref('dim_users') }} as users on facts.user_id = users.user_id
    where
        facts.is_bot_user != users.is_bot_user
        or facts.is_internal_user != users.is_internal_user
        or facts.is_excluded_traffic != users.is_excluded_traffic
    {% if not loop.last %}union all{% endif %}
{% endfor %}
