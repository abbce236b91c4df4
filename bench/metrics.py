"""Metrics benchmark: what `--http` metrics, scraped every second, cost the engine.

    python bench/metrics.py [--repeat N] [--json FILE] [--strict]

The figure of bench/engine.py (a): a chain of 100 `true` nodes through the engine with
durable state, node-to-node handoff (the end of one attempt to the start of the next, from the
stored run) and the run's total. Two setups, interleaved run by run in the same process:

- none: the engine alone, as without `--http`;
- scraped: the engine with the daemon's `Metrics` listening to its events, the HTTP listener
  on loopback, and a client thread that GETs /metrics every second (as Prometheus would with
  `scrape_interval: 1s`, fifteen times its usual rate). The scrape is answered on the
  engine's event loop (and reads the store), as in `flowplan serve --http`.

Target: the handoff p50, scraped, within 1.05x of none. Handoffs are pooled over
the runs (3,000 at the default 30 runs); the totals (best and median of the runs) are shown
without a target: a 0.2 s run on this shared machine varies by more than 5% from one run to
the next, either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine import chain, compile_plan, in_turns, paired_figures  # bench/engine.py

from flowplan.compiler.plan import Plan
from flowplan.compiler.store import PlanStore
from flowplan.daemon.cli import tune_gc
from flowplan.daemon.engine.clock import SystemClock
from flowplan.daemon.engine.engine import Engine, EngineSettings
from flowplan.daemon.engine.launcher import LocalLauncher
from flowplan.daemon.engine.plans import MemoryPlans
from flowplan.daemon.notify.outbox import Outbox
from flowplan.daemon.server.config import ServeConfig
from flowplan.daemon.server.http import HttpServer
from flowplan.daemon.server.metrics import Metrics, Sources
from flowplan.daemon.state.store import StateStore
from flowplan.daemon.watcher import PlanCatalog

N_CHAIN = 100
RATIO = 1.05
SCRAPE_SECONDS = 1.0


SCRAPER = """
import sys, time, urllib.request
url, every = sys.argv[1], float(sys.argv[2])
count = 0
try:
    while True:
        started = time.monotonic()
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
        count += 1
        print(count, flush=True)
        time.sleep(max(0.0, every - (time.monotonic() - started)))
except KeyboardInterrupt:
    pass
"""


class Setup:
    """One engine on its own store, for every run of a setup; with `scraped`, the daemon's
    metrics listening to it, the HTTP listener, and a scraper process polling /metrics."""

    def __init__(self, work: Path, plans: list[Plan], *, scraped: bool) -> None:
        self.state = work / ("state-scraped" if scraped else "state-none")
        self.store = StateStore(self.state)
        self.engine = Engine(store=self.store, plans=MemoryPlans(plans),
                             launcher=LocalLauncher(), clock=SystemClock(),
                             settings=EngineSettings(state_dir=self.state))
        self.scraped = scraped
        self.http: HttpServer | None = None
        self.scraper: subprocess.Popen[str] | None = None
        self.scrape_seconds: list[float] = []
        self._stop = asyncio.Event()
        self._loop_watch: asyncio.Future[None] | None = None

    async def start(self) -> None:
        await self.engine.start()
        if not self.scraped:
            return
        metrics = Metrics(Sources(engine=self.engine, store=self.store,
                                  outbox=Outbox(self.store),
                                  catalog=PlanCatalog(PlanStore(self.state / "plans")),
                                  clock=SystemClock()))
        self.engine.subscribe(metrics.on_event)
        def scrape() -> bytes:  # timed: what a scrape holds the event loop for
            started = time.perf_counter()
            text = metrics.scrape()
            self.scrape_seconds.append(time.perf_counter() - started)
            return text

        self.http = HttpServer(ServeConfig(store=self.state / "plans", state=self.state,
                                           http="127.0.0.1:0"), scrape)
        await self.http.start()
        self._loop_watch = asyncio.ensure_future(metrics.watch_loop(self._stop))
        self.scraper = subprocess.Popen(
            [sys.executable, "-c", SCRAPER, f"{self.http.url}/metrics", str(SCRAPE_SECONDS)],
            stdout=subprocess.PIPE, text=True)

    async def stop(self) -> int:
        """Stop everything; the number of scrapes answered."""
        scrapes = 0
        if self.scraper is not None:
            self.scraper.send_signal(signal.SIGINT)
            out, _ = await asyncio.to_thread(self.scraper.communicate)
            scrapes = len(out.split())
        self._stop.set()
        if self._loop_watch is not None:
            await self._loop_watch
        if self.http is not None:
            await self.http.stop()
        await self.engine.stop()
        self.store.close()
        return scrapes


async def bench(work: Path, repeat: int) -> dict[str, Any]:
    plan, _ = compile_plan(work, "chain", chain(N_CHAIN))
    setups = {scraped: Setup(work, [plan], scraped=scraped) for scraped in (False, True)}
    for setup in setups.values():
        await setup.start()
    gaps, totals, elapsed = await in_turns(
        {scraped: setup.engine for scraped, setup in setups.items()}, plan, repeat)
    scrapes = sum([await setup.stop() for setup in setups.values()])
    figures: dict[str, Any] = {"runs per setup": repeat, "scrapes": scrapes,
                               "seconds": elapsed, "scrape median ms": statistics.median(
                                   setups[True].scrape_seconds) * 1e3}
    figures.update(paired_figures(gaps, totals, ("none", "scraped")))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="runs per setup (default 30)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 on a MISS")
    args = parser.parse_args(argv)
    tune_gc()
    with tempfile.TemporaryDirectory(prefix="flowplan-bench-metrics-") as folder:
        figures = asyncio.run(bench(Path(folder), args.repeat))
    print(f"chain of {N_CHAIN} `true` nodes, {args.repeat} runs per setup in"
          f" {figures['seconds']:.1f} s, {figures['scrapes']} scrapes of /metrics"
          f" ({SCRAPE_SECONDS:g} s apart) by another process, each"
          f" {figures['scrape median ms']:.2f} ms of the event loop (median)")
    print(f"{'figure':<16} {'none':>9} {'scraped':>9} {'ratio':>7}  target")
    missed = False
    for name in ("handoff p50 ms", "handoff p99 ms", "total best s", "total median s"):
        row = figures[name]
        target = ""
        if name == "handoff p50 ms":
            ok = row["ratio"] <= RATIO
            missed |= not ok
            target = f"<= {RATIO}x {'ok' if ok else 'MISS'}"
        print(f"{name:<16} {row['none']:>9.3f} {row['scraped']:>9.3f} {row['ratio']:>6.2f}x"
              f"  {target}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
