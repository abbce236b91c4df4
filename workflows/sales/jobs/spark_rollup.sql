-- One day's revenue per product, in Spark SQL (run by the spark queue's executor: each
-- statement in turn in one SparkSession; the rows of the last one are printed as CSV).
--
-- Templates are rendered before Spark sees the script. The result folder is overwritten, so
-- retries, backfills and resumed runs give the same result.

CREATE TEMPORARY VIEW orders
USING csv
OPTIONS (path '${params.data_dir}/orders/ds=${ds}', header 'true', inferSchema 'true');

CREATE TEMPORARY VIEW daily AS
SELECT ds, region, product,
       count(*)               AS orders,
       sum(quantity)          AS units,
       round(sum(amount), 2)  AS revenue
FROM orders
WHERE ds = '${ds}'
GROUP BY ds, region, product;

INSERT OVERWRITE DIRECTORY '${params.data_dir}/rollup/ds=${ds}'
USING csv OPTIONS (header 'true')
SELECT * FROM daily;

SELECT * FROM daily ORDER BY revenue DESC, product;
