{#- The users extract with each user's latest marketing consent from both sources: the extract
    (its state as of the user's updated_at) and the consent_updated events. The later one wins;
    on a tie the extract does (it already holds that change). updated_at becomes the time of the
    user's last change in either source, so the users snapshot built from this model dates a
    consent withdrawal that arrived as an event after the last extract correctly. -#}
with

users as (

    select * from {{ ref('stg_app__users') }}

),

consent_updates as (

    select * from {{ ref('stg_app__consent_updates') }}

),

latest_consent_update as (

    select
        user_id,
        marketing_consent,
        consent_updated_at,
        row_number() over (
            partition by user_id
            order by consent_updated_at desc, received_at desc, event_id desc
        ) as update_rank

    from consent_updates

),

final as (

    select
        users.user_id,
        users.email_sha256,
        users.email_domain,
        users.signed_up_at,
        users.country_code,
        users.home_station_id,
        users.age_band,
        users.acquisition_channel,
        users.signup_platform,
        users.has_loyalty_card,
        case
            when latest_consent_update.consent_updated_at > users.updated_at
                then latest_consent_update.marketing_consent
            else users.has_marketing_consent
        end as has_marketing_consent,
        case
            when latest_consent_update.consent_updated_at > users.updated_at
                then latest_consent_update.consent_updated_at
            else users.updated_at
        end as updated_at,
        users.is_internal_user,
        users.loaded_at

    from users
    left join latest_consent_update
        on
            users.user_id = latest_consent_update.user_id
            and latest_consent_update.update_rank = 1

)

select * from final
