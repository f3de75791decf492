{#- Daily KPIs per route on the search date (UTC, as incidents are logged), for anomaly
    detection (ml/anomalies.py). Excluded traffic (classified bots, internal accounts) is left
    out, by the facts' own flag. The fare index compares each quote with the fare rule's
    expected quote for the same search (lead time, weekend and holiday markups included), so a
    day of cheap late bookings does not look like a pricing bug. -#}
with

searches as (

    select * from {{ ref('fct_searches') }}
    where not is_excluded_traffic

),

results as (

    select * from {{ ref('stg_app__search_results') }}

),

routes as (

    select * from {{ ref('dim_routes') }}

),

search_results as (

    select
        search_id,
        max(results_count) as results_count

    from results
    group by 1

),

quoted as (

    select
        searches.route_id,
        searches.search_date,
        searches.search_id,
        searches.is_converted,
        search_results.results_count,
        searches.price_seen_eur,
        {{ fare_rule_quote(
            'routes.base_fare_eur',
            'searches.passengers',
            "searches.fare_class = 'first'",
            'searches.is_round_trip',
            'searches.lead_time_days',
            day_of_week('searches.travel_date') ~ ' >= 6',
            'searches.is_holiday_travel',
        ) }} as expected_quote_eur

    from searches
    inner join routes on searches.route_id = routes.route_id
    left join search_results on searches.search_id = search_results.search_id

),

route_days as (

    select
        route_id,
        search_date,
        count(*) as searches,
        sum(case when results_count > 0 then 1 else 0 end) as searches_with_results,
        {{ safe_ratio('sum(case when results_count > 0 then 1 else 0 end)', 'count(*)') }} as results_rate,
        sum(case when is_converted then 1 else 0 end) as converted_searches,
        {{ safe_ratio('sum(case when is_converted then 1 else 0 end)', 'count(*)') }} as conversion_rate,
        count(price_seen_eur) as priced_searches,
        exp(avg(ln(price_seen_eur / nullif(expected_quote_eur, 0)))) as fare_index

    from quoted
    group by 1, 2

),

final as (

    select
        {{ dbt.concat(['route_id', "'|'", "cast(search_date as " ~ dbt.type_string() ~ ")"]) }} as route_day_id,
        *

    from route_days

)

select * from final
