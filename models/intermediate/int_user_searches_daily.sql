{#- Searches per user and day, the input of the bot rule. Incremental: late searches only change
    the days in the lookback window. -#}
{{
    config(
        materialized='incremental',
        unique_key=['user_id', 'search_date'],
        incremental_strategy=incremental_strategy(),
        partition_by=day_partition('search_date'),
        cluster_by=['user_id'],
    )
}}

{%- set since = incremental_since('search_date') %}

with

searches as (

    select * from {{ ref('stg_app__searches') }}
    {{ where_since('searched_at', since) }}

),

final as (

    select
        user_id,
        cast(searched_at as date) as search_date,
        count(*) as searches

    from searches
    group by 1, 2

)

select * from final
