-- The traffic flags on the facts are the user's current classification (dim_users), also on
-- incremental rows built before the user was classified as a bot (refresh_traffic_flags).
{% for model in ['fct_searches', 'fct_bookings', 'fct_cancellations'] %}
    select
        '{{ model }}' as model_name,
        fact_rows.user_id
    from {{ ref(model) }} as fact_rows
    inner join {{ ref('dim_users') }} as dim_users on fact_rows.user_id = dim_users.user_id
    where
        fact_rows.is_bot_user != dim_users.is_bot_user
        or fact_rows.is_internal_user != dim_users.is_internal_user
        or fact_rows.is_excluded_traffic != dim_users.is_excluded_traffic
    {% if not loop.last %}union all{% endif %}
{% endfor %}
