with

source as (

    select * from {{ source('app', 'booking_cancelled') }}

),

renamed as (

    select
        event_id,
        event_name,
        user_id,
        session_id,
        platform,
        {{ utc_timestamp('occurred_at') }} as cancelled_at,
        {{ utc_timestamp('received_at') }} as received_at,
        booking_id,
        cancel_reason,
        {{ delivery_columns() }}

    from source

),

deduped as (

    {{ dedupe_events('renamed', partition_by='cancelled_at, event_id') }}

)

select * from deduped
