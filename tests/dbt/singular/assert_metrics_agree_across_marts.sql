-- Each metric gives the same figure, to the cent, in every mart that carries it (real users
-- only, whole history): the facts, fct_daily_performance, dim_users and customer_rfm. Net
-- revenue is also checked against the raw events (first delivery of each event id).
-- Whole-history totals agree however the days are cut: daily performance puts refunds on the
-- refund date, dim_users on the user, and both add up to the same net.
with

users as (

    select * from {{ ref('dim_users') }}
    where not is_excluded_traffic

),

raw_purchases as (

    select distinct
        purchases.event_id,
        purchases.booking_id,
        cast(purchases.price_eur as {{ dbt.type_numeric() }})
        - cast(purchases.discount_eur as {{ dbt.type_numeric() }}) as paid_eur
    from {{ source('app', 'ticket_purchased') }} as purchases
    inner join users on purchases.user_id = users.user_id

),

raw_refunds as (

    select distinct
        refunds.event_id,
        cast(refunds.refund_eur as {{ dbt.type_numeric() }}) as refund_eur
    from {{ source('app', 'booking_refunded') }} as refunds
    inner join raw_purchases on refunds.booking_id = raw_purchases.booking_id

),

figures as (

    {%- set real = 'not is_excluded_traffic' %}
    {%- set figures = [
        ('searches', 'fct_searches', 'count(*)', real),
        ('converted_searches', 'fct_searches', 'sum(case when is_converted then 1 else 0 end)', real),
        ('bookings', 'fct_bookings', 'count(*)', real),
        ('gross_revenue_eur', 'fct_bookings', 'sum(gross_revenue_eur)', real),
        ('discount_eur', 'fct_bookings', 'sum(discount_eur)', real),
        ('refund_eur', 'fct_bookings', 'sum(refund_eur)', real),
        ('refunded_bookings', 'fct_bookings', 'sum(case when is_refunded then 1 else 0 end)', real),
        ('net_revenue_eur', 'fct_bookings', 'sum(booking_cohort_net_revenue_eur)', real),
        ('refund_eur', 'fct_cancellations', 'sum(refund_eur)', real),
        ('refunded_bookings', 'fct_cancellations', 'sum(case when is_refunded then 1 else 0 end)', real),
        ('bookings', 'dim_users', 'sum(lifetime_bookings)', real),
        ('net_revenue_eur', 'dim_users', 'sum(lifetime_net_revenue_eur)', real),
        ('bookings', 'customer_rfm', 'sum(frequency)', 'true'),
        ('net_revenue_eur', 'customer_rfm', 'sum(monetary_eur)', 'true'),
    ] %}
    {%- for metric in ['searches', 'converted_searches', 'bookings', 'gross_revenue_eur',
                       'discount_eur', 'refund_eur', 'refunded_bookings', 'net_revenue_eur'] %}
        {%- do figures.append((metric, 'fct_daily_performance', 'sum(' ~ metric ~ ')', 'true')) %}
    {%- endfor %}

    {% for metric, mart, expression, condition in figures %}
        select
            '{{ metric }}' as metric,
            '{{ mart }}' as mart,
            {{ expression }} as figure
        from {{ ref(mart) }}
        where {{ condition }}
        union all
    {% endfor %}
    select
        'net_revenue_eur' as metric,
        'raw events' as mart,
        (select sum(paid_eur) from raw_purchases)
        - coalesce((select sum(refund_eur) from raw_refunds), 0) as figure

),

as_numbers as (

    -- an empty mart sums to null, which must not pass for agreement
    select
        metric,
        mart,
        coalesce(cast(figure as {{ type_double() }}), -1) as figure
    from figures

),

disagreeing as (

    -- to the cent (customer_rfm holds doubles, the facts exact decimals)
    select metric
    from as_numbers
    group by 1
    having max(figure) - min(figure) >= 0.005

)

select as_numbers.*
from as_numbers
inner join disagreeing on as_numbers.metric = disagreeing.metric
