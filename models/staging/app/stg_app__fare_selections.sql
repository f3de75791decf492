with

source as (

    select * from {{ source('app', 'fare_selected') }}

),

renamed as (

    select
        event_id,
        event_name,
        user_id,
        session_id,
        platform,
        cast(occurred_at as {{ dbt.type_timestamp() }}) as selected_at,
        cast(received_at as {{ dbt.type_timestamp() }}) as received_at,
        search_id,
        cast(price_eur as {{ dbt.type_numeric() }}) as price_eur,
        {{ delivery_columns() }}

    from source

),

deduped as (

    {{ dedupe_events('renamed', partition_by='selected_at, event_id') }}

)

select * from deduped
