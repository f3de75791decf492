with

source as (

    select * from {{ source('app', 'session_started') }}

),

renamed as (

    select
        event_id,
        event_name,
        user_id,
        session_id,
        platform,
        {{ utc_timestamp('occurred_at') }} as started_at,
        {{ utc_timestamp('received_at') }} as received_at,
        utm_source,
        {{ delivery_columns() }}

    from source

),

deduped as (

    {{ dedupe_events('renamed', partition_by='started_at, event_id') }}

)

select * from deduped
