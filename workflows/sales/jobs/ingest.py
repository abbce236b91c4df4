#!/usr/bin/env python3
"""Ingest one day of (fake) sales into a CSV file.

The rows are generated deterministically from the date and the region, so re-running the
node for the same day (a retry, a backfill, a resume) writes exactly the same file. The file
is written to a temporary name and renamed into place, so readers never see half a file.

    python3 ingest.py --date 2026-01-01 --region eu --out /tmp/flowplan-examples/raw.csv
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import os
import random
import sys
from pathlib import Path

PRODUCTS = {
    "keyboard": 49.90,
    "mouse": 19.50,
    "monitor": 229.00,
    "laptop-stand": 35.00,
    "usb-c-hub": 27.90,
    "headset": 79.00,
}
FIELDS = ["order_id", "ds", "region", "product", "quantity", "unit_price", "amount"]


def generate(day: dt.date, region: str, rows: int) -> list[dict[str, str]]:
    seed = int.from_bytes(hashlib.sha256(f"{day}|{region}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    names = sorted(PRODUCTS)
    out = []
    for i in range(1, rows + 1):
        product = rng.choice(names)
        quantity = rng.randint(1, 5)
        price = PRODUCTS[product]
        out.append(
            {
                "order_id": f"{region}-{day:%Y%m%d}-{i:04d}",
                "ds": day.isoformat(),
                "region": region,
                "product": product,
                "quantity": str(quantity),
                "unit_price": f"{price:.2f}",
                "amount": f"{price * quantity:.2f}",
            }
        )
    return out


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate one day of fake sales as CSV.")
    parser.add_argument(
        "--date",
        default=os.environ.get("FLOWPLAN_DS"),
        help="logical date YYYY-MM-DD (default: $FLOWPLAN_DS)",
    )
    parser.add_argument("--region", default="eu", help="sales region (default: eu)")
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument("--rows", type=int, default=25, help="number of orders (default: 25)")
    args = parser.parse_args(argv)

    if not args.date:
        parser.error("--date is required when FLOWPLAN_DS is not set")
    try:
        day = dt.date.fromisoformat(args.date)
    except ValueError:
        parser.error(f"--date must be YYYY-MM-DD, got {args.date!r}")
    if args.rows < 0:
        parser.error("--rows must not be negative")

    rows = generate(day, args.region, args.rows)
    out = Path(args.out)
    write_csv(out, rows)
    total = sum(float(r["amount"]) for r in rows)
    run_id = os.environ.get("FLOWPLAN_RUN_ID", "-")
    print(
        f"ingest: run={run_id} ds={day} region={args.region} "
        f"rows={len(rows)} total={total:.2f} -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
