{#- A table: read by dim_users, the product marts and the churn features: built once per run instead of
    re-aggregating sessions and bookings for each reader. -#}
{{ config(materialized='table') }}

with

sessions as (

    select * from {{ ref('int_sessions_aggregated') }}

),

bookings as (

    select * from {{ ref('fct_bookings') }}

),

session_days as (

    select
        user_id,
        session_date as activity_date,
        count(*) as sessions,
        sum(searches) as searches

    from sessions
    group by 1, 2

),

booking_days as (

    select
        user_id,
        booking_date as activity_date,
        count(*) as bookings,
        sum(gross_revenue_eur - discount_eur) as paid_eur

    from bookings
    group by 1, 2

),

final as (

    select
        coalesce(session_days.user_id, booking_days.user_id) as user_id,
        coalesce(session_days.activity_date, booking_days.activity_date) as activity_date,
        coalesce(session_days.sessions, 0) as sessions,
        coalesce(session_days.searches, 0) as searches,
        coalesce(booking_days.bookings, 0) as bookings,
        coalesce(booking_days.paid_eur, 0) as paid_eur

    from session_days
    full outer join booking_days
        on
            session_days.user_id = booking_days.user_id
            and session_days.activity_date = booking_days.activity_date

)

select * from final
