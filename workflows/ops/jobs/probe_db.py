#!/usr/bin/env python3
"""Database probe: write, read back and integrity-check a small SQLite database.

    python3 probe_db.py --db /tmp/flowplan-examples/health/health.db --out db.json

Each run appends one heartbeat row (keeping the latest 500), times the round trip and runs
PRAGMA quick_check. The result is written as JSON for summarize.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

KEEP_ROWS = 500


def probe(db_path: Path, ts: str, max_latency_ms: float) -> dict[str, object]:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    con = sqlite3.connect(db_path, timeout=5)
    try:
        with con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS heartbeat ("
                " id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, run_id TEXT)"
            )
            con.execute(
                "INSERT INTO heartbeat (ts, run_id) VALUES (?, ?)",
                (ts, os.environ.get("FLOWPLAN_RUN_ID")),
            )
            con.execute(
                "DELETE FROM heartbeat WHERE id <= (SELECT MAX(id) FROM heartbeat) - ?",
                (KEEP_ROWS,),
            )
        (rows,) = con.execute("SELECT COUNT(*) FROM heartbeat").fetchone()
        (check,) = con.execute("PRAGMA quick_check").fetchone()
    finally:
        con.close()
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    return {
        "probe": "db",
        "ok": check == "ok" and latency_ms <= max_latency_ms,
        "db": str(db_path),
        "integrity": check,
        "latency_ms": latency_ms,
        "max_latency_ms": max_latency_ms,
        "heartbeats": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Probe a SQLite database and write JSON.")
    parser.add_argument("--db", required=True, help="SQLite database file to probe")
    parser.add_argument("--out", required=True, help="JSON result file to write")
    parser.add_argument("--ts", default=None, help="logical time (default: now, UTC)")
    parser.add_argument(
        "--max-latency-ms",
        type=float,
        default=1000.0,
        help="slower round trips count as unhealthy (default: 1000)",
    )
    args = parser.parse_args(argv)

    ts = args.ts or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        result = probe(Path(args.db), ts, args.max_latency_ms)
    except sqlite3.Error as exc:
        result = {"probe": "db", "ok": False, "db": args.db, "error": str(exc)}

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(f"probe_db: ok={result['ok']} {json.dumps(result, sort_keys=True)} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
