with

users as (

    select * from {{ ref('dim_users') }}

),

final as (

    select
        user_id,
        as_of_date,
        cast({{ dbt.datediff('cast(last_booking_at as date)', 'as_of_date', 'day') }} as {{ dbt.type_bigint() }}
        )
            as recency_days,
        cast(lifetime_bookings as {{ dbt.type_bigint() }}) as frequency,
        cast(lifetime_net_revenue_eur as {{ type_double() }}) as monetary_eur

    from users
    where lifetime_bookings > 0 and not is_excluded_traffic

)

select * from final
