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
        cast(occurred_at as {{ dbt.type_timestamp() }}) as exposed_at,
        cast(received_at as {{ dbt.type_timestamp() }}) as received_at,
        experiment_id,
        variant,
        {{ delivery_columns() }}

    from source

),

deduped as (

    {{ dedupe_events('renamed', partition_by='exposed_at, event_id') }}

)

select * from deduped
