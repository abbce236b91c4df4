"""Engine benchmark: workflows of `true` nodes run end to end through the engine with durable
state (SQLite), each next to its floor measured in the same process, in the same run.

    python bench/engine.py [--quick] [--profile] [--json FILE] [--strict]

The floor of N nodes at concurrency C is N bare `asyncio.create_subprocess_exec("true")`
spawn-and-wait calls, at most C at a time: the least work any engine that starts processes
must do. The engine does more by design: each attempt is started by the shim (the daemon's
supervisor process, which records the pid and the exit status that let a restarted daemon
adopt or collect it), the node's command under `/bin/sh -c`, with an attempt folder (two
new folders, a log, a pid and an exit file) and three SQLite commits an attempt (intent,
pid, result). Rows "launcher alone" run the same number of attempts through the engine's
`LocalLauncher` without the engine, which splits the cost between the two.

The shim starts on the first launch of the process (the warm-up run), so the totals do not
include its start-up (~20 ms, once per daemon). Creating files is part of every attempt, and
its cost depends on the file system's state: the line "an attempt's files" after the table
says what it was before each figure, in the folder the state lives in (TMPDIR chooses it;
see README.md for why a folder where many files were just deleted makes it 10x dearer).

Figures (and their targets):
(a) a chain of 100 nodes: node-to-node handoff, the end of one attempt (`finished_at` of
    node k) to the start of the next (`started_at` of node k+1) from the stored run, p50
    <= 2 ms and p99 <= 8 ms; its floor is an asyncio task handoff (create_task -> it runs).
    The chain's total against 100 sequential spawns (no target).
(b) 1,000 independent nodes on a queue of concurrency 16: total <= 2x the floor.
(c) a 10,000-node DAG of fan-out / fan-in blocks (a hub node, 99 nodes after it, the next
    hub after all 99) on concurrency 16: total <= 2x the floor, and the cost per node at
    10,000 nodes against the same shape at 100 nodes (best of 5): linear, <= 1.5x.

A total is wall-clock from `create_run` (which commits the run's rows) to `wait_run`
returning; compiling the plan and opening the store are not in it. The process applies the
garbage-collector settings of the `flowplan` command (`flowplan.daemon.cli.tune_gc`), as the daemon
does. `--quick` runs 300 independent nodes and a 1,000-node DAG instead (~10 s). With
`--profile`, the independent-nodes run is profiled (cProfile) and the top functions by
own time are printed after the table.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.plan import Plan
from flowplan.compiler.repo import read_repo
from flowplan.daemon.cli import tune_gc
from flowplan.daemon.domain import Run, RunStatus, RunTrigger
from flowplan.daemon.engine.clock import SystemClock
from flowplan.daemon.engine.engine import Engine, EngineSettings
from flowplan.daemon.engine.launcher import LaunchSpec, LocalLauncher
from flowplan.daemon.engine.plans import MemoryPlans
from flowplan.daemon.state.store import StateStore

CONCURRENCY = 16
HUB_FANOUT = 99  # a DAG block: one hub node, then this many nodes after it
HANDOFF_P50_MS, HANDOFF_P99_MS = 2.0, 8.0
FLOOR_RATIO = 2.0
LINEAR_RATIO = 1.5  # per-node cost at the large size / at 100 nodes
SMALL_REPEAT = 5

@dataclass
class Figure:
    figure: str
    value: float
    unit: str
    floor: float | None = None
    target: str = ""
    passed: bool | None = None  # None: no target

    @property
    def ratio(self) -> float | None:
        return self.value / self.floor if self.floor else None


# ---------------------------------------------------------------------------------------
# Workflows
# ---------------------------------------------------------------------------------------


def _node(name: str, upstream: list[str]) -> str:
    ups = f", upstream: [{', '.join(upstream)}]" if upstream else ""
    return f"  - {{name: {name}, command: 'true'{ups}}}"


def chain(n: int) -> list[str]:
    return [_node(f"n{i}", [f"n{i - 1}"] if i else []) for i in range(n)]


def independent(n: int) -> list[str]:
    return [_node(f"n{i}", []) for i in range(n)]


def fan_dag(n: int) -> list[str]:
    """Blocks of a hub and HUB_FANOUT nodes after it; each hub after the previous block."""
    nodes, block = [], HUB_FANOUT + 1
    for i in range(n):
        start = i - i % block
        if i == start:  # a hub: fan-in of the previous block's nodes
            upstream = [f"n{j}" for j in range(max(0, start - HUB_FANOUT), start)]
        else:  # fan-out of this block's hub
            upstream = [f"n{start}"]
        nodes.append(_node(f"n{i}", upstream))
    return nodes


def compile_plan(root: Path, name: str, nodes: list[str]) -> tuple[Plan, float]:
    """Write a one-workflow repository and compile it in memory (version 1)."""
    repo = root / f"repo-{name}"
    (repo / "workflows").mkdir(parents=True)
    (repo / "flowplan.yaml").write_text(
        f"queues: {{default: {{executor: local, concurrency: {CONCURRENCY}}}}}\n")
    (repo / "workflows" / f"{name}.yaml").write_text(
        "\n".join([f"name: {name}", "nodes:", *nodes]) + "\n")
    started = time.perf_counter()
    result = compile_repo(read_repo(repo))
    took = time.perf_counter() - started
    if not result.ok:
        sys.exit(f"bench: {name} does not compile: {[str(d) for d in result.diagnostics][:3]}")
    plan = MemoryPlans(result.plans).latest(name)
    assert plan is not None
    return plan, took


# ---------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------


async def run_engine(plan: Plan, state_dir: Path, profile: cProfile.Profile | None = None
                     ) -> tuple[float, Run]:
    """One run of `plan` on a fresh engine and store; (seconds, the stored run). A profile
    sees every task of the event loop while enabled: the whole run, `create_run` included."""
    store = StateStore(state_dir)
    engine = Engine(store=store, plans=MemoryPlans([plan]), launcher=LocalLauncher(),
                    clock=SystemClock(), settings=EngineSettings(state_dir=state_dir))
    await engine.start()
    try:
        if profile is not None:
            profile.enable()
        started = time.perf_counter()
        run = engine.create_run(plan, trigger=RunTrigger.MANUAL, logical_time=datetime.now(UTC))
        final = await engine.wait_run(run.run_id)
        took = time.perf_counter() - started
    finally:
        if profile is not None:
            profile.disable()
        await engine.stop()
        store.close()
    if final.status is not RunStatus.SUCCEEDED:
        failed = [(n.name, n.attempts[-1].error if n.attempts else n.skip_reason)
                  for n in final.nodes if n.status.value != "SUCCEEDED"][:3]
        sys.exit(f"bench: run of {final.workflow} ended {final.status.value}: {failed}")
    return took, final


async def floor_spawns(n: int, concurrency: int) -> float:
    """n bare spawn-and-wait calls of `true`, at most `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            process = await asyncio.create_subprocess_exec("true")
            await process.wait()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - started


async def launcher_only(work: Path, n: int, concurrency: int) -> float:
    """n attempts of `true` through the engine's launcher alone (the shim, attempt folder, log,
    pid and exit files), at most `concurrency` at a time: no engine, no SQLite."""
    launcher, gate, env = LocalLauncher(), asyncio.Semaphore(concurrency), dict(os.environ)
    base = Path(tempfile.mkdtemp(dir=work, prefix="launcher-"))

    async def one(i: int) -> None:
        async with gate:
            handle = await launcher.launch(LaunchSpec(
                argv=("/bin/sh", "-c", "true"), env=env, cwd=base,
                attempt_dir=base / f"n{i}" / "1"))
            await handle.wait()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started


async def floor_task_handoffs(n: int) -> list[float]:
    """Seconds from `create_task` to the task running, n times: the least a handoff costs."""
    out: list[float] = []

    async def record(created: float) -> None:
        out.append(time.perf_counter() - created)

    for _ in range(n):
        await asyncio.get_running_loop().create_task(record(time.perf_counter()))
    return out


def handoffs(run: Run) -> list[float]:
    """finished_at of node k to started_at of node k+1, for a chain n0 -> n1 -> ..."""
    by_name = {node.name: node for node in run.nodes}
    gaps = []
    for k in range(len(by_name) - 1):
        ended = by_name[f"n{k}"].attempts[-1].finished_at
        started = by_name[f"n{k + 1}"].attempts[0].started_at
        assert ended is not None
        gaps.append((started - ended).total_seconds())
    return gaps


async def timed_run(engine: Engine, plan: Plan) -> tuple[float, Run]:
    """A manual run of `plan` to its end: its wall time and the finished run (exit if it
    did not succeed: a figure of a failed run means nothing)."""
    started = time.perf_counter()
    run = engine.create_run(plan, trigger=RunTrigger.MANUAL, logical_time=datetime.now(UTC))
    final = await engine.wait_run(run.run_id)
    took = time.perf_counter() - started
    if final.status is not RunStatus.SUCCEEDED:
        sys.exit(f"bench: run of {final.workflow} ended {final.status.value}")
    return took, final


async def in_turns(engines: dict[bool, Engine], plan: Plan, repeat: int
                   ) -> tuple[dict[bool, list[float]], dict[bool, list[float]], float]:
    """One warm-up run of `plan` on each engine (the shim starts, imports settle), then
    `repeat` runs on each in turns, the order alternating, so that the machine's weather
    falls on both: the handoff gaps and run totals by key, and the seconds the turns took."""
    for engine in engines.values():
        await timed_run(engine, plan)
    gaps: dict[bool, list[float]] = {key: [] for key in engines}
    totals: dict[bool, list[float]] = {key: [] for key in engines}
    started = time.perf_counter()
    for i in range(repeat):
        for key in ((False, True) if i % 2 == 0 else (True, False)):
            took, run = await timed_run(engines[key], plan)
            totals[key].append(took)
            gaps[key] += handoffs(run)
    return gaps, totals, time.perf_counter() - started


def paired_figures(gaps: dict[bool, list[float]], totals: dict[bool, list[float]],
                   names: tuple[str, str]) -> dict[str, dict[str, float]]:
    """Handoff p50/p99 and run totals of two interleaved setups (False: the floor, True:
    the one measured), each with its ratio to the floor; `names` label them (floor first)."""
    figures: dict[str, dict[str, float]] = {}
    for name, values in (("handoff p50 ms", {k: percentile(v, 50) * 1e3
                                             for k, v in gaps.items()}),
                         ("handoff p99 ms", {k: percentile(v, 99) * 1e3
                                             for k, v in gaps.items()}),
                         ("total best s", {k: min(v) for k, v in totals.items()}),
                         ("total median s", {k: statistics.median(v)
                                             for k, v in totals.items()})):
        figures[name] = {names[0]: values[False], names[1]: values[True],
                         "ratio": values[True] / values[False]}
    return figures


def attempt_files(work: Path, n: int = 100) -> float:
    """Median seconds to create what an attempt creates on disk, n times in a new folder of
    `work`: two folders and three small files (5 inodes). The engine pays this on every attempt
    and the floor does not; its cost depends on the file system's state (see README.md). The
    files stay until the end: deleting them would make the next creations dearer."""
    folder = Path(tempfile.mkdtemp(dir=work, prefix="files-"))
    took = []
    for i in range(n):
        started = time.perf_counter()
        attempt = folder / f"n{i}" / "1"
        attempt.mkdir(parents=True)
        for name in ("log", "pid", "exit"):
            (attempt / name).write_bytes(b"0\n")
        took.append(time.perf_counter() - started)
    return statistics.median(took)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


# ---------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------


async def bench(work: Path, *, quick: bool, repeat: int, profile: bool,
                log: Callable[[str], None]) -> tuple[list[Figure], list[str], dict[str, Any]]:
    """Every figure is the best of `repeat` runs, floor and engine interleaved (this kind of
    machine is noisy: the same run varies by 2x from one minute to the next)."""
    n_chain = 100
    n_parallel = 300 if quick else 1000
    n_dag = 1000 if quick else 10_000
    n_small = 100
    figures: list[Figure] = []
    profiles: list[str] = []
    info: dict[str, Any] = {}
    runs = iter(range(1_000_000))

    async def engine_run(plan: Plan, **kwargs: Any) -> tuple[float, Run]:
        return await run_engine(plan, work / f"state-{plan.workflow}-{next(runs)}", **kwargs)

    # warm up: the first spawns of a process pay for page faults and lazy imports; the first
    # launch starts the shim
    await floor_spawns(50, CONCURRENCY)
    warm, _ = compile_plan(work, "warm", chain(5))
    await engine_run(warm)
    files = info["attempt files"] = {"(a)": attempt_files(work)}

    # (a) chain of 100: handoffs pooled over the runs, totals best of
    plan, info["compile chain"] = compile_plan(work, "chain", chain(n_chain))
    log(f"(a) chain of {n_chain} nodes, {repeat} runs")
    totals, floors, launchers, gaps, durations = [], [], [], [], []
    for _ in range(repeat):
        floors.append(await floor_spawns(n_chain, 1))
        launchers.append(await launcher_only(work, n_chain, 1))
        total, run = await engine_run(plan)
        totals.append(total)
        gaps += handoffs(run)
        durations += [(a.finished_at - a.started_at).total_seconds()
                      for node in run.nodes for a in node.attempts if a.finished_at]
    task_gaps = await floor_task_handoffs(1000)
    p50, p99 = percentile(gaps, 50) * 1e3, percentile(gaps, 99) * 1e3
    figures += [
        Figure(f"(a) chain {n_chain}: handoff p50", p50, "ms",
               statistics.median(task_gaps) * 1e3, f"<= {HANDOFF_P50_MS:g} ms",
               p50 <= HANDOFF_P50_MS),
        Figure(f"(a) chain {n_chain}: handoff p99", p99, "ms",
               percentile(task_gaps, 99) * 1e3, f"<= {HANDOFF_P99_MS:g} ms",
               p99 <= HANDOFF_P99_MS),
        Figure(f"(a) chain {n_chain}: total", min(totals), "s", min(floors)),
        Figure("(a)   launcher alone, sequential", min(launchers), "s", min(floors)),
        Figure("(a)   attempt p50 (start to end)", percentile(durations, 50) * 1e3, "ms",
               min(floors) / n_chain * 1e3),
    ]

    # (b) independent nodes at concurrency 16
    files["(b)"] = attempt_files(work)
    plan, info["compile parallel"] = compile_plan(work, "parallel", independent(n_parallel))
    log(f"(b) {n_parallel} independent nodes, concurrency {CONCURRENCY}, {repeat} runs")
    totals, floors, launchers = [], [], []
    for _ in range(repeat):
        floors.append(await floor_spawns(n_parallel, CONCURRENCY))
        launchers.append(await launcher_only(work, n_parallel, CONCURRENCY))
        totals.append((await engine_run(plan))[0])
    figures += [
        Figure(f"(b) {n_parallel:,} parallel: total", min(totals), "s", min(floors),
               f"<= {FLOOR_RATIO:g}x floor", min(totals) <= FLOOR_RATIO * min(floors)),
        Figure(f"(b)   launcher alone, concurrency {CONCURRENCY}", min(launchers), "s",
               min(floors)),
    ]
    if profile:
        log("(b) once more, under cProfile")
        profiler = cProfile.Profile()
        total, _ = await engine_run(plan, profile=profiler)
        info["profiled total (s)"] = round(total, 3)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
        profiles.append(text.getvalue())

    # (c) fan-out / fan-in DAG at concurrency 16, and the same shape at 100 nodes
    files["(c)"] = attempt_files(work)
    plan, info["compile dag"] = compile_plan(work, "dag", fan_dag(n_dag))
    small, info["compile dag_small"] = compile_plan(work, "dag_small", fan_dag(n_small))
    log(f"(c) DAG of {n_dag} nodes, concurrency {CONCURRENCY}, {repeat} runs")
    totals, floors = [], []
    for _ in range(repeat):
        floors.append(await floor_spawns(n_dag, CONCURRENCY))
        totals.append((await engine_run(plan))[0])
    log(f"(c) DAG of {n_small} nodes, {SMALL_REPEAT} runs")
    small_totals, small_floors = [], []
    for _ in range(SMALL_REPEAT):
        small_floors.append(await floor_spawns(n_small, CONCURRENCY))
        small_totals.append((await engine_run(small))[0])
    per_node, small_per_node = min(totals) / n_dag * 1e3, min(small_totals) / n_small * 1e3
    figures += [
        Figure(f"(c) DAG {n_dag:,}: total", min(totals), "s", min(floors),
               f"<= {FLOOR_RATIO:g}x floor", min(totals) <= FLOOR_RATIO * min(floors)),
        Figure(f"(c) DAG {n_small}: total", min(small_totals), "s", min(small_floors)),
        Figure(f"(c) per node at {n_dag:,} vs at {n_small}", per_node, "ms", small_per_node,
               f"<= {LINEAR_RATIO:g}x (linear)", per_node <= LINEAR_RATIO * small_per_node),
    ]
    files["end"] = attempt_files(work)
    return figures, profiles, info


def table(figures: list[Figure]) -> str:
    rows = [("figure", "value", "floor", "ratio", "target", "")]
    for f in figures:
        fmt = "{:.3f} s" if f.unit == "s" else "{:.3f} ms"
        rows.append((f.figure, fmt.format(f.value),
                     fmt.format(f.floor) if f.floor is not None else "-",
                     f"{f.ratio:.2f}x" if f.ratio is not None else "-", f.target or "-",
                     "" if f.passed is None else "PASS" if f.passed else "MISS"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:4], widths[1:4],
                                                                       strict=True)),
                 row[4].ljust(widths[4]), row[5]]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="300 independent nodes and a 1,000-node DAG (~15 s)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per figure, the best one counts (default 3)")
    parser.add_argument("--profile", action="store_true",
                        help="profile the independent-nodes run; print the top 15 by tottime")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 on a MISS")
    parser.add_argument("--keep", action="store_true", help="keep the state folders")
    args = parser.parse_args(argv)
    tune_gc()

    def log(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="flowplan-bench-engine-"))
    try:
        figures, profiles, info = asyncio.run(
            bench(work, quick=args.quick, repeat=args.repeat, profile=args.profile,
                  log=log))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"state kept in {work}", file=sys.stderr)
    print(f"flowplan engine benchmark: Python {platform.python_version()}, SQLite"
          f" {sqlite3.sqlite_version}, {os.cpu_count()} CPUs, concurrency {CONCURRENCY},"
          f" {'quick' if args.quick else 'full'} run, best of {args.repeat}")
    print(table(figures))
    print("compile (s, not in the totals): " + ", ".join(
        f"{k.removeprefix('compile ')} {v:.3f}" for k, v in info.items()
        if k.startswith("compile")))
    print(f"an attempt's files (2 folders, 3 files) in {work.parent}, median us before each"
          " figure: " + ", ".join(f"{k} {v * 1e6:.0f}" for k, v in info["attempt files"].items()))
    for text in profiles:
        print(f"\ncProfile of the independent-nodes run"
              f" (total {info.get('profiled total (s)')} s under the profiler):")
        print(text.strip())
    print(f"\nbench took {time.perf_counter() - started:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(
            [{**asdict(f), "ratio": f.ratio} for f in figures], indent=2) + "\n")
    missed = [f.figure for f in figures if f.passed is False]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
