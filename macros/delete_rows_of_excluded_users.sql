{#- Post-hook of incremental marts that keep real users only: a user can become a bot later
    (the rule counts searches per day, which only grow as events arrive), and rows built before
    that must go; an incremental run does not rebuild them. -#}
{% macro delete_rows_of_excluded_users() -%}
    delete from {{ this }}
    where user_id in (select user_id from {{ ref('dim_users') }} where is_excluded_traffic)
{%- endmacro %}
