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
        {{ utc_timestamp('occurred_at') }} as selected_at,
        {{ utc_timestamp('received_at') }} as received_at,
        search_id,
        cast(price_eur as {{ dbt.type_numeric() }}) as price_eur,
        {{ delivery_columns() }}

    from source

),

deduped as (

    {{ dedupe_events('renamed', partition_by='selected_at, event_id') }}

)

select * from deduped
