with

source as (

    select * from {{ source('app', 'results_viewed') }}

),

renamed as (

    select
        event_id,
        event_name,
        user_id,
        session_id,
        platform,
        {{ utc_timestamp('occurred_at') }} as viewed_at,
        {{ utc_timestamp('received_at') }} as received_at,
        search_id,
        cast(results_count as {{ dbt.type_int() }}) as results_count,
        cast(price_eur as {{ dbt.type_numeric() }}) as price_eur,
        cast(discount_eur as {{ dbt.type_numeric() }}) as discount_eur,
        {{ delivery_columns() }}

    from source

),

deduped as (

    {{ dedupe_events('renamed', partition_by='viewed_at, event_id') }}

)

select * from deduped
