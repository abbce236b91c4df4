"""A process that drives runs, for the crash-safety tests (tests/test_engine_crash.py).

    python tests/engine_crash_driver.py --store S --state D [--create WORKFLOW]
        [--crash-at POINT:NODE] [--cancel-when-running NODE]

It starts an `Engine` on the plan store S and the state directory D (which recovers every
run a previous process left active), creates a manual run of WORKFLOW if asked (printing
its run id at once), and waits until no run is active any more, then prints `idle`.

`--crash-at POINT:NODE` makes the process `kill -9` itself the first time it reaches POINT
for NODE (no `finally`, no flush, no atexit: exactly what an operator's `kill -9` does):

- `after-intent`  the attempt row is committed, the process is not launched yet;
- `after-launch`  the process is launched, its pid not yet committed;
- `before-finish` the node's process has ended, its result is not committed;
- `after-finish`  the result is committed, the downstream nodes are not started yet;
- `after-run-end` the run's end is committed (with the notification outbox row that the
  notifier, subscribed as `flowplan serve` does, records in the same commit); NODE is
  not used.

`--cancel-when-running NODE` cancels the run as soon as NODE's first attempt has written to
its log (so its command runs: a cancel in the first milliseconds, before the node's shell
has run its first line, is a different case).

The engine's log (INFO) goes to stderr: the tests wait for its "adopted" lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowplan.compiler.store import PlanStore
from flowplan.daemon.domain import Attempt, RunStatus, RunTrigger
from flowplan.daemon.engine.clock import SystemClock
from flowplan.daemon.engine.engine import Engine, EngineSettings, StatusEvent
from flowplan.daemon.engine.launcher import LaunchSpec, LocalLauncher, ProcessHandle
from flowplan.daemon.notify import Notifier, Outbox, OutboxSender
from flowplan.daemon.state.store import StateStore
from flowplan.daemon.watcher import PlanCatalog

LOGICAL_TIME = datetime(2026, 3, 29, 1, tzinfo=UTC)
POINTS = ("after-intent", "after-launch", "before-finish", "after-finish", "after-run-end")


def die() -> None:
    """`kill -9` of this very process."""
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingStore(StateStore):
    """Dies before a write, or just after the commit that holds it (which the engine may
    widen: its durable listeners write in the same commit)."""

    def __init__(self, state_dir: Path, point: str | None, node: str | None) -> None:
        self._point = point
        self._node = node
        self._depth = 0
        self._die_after_commit = False
        super().__init__(state_dir)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._depth += 1
        try:
            with super().transaction() as db:
                yield db
        finally:
            self._depth -= 1
        if self._depth == 0 and self._die_after_commit:
            die()

    def _after_commit(self) -> None:
        self._die_after_commit = True
        if self._depth == 0:
            die()

    def start_attempt(self, attempt: Attempt) -> None:
        super().start_attempt(attempt)
        if self._point == "after-intent" and attempt.node == self._node:
            self._after_commit()

    def finish_attempt(self, run_id: str, node: str, number: int, **kwargs: Any) -> None:
        if self._point == "before-finish" and node == self._node:
            die()
        super().finish_attempt(run_id, node, number, **kwargs)
        if self._point == "after-finish" and node == self._node:
            self._after_commit()

    def set_run_status(self, run_id: str, status: RunStatus, *, at: datetime) -> None:
        super().set_run_status(run_id, status, at=at)
        if self._point == "after-run-end" and status.finished:
            self._after_commit()


class CrashingLauncher(LocalLauncher):
    def __init__(self, point: str | None, node: str | None) -> None:
        self._point = point
        self._node = node

    async def launch(self, spec: LaunchSpec) -> ProcessHandle:
        handle = await super().launch(spec)
        # <state>/runs/<run id>/<node>/<attempt>
        if self._point == "after-launch" and spec.attempt_dir.parent.name == self._node:
            die()
        return handle


def cancel_when_running(engine: Engine, state_dir: Path, node: str) -> None:
    tasks: list[asyncio.Task[None]] = []

    async def cancel(run_id: str, attempt_dir: Path) -> None:
        log_file = attempt_dir / "log"
        while not (log_file.exists() and log_file.stat().st_size):
            await asyncio.sleep(0.01)
        engine.cancel_run(run_id)

    def listener(event: StatusEvent) -> None:
        if event.node == node and event.status == "RUNNING" and event.attempt == 1:
            attempt_dir = state_dir / "runs" / event.run_id / node / str(event.attempt)
            tasks.append(asyncio.get_running_loop().create_task(
                cancel(event.run_id, attempt_dir)))

    engine.subscribe(listener)


async def main(args: argparse.Namespace) -> None:
    point = node = None
    if args.crash_at:
        point, _, node = args.crash_at.partition(":")
        if point not in POINTS or not node:
            raise SystemExit(f"--crash-at: expected POINT:NODE with POINT in {POINTS}")
    state_dir = Path(args.state)
    store = CrashingStore(state_dir, point, node)
    plans = PlanStore(Path(args.store))
    catalog = PlanCatalog(plans)
    engine = Engine(store=store, plans=catalog,
                    launcher=CrashingLauncher(point, node), clock=SystemClock(),
                    settings=EngineSettings(state_dir=state_dir, kill_grace_seconds=1.0))
    # as `flowplan serve` wires it, without an SMTP server: messages stay in the outbox
    notifier = Notifier(store=store, plans=catalog,
                        sender=OutboxSender(Outbox(store), None, clock=SystemClock()))
    engine.subscribe(notifier.on_event, durable=True)
    await engine.start()
    if args.create:
        plan = plans.latest(args.create)
        if plan is None:
            raise SystemExit(f"{args.create}: not published")
        run = engine.create_run(plan, trigger=RunTrigger.MANUAL, logical_time=LOGICAL_TIME)
        print(run.run_id, flush=True)
        if args.cancel_when_running:
            cancel_when_running(engine, state_dir, args.cancel_when_running)
    while True:  # the engine's active runs; the tests check that none is left behind
        active = [r.run_id for r in store.runs_with_status([RunStatus.PENDING,
                                                             RunStatus.RUNNING])
                  if engine.is_active(r.run_id)]
        if not active:
            break
        for run_id in active:
            await engine.wait_run(run_id)
    await engine.stop()
    print("idle", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--create", metavar="WORKFLOW")
    parser.add_argument("--crash-at", metavar="POINT:NODE")
    parser.add_argument("--cancel-when-running", metavar="NODE")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main(parser.parse_args()))
