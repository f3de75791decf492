with

source as (

    {{ dedupe_events(source('app', 'fare_selected')) }}

),

renamed as (

    select
        event_id,
        event_name,
        user_id,
        session_id,
        platform,
        cast(occurred_at as {{ dbt.type_timestamp() }}) as selected_at,
        cast(received_at as {{ dbt.type_timestamp() }}) as received_at,
        search_id,
        cast(price_eur as {{ dbt.type_numeric() }}) as price_eur,
        {{ dbt.datediff('occurred_at', 'received_at', 'second') }}             as delivery_delay_seconds,
        {{ dbt.datediff('occurred_at', 'received_at', 'second') }}         > {{ var('late_arrival_seconds') }} as is_late_arrival,
        _batch_id as batch_id,
        _loaded_at as loaded_at

    from source

)

select * from renamed
