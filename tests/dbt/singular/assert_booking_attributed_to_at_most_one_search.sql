-- Every booking is attributed to at most one search.
select
    booking_id,
    count(*) as searches
from {{ ref('fct_searches') }}
where booking_id is not null
group by 1
having count(*) > 1
