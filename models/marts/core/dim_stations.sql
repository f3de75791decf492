with

stations as (

    select * from {{ ref('stations') }}

),

final as (

    select
        station_id,
        station_name,
        city,
        country_code,
        latitude,
        longitude,
        timezone,
        is_hub

    from stations

)

select * from final
