with

source as (

    select * from {{ source('app', 'booking_refunded') }}

),

renamed as (

    select
        event_id,
        event_name,
        user_id,
        session_id,
        platform,
        cast(occurred_at as {{ dbt.type_timestamp() }}) as refunded_at,
        cast(received_at as {{ dbt.type_timestamp() }}) as received_at,
        booking_id,
        cast(refund_eur as {{ dbt.type_numeric() }}) as refund_eur,
        {{ delivery_columns() }}

    from source

),

deduped as (

    {{ dedupe_events('renamed', partition_by='refunded_at, event_id') }}

)

select * from deduped
