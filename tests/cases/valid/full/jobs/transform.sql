select region, sum(amount) as total
from orders
where day = '${ ds }' and region = '${ params.region }'
group by region
