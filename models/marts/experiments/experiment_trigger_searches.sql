{#- The search-level sample of a triggered experiment: the search that fired the trigger, in
    both arms. The exposure is logged when a user's first eligible search (for the discount: a
    medium-intent one) is made, so the first search of the user at or after the exposure, within a
    minute, is that search; later eligible searches are not marked in the control arm, so only
    this one is compared (same selection in both arms). The users are those of the readouts
    (experiment_user_outcomes: no excluded traffic, no conflicting variants). -#}
with

users as (

    select * from {{ ref('experiment_user_outcomes') }}

),

triggered as (

    select * from {{ ref('experiment_designs') }}
    where is_triggered

),

searches as (

    select * from {{ ref('fct_searches') }}

),

candidates as (

    select
        users.exposure_id,
        users.experiment_id,
        users.user_id,
        users.variant,
        users.exposed_at,
        searches.search_id,
        searches.searched_at,
        searches.price_seen_eur,
        searches.lead_time_days,
        searches.passengers,
        searches.discount_offered_eur,
        searches.is_converted,
        row_number() over (
            partition by users.exposure_id order by searches.searched_at, searches.search_id
        ) as search_rank

    from users
    inner join triggered on users.experiment_id = triggered.experiment_id
    inner join searches
        on
            users.user_id = searches.user_id
            and users.exposed_at <= searches.searched_at
            and searches.searched_at
            < cast({{ dbt.dateadd('minute', 1, 'users.exposed_at') }} as {{ dbt.type_timestamp() }})

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
        price_seen_eur,
        lead_time_days,
        passengers,
        discount_offered_eur,
        is_converted

    from candidates
    where search_rank = 1

)

select * from final
