#!/usr/bin/env python3
"""Summarize the probe results of one health-check run.

    python3 summarize.py --dir /tmp/flowplan-examples/health/<run_id> --expect disk,db

Reads every <probe>.json in --dir, prints one line per probe, writes summary.json, and
exits 1 when a probe is unhealthy or an expected probe left no result (it crashed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def load_results(directory: Path) -> dict[str, dict[str, object]]:
    results: dict[str, dict[str, object]] = {}
    if not directory.is_dir():
        return results
    for path in sorted(directory.glob("*.json")):
        if path.name == "summary.json":
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            data = {"ok": False, "error": f"unreadable result: {exc}"}
        if not isinstance(data, dict):
            data = {"ok": False, "error": "result is not a JSON object"}
        results[str(data.get("probe", path.stem))] = data
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Summarize health probe results.")
    parser.add_argument("--dir", required=True, help="directory holding the probe results")
    parser.add_argument(
        "--expect", default="", help="comma-separated probes that must have a result"
    )
    parser.add_argument(
        "--logical-time",
        default=os.environ.get("FLOWPLAN_DS", "-"),
        help="logical time of the run, for the report",
    )
    args = parser.parse_args(argv)

    directory = Path(args.dir)
    results = load_results(directory)
    for name in (p.strip() for p in args.expect.split(",")):
        if name and name not in results:
            results[name] = {"ok": False, "error": "no result (probe failed or was skipped)"}

    run_id = os.environ.get("FLOWPLAN_RUN_ID", "-")
    print(f"health summary for {args.logical_time} (run {run_id})")
    unhealthy = []
    for name, data in sorted(results.items()):
        ok = data.get("ok") is True
        if not ok:
            unhealthy.append(name)
        details = ", ".join(f"{k}={v}" for k, v in sorted(data.items()) if k not in {"probe", "ok"})
        print(f"  {'OK  ' if ok else 'FAIL'} {name}: {details}")

    summary = {
        "logical_time": args.logical_time,
        "run_id": run_id,
        "healthy": not unhealthy,
        "unhealthy": unhealthy,
        "probes": results,
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(
        json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    if unhealthy:
        print(f"unhealthy: {', '.join(unhealthy)}", file=sys.stderr)
        return 1
    print("all probes healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
