with

source as (

    select * from {{ source('app', 'search_route') }}

),

renamed as (

    select
        event_id,
        event_name,
        user_id,
        session_id,
        platform,
        {{ utc_timestamp('occurred_at') }} as searched_at,
        {{ utc_timestamp('received_at') }} as received_at,
        search_id,
        origin_station_id,
        destination_station_id,
        cast(travel_date as date) as travel_date,
        cast(passengers as {{ dbt.type_int() }}) as passengers,
        fare_class,
        cast(is_round_trip as {{ dbt.type_boolean() }}) as is_round_trip,
        {{ delivery_columns() }}

    from source

),

deduped as (

    {{ dedupe_events('renamed', partition_by='searched_at, event_id') }}

)

select * from deduped
