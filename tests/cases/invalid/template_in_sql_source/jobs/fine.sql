select '${ ds_nodash }', '${ params.region | upper }', '$${ literal }'
