with

source as (

    select * from {{ source('app', 'ticket_purchased') }}

),

renamed as (

    select
        event_id,
        event_name,
        user_id,
        session_id,
        platform,
        {{ utc_timestamp('occurred_at') }} as purchased_at,
        {{ utc_timestamp('received_at') }} as received_at,
        booking_id,
        origin_station_id,
        destination_station_id,
        cast(travel_date as date) as travel_date,
        cast(passengers as {{ dbt.type_int() }}) as passengers,
        fare_class,
        cast(is_round_trip as {{ dbt.type_boolean() }}) as is_round_trip,
        cast(price_eur as {{ dbt.type_numeric() }}) as gross_price_eur,
        cast(discount_eur as {{ dbt.type_numeric() }}) as discount_eur,
        {{ delivery_columns() }}

    from source

),

deduped as (

    {{ dedupe_events('renamed', partition_by='purchased_at, event_id') }}

)

select * from deduped
