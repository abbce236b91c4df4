-- Aggregate one day of sales per product (SQLite, run by the embedded engine).
--
-- Templates are rendered before the SQL runs. The script is idempotent: it first removes
-- what an earlier attempt for the same day and region wrote, so retries, backfills and
-- resumed runs give the same result.

CREATE TABLE IF NOT EXISTS sales_orders (
    order_id   TEXT PRIMARY KEY,
    ds         TEXT NOT NULL,
    region     TEXT NOT NULL,
    product    TEXT NOT NULL,
    quantity   INTEGER NOT NULL,
    unit_price REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS sales_daily (
    ds       TEXT NOT NULL,
    region   TEXT NOT NULL,
    product  TEXT NOT NULL,
    orders   INTEGER NOT NULL,
    units    INTEGER NOT NULL,
    revenue  REAL NOT NULL,
    PRIMARY KEY (ds, region, product)
);

DELETE FROM sales_orders WHERE ds = '${ds}' AND region = '${params.region}';
DELETE FROM sales_daily  WHERE ds = '${ds}' AND region = '${params.region}';

INSERT INTO sales_orders (order_id, ds, region, product, quantity, unit_price) VALUES
    ('${params.region}-${ds_nodash}-0001', '${ds}', '${params.region}', 'keyboard',     2,  49.90),
    ('${params.region}-${ds_nodash}-0002', '${ds}', '${params.region}', 'monitor',      1, 229.00),
    ('${params.region}-${ds_nodash}-0003', '${ds}', '${params.region}', 'mouse',        3,  19.50),
    ('${params.region}-${ds_nodash}-0004', '${ds}', '${params.region}', 'keyboard',     1,  49.90),
    ('${params.region}-${ds_nodash}-0005', '${ds}', '${params.region}', 'headset',      2,  79.00),
    ('${params.region}-${ds_nodash}-0006', '${ds}', '${params.region}', 'usb-c-hub',    4,  27.90);

INSERT INTO sales_daily (ds, region, product, orders, units, revenue)
SELECT ds, region, product, COUNT(*), SUM(quantity), ROUND(SUM(quantity * unit_price), 2)
FROM sales_orders
WHERE ds = '${ds}' AND region = '${params.region}'
GROUP BY ds, region, product;

SELECT ds, region,
       COUNT(*)               AS products,
       SUM(orders)            AS orders,
       SUM(units)             AS units,
       ROUND(SUM(revenue), 2) AS revenue
FROM sales_daily
WHERE ds = '${ds}' AND region = '${params.region}'
GROUP BY ds, region;
