with

spine as (

    {{ dbt.date_spine('day', "cast('2025-01-01' as date)", "cast('2028-01-01' as date)") }}

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
