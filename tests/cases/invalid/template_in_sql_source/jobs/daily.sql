-- daily totals
select region, sum(amount)
from sales
where day = '${ ds }'
  and region = '${ params.regoin }'
  and batch = ${ attempt +* 1 }
group by region
