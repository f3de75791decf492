{#- The registry (seed experiment_registry) with what the data says about each experiment: its
    first and last exposure, the end of the data and the planned end (the first exposure plus
    planned_duration_days). Readouts before the planned end are sequential. -#}
with

registry as (

    select * from {{ ref('experiment_registry') }}

),

exposures as (

    select * from {{ ref('experiment_exposures') }}

),

activity as (

    select * from {{ ref('int_user_activity_daily') }}

),

data_end as (

    select
        cast({{ add_days_to_date(1, 'max(activity_date)') }} as {{ dbt.type_timestamp() }})
            as data_end_at

    from activity

),

exposure_span as (

    select
        experiment_id,
        min(exposed_at) as first_exposed_at,
        max(exposed_at) as last_exposed_at

    from exposures
    group by 1

),

final as (

    select
        registry.experiment_id,
        registry.hypothesis,
        registry.owner,
        registry.unit,
        registry.control_share,
        registry.treatment_share,
        registry.start_day,
        registry.planned_duration_days,
        registry.planned_users_per_arm,
        registry.primary_metric,
        registry.secondary_metrics,
        registry.guardrail_metrics,
        registry.exposure_trigger,
        registry.exposure_trigger is not null as is_triggered,
        exposure_span.first_exposed_at,
        exposure_span.last_exposed_at,
        data_end.data_end_at,
        case
            when registry.planned_duration_days is not null
                then {{ add_days_to_timestamp('registry.planned_duration_days', 'exposure_span.first_exposed_at') }}
        end as planned_end_at,
        coalesce(
            registry.planned_duration_days is not null
            and {{ add_days_to_timestamp('registry.planned_duration_days', 'exposure_span.first_exposed_at') }}
            <= data_end.data_end_at,
            false
        ) as is_past_planned_duration

    from registry
    cross join data_end
    left join exposure_span on registry.experiment_id = exposure_span.experiment_id

)

select * from final
