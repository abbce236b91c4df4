-- dbt's spelling
select * from orders where day = '{{ ds }}' and region = '{{ params.region }}'
