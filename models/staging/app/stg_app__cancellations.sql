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
        cast(occurred_at as {{ dbt.type_timestamp() }}) as cancelled_at,
        cast(received_at as {{ dbt.type_timestamp() }}) as received_at,
        booking_id,
        cancel_reason,
        {{ delivery_columns() }}

    from source

),

deduped as (

    {{ dedupe_events('renamed', partition_by='cancelled_at, event_id') }}

)

select * from deduped
