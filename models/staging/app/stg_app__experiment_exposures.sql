with

source as (

    select * from {{ source('app', 'experiment_exposure') }}

),

renamed as (

    select
        event_id,
        event_name,
        user_id,
        session_id,
        platform,
        {{ utc_timestamp('occurred_at') }} as exposed_at,
        {{ utc_timestamp('received_at') }} as received_at,
        experiment_id,
        variant,
        {{ delivery_columns() }}

    from source

),

deduped as (

    {{ dedupe_events('renamed', partition_by='exposed_at, event_id') }}

)

select * from deduped
