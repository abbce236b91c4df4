#!/usr/bin/env python3
"""Extract one day of (fake) orders into a CSV folder, with PySpark.

Run by `spark-submit` on a spark queue: the rows are generated deterministically from the
date and the region, so a retry or a backfill of the same day writes the same data, and the
folder is overwritten as a whole.

    spark-submit spark_extract.py --date 2026-01-15 --region eu --out /tmp/orders/ds=2026-01-15
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys

from pyspark.sql import SparkSession

PRODUCTS = {"keyboard": 49.90, "mouse": 19.50, "monitor": 229.00, "laptop-stand": 35.00,
            "usb-c-hub": 27.90, "headset": 79.00}
SCHEMA = "order_id string, ds string, region string, product string, quantity int, amount double"


def orders(day: str, region: str, count: int) -> list[tuple[str, str, str, str, int, float]]:
    seed = int.from_bytes(hashlib.sha256(f"{day}|{region}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    rows = []
    for i in range(1, count + 1):
        product = rng.choice(sorted(PRODUCTS))
        quantity = rng.randint(1, 5)
        rows.append((f"{region}-{day}-{i:04d}", day, region, product, quantity,
                     round(PRODUCTS[product] * quantity, 2)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description="Write one day of fake orders as CSV.")
    parser.add_argument("--date", default=os.environ.get("FLOWPLAN_DS"),
                        help="logical date YYYY-MM-DD (default: $FLOWPLAN_DS)")
    parser.add_argument("--region", default="eu")
    parser.add_argument("--out", required=True, help="folder to (over)write")
    parser.add_argument("--rows", type=int, default=200)
    args = parser.parse_args()
    if not args.date:
        parser.error("--date is required when FLOWPLAN_DS is not set")

    spark = SparkSession.builder.getOrCreate()
    try:
        frame = spark.createDataFrame(orders(args.date, args.region, args.rows), SCHEMA)
        frame.coalesce(1).write.mode("overwrite").option("header", True).csv(args.out)
        print(f"extract: run={os.environ.get('FLOWPLAN_RUN_ID', '-')} ds={args.date}"
              f" region={args.region} rows={frame.count()} -> {args.out}"
              f" (application {spark.sparkContext.applicationId})")
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
