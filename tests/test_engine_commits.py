"""Commits on the state store's commit thread (`EngineSettings.commit_off_loop`, the
daemon's choice: an attempt's intent and pid, a StartRun's run): each is durable before the
engine acts on it, a burst of them shares commits, and a write that fails for its own reason
fails alone. Real processes and SQLite: each node's own process reads the state database as
another program would."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.repo import read_repo
from flowplan.compiler.store import PlanStore
from flowplan.daemon.domain import (
    DuplicateRunError,
    NodeRun,
    NodeStatus,
    Run,
    RunStatus,
    RunTrigger,
)
from flowplan.daemon.engine.clock import SystemClock
from flowplan.daemon.engine.engine import Engine, EngineSettings
from flowplan.daemon.engine.launcher import LocalLauncher
from flowplan.daemon.state.store import DB_FILE, StateStore
from flowplan.daemon.watcher import PlanCatalog

NOW = datetime(2026, 3, 1, tzinfo=UTC)

# Run by every node: what the state database says, as committed, while the node runs.
CHECK = """\
import os, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
run, node = os.environ["FLOWPLAN_RUN_ID"], os.environ["FLOWPLAN_NODE"]
attempt = int(os.environ["FLOWPLAN_ATTEMPT"])
own = db.execute("SELECT status FROM attempts WHERE run_id = ? AND node = ? AND number = ?",
                 (run, node, attempt)).fetchone()
print("own", own[0] if own else None)
for upstream in sys.argv[2:]:
    row = db.execute("SELECT n.status, a.status FROM node_runs n JOIN attempts a ON"
                     " a.run_id = n.run_id AND a.node = n.name WHERE n.run_id = ? AND"
                     " n.name = ?", (run, upstream)).fetchone()
    print("upstream", upstream, *row)
"""


def _run(run_id: str) -> Run:
    return Run(run_id=run_id, workflow="w", plan_version=1, plan_digest="d",
               trigger=RunTrigger.MANUAL, logical_time=NOW, status=RunStatus.PENDING,
               created_at=NOW, nodes=(NodeRun(run_id=run_id, name="a",
                                              status=NodeStatus.PENDING, queue="default",
                                              plan_version=1),))


def test_every_node_sees_its_intent_and_its_upstreams_results_committed(
        tmp_path: Path, make_repo: Any) -> None:
    """20 nodes start at once (their intents commit in batches), then one after all of them:
    each node's process finds its own attempt row RUNNING, and the last finds every
    upstream SUCCEEDED, node and attempt, in the database file."""
    check = tmp_path / "check.py"
    check.write_text(CHECK)
    state = tmp_path / "state"
    database = state / DB_FILE
    fan = [f"a{i}" for i in range(20)]
    nodes = [f"  - {{name: {n}, command: '{sys.executable} {check} {database}'}}" for n in fan]
    nodes.append(f"  - {{name: last, command: '{sys.executable} {check} {database}"
                 f" {' '.join(fan)}', upstream: [{', '.join(fan)}]}}")
    result = compile_repo(read_repo(make_repo({
        "flowplan.yaml": "queues:\n  default: {concurrency: 20}\n",
        "workflows/w.yaml": "name: w\nnodes:\n" + "\n".join(nodes) + "\n"})))
    assert result.ok, [str(d) for d in result.diagnostics]
    plans = PlanStore(tmp_path / "plans")
    plans.publish(result.plans)
    store = StateStore(state)
    engine = Engine(store=store, plans=PlanCatalog(plans), launcher=LocalLauncher(),
                    clock=SystemClock(), settings=EngineSettings(state_dir=state,
                                                                 commit_off_loop=True))

    async def main() -> Run:
        await engine.start()
        try:
            plan = plans.latest("w")
            assert plan is not None
            run = engine.create_run(plan, trigger=RunTrigger.MANUAL, logical_time=NOW)
            await asyncio.wait_for(engine.wait_run(run.run_id), 30)
            stored = store.get_run(run.run_id)
            assert stored is not None
            return stored
        finally:
            await engine.stop()

    run = asyncio.run(main())
    store.close()
    assert run.status is RunStatus.SUCCEEDED
    for name in fan:
        assert Path(run.node(name).attempts[0].log_path).read_text() == "own RUNNING\n"
        assert run.node(name).attempts[0].pid is not None  # the pid, not awaited, landed
    lines = Path(run.node("last").attempts[0].log_path).read_text().splitlines()
    assert lines == ["own RUNNING"] + [f"upstream {n} SUCCEEDED SUCCEEDED" for n in fan]


def test_commits_off_the_loop_run_on_the_commit_thread_and_are_durable_when_awaited(
        tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    threads: list[str] = []

    def insert(run_id: str) -> None:
        threads.append(threading.current_thread().name)
        store.insert_run(_run(run_id), graph_version=1)

    async def main() -> None:
        # one loop iteration queues all three: they wait for one batch
        await asyncio.gather(*(store.commit_off_loop(lambda r=r: insert(r))
                               for r in ("wr_1", "wr_2", "wr_3")))

    asyncio.run(main())
    assert threads and all(t.startswith("flowplan-commit") for t in threads)
    other = sqlite3.connect(tmp_path / DB_FILE)  # another program's view: committed rows
    assert [r[0] for r in other.execute("SELECT run_id FROM runs ORDER BY run_id")] == [
        "wr_1", "wr_2", "wr_3"]
    assert store.get_run("wr_2") is not None  # and the loop's connection sees them
    other.close()
    store.close()


def test_a_write_that_fails_for_its_own_reason_fails_alone(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.insert_run(_run("wr_taken"), graph_version=1)

    async def main() -> list[BaseException | None]:
        outcomes = await asyncio.gather(
            store.commit_off_loop(lambda: store.insert_run(_run("wr_a"), graph_version=1)),
            store.commit_off_loop(lambda: store.insert_run(_run("wr_taken"), graph_version=1)),
            store.commit_off_loop(lambda: store.insert_run(_run("wr_b"), graph_version=1)),
            return_exceptions=True)
        return list(outcomes)

    first, second, third = asyncio.run(main())
    assert first is None and third is None
    assert isinstance(second, DuplicateRunError)
    assert store.get_run("wr_a") is not None and store.get_run("wr_b") is not None
    store.close()


def test_writes_on_the_loop_and_on_the_commit_thread_take_turns(tmp_path: Path) -> None:
    """A transaction on the loop while the commit thread is inside one waits for it to end:
    neither sees SQLITE_BUSY, and both commit."""
    store = StateStore(tmp_path)
    inside, release = threading.Event(), threading.Event()

    def slow() -> None:
        store.insert_run(_run("wr_thread"), graph_version=1)
        inside.set()
        release.wait(5)

    async def main() -> None:
        future = store.commit_off_loop(slow)
        await asyncio.to_thread(inside.wait, 5)
        threading.Timer(0.2, release.set).start()
        store.insert_run(_run("wr_loop"), graph_version=1)  # waits for the thread's commit
        await future

    asyncio.run(main())
    assert store.get_run("wr_thread") is not None and store.get_run("wr_loop") is not None
    store.close()


def test_close_waits_for_the_batch_being_committed_and_drops_the_queued_ones(
        tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    later: list[asyncio.Future[None]] = []

    async def main() -> None:
        for i in range(3):
            store.commit_off_loop(
                lambda i=i: store.insert_run(_run(f"wr_{i}"), graph_version=1))
        await asyncio.sleep(0)  # the batch of three is handed to the commit thread
        later.extend(store.commit_off_loop(
            lambda i=i: store.insert_run(_run(f"wr_{i}"), graph_version=1)) for i in (3, 4))
        store.close()

    asyncio.run(main())
    assert all(f.cancelled() for f in later)  # nobody was told they were committed
    reopened = StateStore(tmp_path)
    assert sorted(r.run_id for r in reopened.list_runs(limit=10)) == ["wr_0", "wr_1", "wr_2"]
    reopened.close()


def test_a_run_created_off_the_loop_is_committed_before_it_is_queued(
        tmp_path: Path, make_repo: Any) -> None:
    """`create_run_off_loop` (the StartRun RPC's way): the rows are in the database file,
    written by the commit thread, when the run is queued; then it runs as any other."""
    result = compile_repo(read_repo(make_repo({
        "workflows/w.yaml": "name: w\nnodes:\n  - {name: a, command: 'true'}\n"})))
    assert result.ok, [str(d) for d in result.diagnostics]
    plans = PlanStore(tmp_path / "plans")
    plans.publish(result.plans)
    state = tmp_path / "state"
    store = StateStore(state)
    engine = Engine(store=store, plans=PlanCatalog(plans), launcher=LocalLauncher(),
                    clock=SystemClock(), settings=EngineSettings(state_dir=state,
                                                                 commit_off_loop=True))
    seen: list[tuple[str, str | None]] = []

    def on_event(event: Any) -> None:
        if event.node is None and event.status == "PENDING":  # queued
            other = sqlite3.connect(state / DB_FILE)
            row = other.execute("SELECT status FROM runs WHERE run_id = ?",
                                (event.run_id,)).fetchone()
            other.close()
            seen.append((threading.current_thread().name, row and row[0]))

    engine.subscribe(on_event)

    async def main() -> RunStatus:
        await engine.start()
        try:
            plan = plans.latest("w")
            assert plan is not None
            run = await engine.create_run_off_loop(plan, trigger=RunTrigger.MANUAL,
                                                   logical_time=NOW)
            return (await asyncio.wait_for(engine.wait_run(run.run_id), 30)).status
        finally:
            await engine.stop()

    assert asyncio.run(main()) is RunStatus.SUCCEEDED
    assert seen == [("MainThread", "PENDING")]
    store.close()
