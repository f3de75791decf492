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
        {{ utc_timestamp('occurred_at') }} as refunded_at,
        {{ utc_timestamp('received_at') }} as received_at,
        booking_id,
        cast(refund_eur as {{ dbt.type_numeric() }}) as refund_eur,
        {{ delivery_columns() }}

    from source

),

deduped as (

    {{ dedupe_events('renamed', partition_by='refunded_at, event_id') }}

)

select * from deduped
