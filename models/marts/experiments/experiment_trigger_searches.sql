{#- The search-level sample of a triggered experiment: the search that fired the trigger, in
    both arms. The exposure is logged when a user's first eligible search (for the discount: a
    medium-intent one) is made, so the first search of the user at or after the exposure, within a
    minute, is that search; later eligible searches are not marked in the control arm, so only
    this one is compared (same selection in both arms). -#}
with

exposures as (

    select * from {{ ref('experiment_exposures') }}
    where not is_excluded_traffic and not has_conflicting_variants

),

designs as (

    select * from {{ ref('experiment_designs') }}
    where is_triggered

),

searches as (

    select * from {{ ref('fct_searches') }}

),

candidates as (

    select
        exposures.exposure_id,
        exposures.experiment_id,
        exposures.user_id,
        exposures.variant,
        exposures.exposed_at,
        searches.search_id,
        searches.searched_at,
        searches.discount_offered_eur,
        searches.is_converted,
        row_number() over (
            partition by exposures.exposure_id order by searches.searched_at, searches.search_id
        ) as search_rank

    from exposures
    inner join designs on exposures.experiment_id = designs.experiment_id
    inner join searches
        on
            exposures.user_id = searches.user_id
            and searches.searched_at >= exposures.exposed_at
            and searches.searched_at
            < cast({{ dbt.dateadd('minute', 1, 'exposures.exposed_at') }} as {{ dbt.type_timestamp() }})

),

final as (

    select
        exposure_id,
        experiment_id,
        user_id,
        variant,
        exposed_at,
        search_id,
        searched_at,
        discount_offered_eur,
        is_converted

    from candidates
    where search_rank = 1

)

select * from final
