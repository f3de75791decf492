with

source as (

    select * from {{ source('app', 'consent_updated') }}

),

renamed as (

    select
        event_id,
        event_name,
        user_id,
        session_id,
        platform,
        {{ utc_timestamp('occurred_at') }} as consent_updated_at,
        {{ utc_timestamp('received_at') }} as received_at,
        cast(marketing_consent as {{ dbt.type_boolean() }}) as marketing_consent,
        {{ delivery_columns() }}

    from source

),

deduped as (

    {{ dedupe_events('renamed', partition_by='consent_updated_at, event_id') }}

)

select * from deduped
