with

routes as (

    select * from {{ ref('routes') }}

),

stations as (

    select * from {{ ref('dim_stations') }}

),

final as (

    select
        routes.route_id,
        routes.origin_station_id,
        routes.destination_station_id,
        origin.city as origin_city,
        destination.city as destination_city,
        origin.country_code as origin_country_code,
        destination.country_code as destination_country_code,
        routes.distance_km,
        routes.duration_minutes,
        routes.base_fare_eur,
        routes.operator,
        origin.country_code != destination.country_code as is_international

    from routes
    inner join stations as origin on routes.origin_station_id = origin.station_id
    inner join stations as destination on routes.destination_station_id = destination.station_id

)

select * from final
