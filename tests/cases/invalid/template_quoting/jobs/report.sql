-- columns come from a run parameter, on purpose
select ${ params.columns | raw }
from [${ params.file }]
where day = '${ ds }';
