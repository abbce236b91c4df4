"""State-store commit latency: WAL checkpoints inside the commits (SQLite's default) against
checkpoints on a thread of their own (`StateStore(checkpoint_every=...)`, what the daemon
uses), in the same run.

    python bench/commits.py [--commits N] [--json FILE]

Every commit is one small write (`set_switch`), as the engine makes several per node. The
floor is the same commit on a store with no checkpoints at all (`wal_autocheckpoint=0`, the
WAL only grows): what a commit costs when nothing but the commit happens.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from flowplan.daemon.state.store import StateStore

AT = datetime(2026, 1, 1, tzinfo=UTC)


def commit_latencies(commits: int, *, checkpoint_every: float | None, floor: bool
                     ) -> list[float]:
    """Milliseconds of each of `commits` commits, a short pause every 50 as a loop has."""
    folder = Path(tempfile.mkdtemp(prefix="flowplan-commits-"))
    store = StateStore(folder, checkpoint_every=checkpoint_every)
    try:
        if floor:
            store._db.execute("PRAGMA wal_autocheckpoint=0")
        latencies = []
        for i in range(commits):
            began = time.perf_counter()
            store.set_switch(f"wf{i % 5000}", enabled=bool(i % 2), git_enabled=True, at=AT)
            latencies.append((time.perf_counter() - began) * 1000)
            if i % 50 == 0:
                time.sleep(0.001)
        return latencies
    finally:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commits", type=int, default=20_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    print(f"{'figure':<44} {'p50 ms':>7} {'p99.9 ms':>9} {'max ms':>7} {'> 2 ms':>7}")
    for name, every, floor in (("floor: no checkpoints", None, True),
                               ("checkpoints in the commit (SQLite default)", None, False),
                               ("checkpoints on their thread (the daemon)", 1.0, False)):
        values = sorted(commit_latencies(args.commits, checkpoint_every=every, floor=floor))
        figure = {"p50": values[len(values) // 2],
                  "p999": values[int(len(values) * 0.999)], "max": values[-1],
                  "over_2ms": sum(v > 2 for v in values)}
        results[name] = figure
        print(f"{name:<44} {figure['p50']:>7.3f} {figure['p999']:>9.3f} {figure['max']:>7.2f}"
              f" {figure['over_2ms']:>7}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
