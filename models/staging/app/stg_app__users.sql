with

source as (

    {{ dedupe_events(source('app', 'users'), partition_by='user_id', order_by='updated_at desc, _loaded_at desc') }}

),

renamed as (

    select
        user_id,
        email_sha256,
        email_domain,
        {{ utc_timestamp('signup_at') }} as signed_up_at,
        country_code,
        home_station_id,
        age_band,
        acquisition_channel,
        signup_platform,
        has_loyalty_card,
        marketing_consent as has_marketing_consent,
        {{ utc_timestamp('updated_at') }} as updated_at,
        email_domain = 'railflow.test' as is_internal_user,
        _loaded_at as loaded_at

    from source

)

select * from renamed
