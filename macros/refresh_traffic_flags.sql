{#- Post-hook of incremental facts that carry the traffic flags: a user can become a bot later
    (the rule counts searches per day, which only grow as events arrive), and an incremental run
    does not rebuild that user's older rows, so their flags are brought up to date here (rows
    built before the flags existed, null, too). -#}
{% macro refresh_traffic_flags() -%}
    update {{ this }} as fact
    set
        is_bot_user = users.is_bot_user,
        is_internal_user = users.is_internal_user,
        is_excluded_traffic = users.is_excluded_traffic
    from {{ ref('int_users_classified') }} as users
    where
        fact.user_id = users.user_id
        and (
            fact.is_bot_user is distinct from users.is_bot_user
            or fact.is_internal_user is distinct from users.is_internal_user
            or fact.is_excluded_traffic is distinct from users.is_excluded_traffic
        )
{%- endmacro %}
