"""Tracing benchmark: what OpenTelemetry traces (the `otel` extra) cost the engine.

    python bench/tracing.py [--repeat N] [--export otlp|none] [--json FILE]

The figure of bench/engine.py (a): a chain of 100 `true` nodes through the engine with
durable state, node-to-node handoff (the end of one attempt to the start of the next, from the
stored run) and the run's total. Two setups, interleaved run by run in the same process:

- off: the engine alone, as without the OTEL_* variables (no TRACEPARENT, no listener);
- traced: the engine with the daemon's `Tracing` as `flowplan serve` sets it up (TRACEPARENT
  for every attempt, the spans built from the engine's events) and its OTLP/HTTP exporter
  behind the SDK's BatchSpanProcessor, sending to a collector stand-in in another process
  (it answers every export 200), with a 0.2 s schedule delay so that exports happen during
  the runs. With `--export none`: the same spans built, none exported (what the event loop
  does, without the exporter's thread competing for the GIL).

No target of its own; shown against the 1.05x set for metrics (bench/metrics.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from engine import chain, compile_plan, in_turns, paired_figures  # bench/engine.py

from flowplan.compiler.plan import Plan
from flowplan.daemon.cli import tune_gc
from flowplan.daemon.engine.clock import SystemClock
from flowplan.daemon.engine.engine import Engine, EngineSettings
from flowplan.daemon.engine.launcher import LocalLauncher
from flowplan.daemon.engine.plans import MemoryPlans
from flowplan.daemon.server.otel import Tracing
from flowplan.daemon.server.tracing import traceparent
from flowplan.daemon.state.store import StateStore

N_CHAIN = 100
RATIO = 1.05

COLLECTOR = """
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        print("export", flush=True)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(server.server_address[1], flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    pass
"""


class Setup:
    def __init__(self, work: Path, plans: list[Plan], *, endpoint: str | None,
                 export: bool = True) -> None:
        self.state = work / ("state-traced" if endpoint else "state-off")
        self.store = StateStore(self.state)
        self.tracing: Tracing | None = None
        if endpoint is not None:
            os.environ.update({  # the exporter reads its settings from the environment
                "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
                # the batch processor's delay: exports during the runs, not after them
                "OTEL_BSP_SCHEDULE_DELAY": "200"})
            self.tracing = Tracing.from_environment(os.environ) if export else Tracing([])
        self.engine = Engine(store=self.store, plans=MemoryPlans(plans),
                             launcher=LocalLauncher(), clock=SystemClock(),
                             settings=EngineSettings(
                                 state_dir=self.state,
                                 traceparent=traceparent if self.tracing else None))
        if self.tracing is not None:
            self.tracing.follow(self.engine, self.store)

    async def stop(self) -> None:
        if self.tracing is not None:
            await self.tracing.shutdown()
        await self.engine.stop()
        self.store.close()


async def bench(work: Path, repeat: int, endpoint: str, export: bool) -> dict[str, Any]:
    plan, _ = compile_plan(work, "chain", chain(N_CHAIN))
    setups = {traced: Setup(work, [plan], endpoint=endpoint if traced else None,
                            export=export)
              for traced in (False, True)}
    for setup in setups.values():
        await setup.engine.start()
    gaps, totals, elapsed = await in_turns(
        {traced: setup.engine for traced, setup in setups.items()}, plan, repeat)
    for setup in setups.values():
        await setup.stop()
    figures: dict[str, Any] = {"runs per setup": repeat, "seconds": elapsed}
    figures.update(paired_figures(gaps, totals, ("off", "traced")))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="runs per setup (default 30)")
    parser.add_argument("--export", choices=("otlp", "none"), default="otlp",
                        help="traced: export over OTLP/HTTP (default) or build the spans only")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    tune_gc()
    collector = subprocess.Popen([sys.executable, "-c", COLLECTOR], stdout=subprocess.PIPE,
                                 text=True)
    try:
        assert collector.stdout is not None
        port = int(collector.stdout.readline())
        endpoint = f"http://127.0.0.1:{port}/v1/traces"
        with tempfile.TemporaryDirectory(prefix="flowplan-bench-tracing-") as folder:
            figures = asyncio.run(bench(Path(folder), args.repeat, endpoint,
                                     args.export == "otlp"))
    finally:
        collector.send_signal(2)
        out, _ = collector.communicate(timeout=10)
    figures["exports"] = out.count("export")
    print(f"chain of {N_CHAIN} `true` nodes, {args.repeat} runs per setup in"
          f" {figures['seconds']:.1f} s; traced: {figures['exports']} OTLP/HTTP exports"
          " to a collector stand-in")
    print(f"{'figure':<16} {'off':>9} {'traced':>9} {'ratio':>7}  reference")
    for name in ("handoff p50 ms", "handoff p99 ms", "total best s", "total median s"):
        row = figures[name]
        reference = ""
        if name == "handoff p50 ms":
            reference = f"<= {RATIO}x {'ok' if row['ratio'] <= RATIO else 'over'}"
        print(f"{name:<16} {row['off']:>9.3f} {row['traced']:>9.3f} {row['ratio']:>6.2f}x"
              f"  {reference}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
