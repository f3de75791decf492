{#- The calendar covers the whole years the data touches: from 1 January of the earliest signup
    or search to 31 December of the latest travel date, so any RAILFLOW_START_DATE gets a spine.
    dbt.generate_series gives day numbers up to 2^15 (about 89 years), enough for any world;
    dbt.date_spine was not used because it sizes itself with a query at compile time. -#}
with

users as (

    select * from {{ ref('stg_app__users') }}

),

searches as (

    select * from {{ ref('stg_app__searches') }}

),

bounds as (

    select
        cast({{ dbt.date_trunc('year', 'min(first_date)') }} as date) as first_day,
        cast({{ dbt.date_trunc('year', 'max(last_date)') }} as date) as last_year_start

    from (
        select
            cast(min(signed_up_at) as date) as first_date,
            cast(max(signed_up_at) as date) as last_date
        from users
        union all
        select
            least(cast(min(searched_at) as date), min(travel_date)) as first_date,
            greatest(cast(max(searched_at) as date), max(travel_date)) as last_date
        from searches
    ) as data_dates

),

day_numbers as (

    {{ dbt.generate_series(32768) }}

),

spine as (

    {#- generate_series numbers are floats on BigQuery (power()); intervals need integers -#}
    select {{ add_days_to_date('cast(day_numbers.generated_number as ' ~ dbt.type_bigint() ~ ') - 1', 'bounds.first_day') }} as date_day

    from day_numbers
    cross join bounds
    where
        {{ add_days_to_date('cast(day_numbers.generated_number as ' ~ dbt.type_bigint() ~ ') - 1', 'bounds.first_day') }}
        < {{ add_days_to_date(0, dbt.dateadd('year', 1, 'bounds.last_year_start')) }}

),

holidays as (

    select * from {{ ref('holidays') }}

),

holiday_days as (

    select
        holiday_date,
        count(distinct case when holiday_type = 'public' then country_code end) as public_holiday_countries,
        count(distinct case when holiday_type = 'school' then country_code end) as school_holiday_countries

    from holidays
    group by 1

),

final as (

    select
        cast(spine.date_day as date) as date_day,
        extract(year from spine.date_day) as year_number,
        extract(month from spine.date_day) as month_number,
        extract(day from spine.date_day) as day_of_month,
        {{ day_of_week('spine.date_day') }} as day_of_week,
        {{ day_of_week('spine.date_day') }} >= 6 as is_weekend,
        {{ week_start('spine.date_day') }} as week_start_date,
        cast({{ dbt.date_trunc('month', 'spine.date_day') }} as date) as month_start_date,
        coalesce(holiday_days.public_holiday_countries, 0) as public_holiday_countries,
        coalesce(holiday_days.school_holiday_countries, 0) as school_holiday_countries

    from spine
    left join holiday_days on cast(spine.date_day as date) = holiday_days.holiday_date

)

select * from final
