with

source as (

    {{ dedupe_events(source('app', 'session_started')) }}

),

renamed as (

    select
        event_id,
        event_name,
        user_id,
        session_id,
        platform,
        cast(occurred_at as {{ dbt.type_timestamp() }}) as started_at,
        cast(received_at as {{ dbt.type_timestamp() }}) as received_at,
        utm_source,
        {{ delivery_columns() }}

    from source

)

select * from renamed
