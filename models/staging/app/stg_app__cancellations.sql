with

source as (

    {{ dedupe_events(source('app', 'booking_cancelled')) }}

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
        {{ dbt.datediff('occurred_at', 'received_at', 'second') }}             as delivery_delay_seconds,
        {{ dbt.datediff('occurred_at', 'received_at', 'second') }}         > {{ var('late_arrival_seconds') }} as is_late_arrival,
        _batch_id as batch_id,
        _loaded_at as loaded_at

    from source

)

select * from renamed
