"""Recovery after a restart: the runs that were active when the last process stopped are
adopted with their node processes, finished, or -- when their plan cannot be loaded any more --
failed after their processes are stopped.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from flowplan.daemon.domain import AttemptStatus, NodeStatus, Run, RunStatus
from flowplan.daemon.engine.admission import Admission
from flowplan.daemon.engine.core import EXIT_MEANINGS, LOST, QueuedRun, RunState, lane_of
from flowplan.daemon.engine.launcher import ProcessHandle, ProcessLostError
from flowplan.daemon.state.store import ClosedAttempt

log = logging.getLogger("flowplan.engine")


class Recovery(Admission):
    """The engine's start: every run active at the last stop recovered or failed."""

    async def start(self) -> None:
        """Recover every run that was active when the last process stopped."""
        now = self._clock.now()
        recovered: list[tuple[RunState, Run]] = []
        for run in self._store.runs_with_status([RunStatus.RUNNING]):
            try:
                state = self._load_run(run)
            except Exception as exc:  # a plan that vanished or was tampered with
                log.error("run %s cannot be recovered: %s", run.run_id, exc)
                self._fail_unrecoverable(run, str(exc))
                continue
            self._runs[run.run_id] = state
            self._lane(state.lane).active += 1
            if self._store.cancel_requested(run.run_id):
                self._apply_cancel(state)  # cancelled before the crash: finish the cancel
            self._recover_attempts(state, run)
            recovered.append((state, run))
        # Only then the nodes that wait to start: the attempts of every run, spawned first,
        # take their queue slots (tasks start in the order they are made) before any node
        # asks for one, so that a queue never runs more than its concurrency.
        for state, run in recovered:
            self._evaluate(state, [n.name for n in run.nodes if n.status is NodeStatus.PENDING])
            self._maybe_finish(state)
        pending = self._store.runs_with_status([RunStatus.PENDING], with_nodes=False)
        cancelled = [r.run_id for r in pending if self._store.cancel_requested(r.run_id)]
        if cancelled:
            self._store.cancel_queued(cancelled, at=now)
        skip = set(cancelled)
        pending.sort(key=lambda r: (r.created_at, r.logical_time, r.run_id))
        self._enqueue(QueuedRun(run_id=r.run_id, workflow=r.workflow,
                                plan_version=r.plan_version,
                                lane=lane_of(r.workflow, r.backfill_id))
                      for r in pending if r.run_id not in skip)

    def _recover_attempts(self, state: RunState, run: Run) -> None:
        """Adopt or close each node's attempt left RUNNING; resume the retry delays."""
        for stored in run.nodes:
            node = state.nodes[stored.name]
            if stored.status is NodeStatus.RUNNING and stored.attempts:
                last = stored.attempts[-1]
                recovered = self._launcher.recover(Path(last.log_path or "").parent, last.pid,
                                                   last.pid_start)
                if last.pid is None and recovered.pid is not None and recovered.handle is None:
                    # launched, then the crash came before its pid was stored; it has ended
                    # since, so its start time cannot be known any more
                    self._record_process(run.run_id, node.name, last.number, recovered.pid,
                                         None)
                log.info("run %s node %s attempt %d: %s", run.run_id, node.name, last.number,
                         "adopted" if recovered.handle else "never started"
                         if recovered.never_started else "lost" if recovered.lost
                         else f"finished with {recovered.exit_code}")
                node.dispatched = True
                self._spawn(self._execute(state, node, recovered))
            elif stored.status is NodeStatus.RETRYING:
                node.dispatched = True
                self._spawn(self._execute(state, node, None,
                                          retry_at=stored.next_attempt_at or self._clock.now()))

    def _fail_unrecoverable(self, run: Run, reason: str) -> None:
        """Fail a run whose plan cannot be loaded any more. Its attempts still running are
        stopped first (group SIGTERM, SIGKILL after the grace): until then its rows stay as
        they are, so a crash meanwhile does it again at the next start. Then its attempts,
        nodes and the run are closed in one commit; the nodes keep their rows (the graph)."""
        why = f"cannot recover: {reason}"
        closed: list[ClosedAttempt] = []
        alive: list[tuple[str, int, ProcessHandle]] = []
        for node in run.nodes:
            last = node.attempts[-1] if node.attempts else None
            if last is None or last.status is not AttemptStatus.RUNNING:
                continue
            found = self._launcher.recover(Path(last.log_path or "").parent, last.pid,
                                           last.pid_start)
            if found.handle is not None:
                alive.append((node.name, last.number, found.handle))
            elif found.exit_code is not None:  # it ended by itself while the daemon was down
                ended_at = None if found.ended_at is None else min(
                    max(found.ended_at, last.started_at), self._clock.now())
                closed.append(_ended(node.name, last.number, found.exit_code, None,
                                     ended_at=ended_at))
            else:
                closed.append(_ended(node.name, last.number, None, LOST if found.lost else why))
        unfinished = [n.name for n in run.nodes if not n.status.finished]
        if not alive:
            self._now_or_later(self._closer(run.run_id, unfinished, closed, why))
            return
        log.warning("run %s: stopping %d node process(es) it left running", run.run_id,
                    len(alive))
        self._spawn(self._stop_unrecoverable(run.run_id, unfinished, closed, alive, why))

    async def _stop_unrecoverable(self, run_id: str, unfinished: list[str],
                                  closed: list[ClosedAttempt],
                                  alive: list[tuple[str, int, ProcessHandle]], why: str) -> None:
        waiters = [asyncio.ensure_future(handle.wait()) for _, _, handle in alive]
        for _, _, handle in alive:
            handle.signal_group(signal.SIGTERM)
        grace: asyncio.Future[Any] = asyncio.ensure_future(
            self._clock.sleep(self._settings.kill_grace_seconds))
        ended: asyncio.Future[list[Any]] = asyncio.gather(*waiters, return_exceptions=True)
        try:
            await asyncio.wait({ended, grace}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            grace.cancel()
        for (_, _, handle), waiter in zip(alive, waiters, strict=True):
            if not waiter.done():
                handle.signal_group(signal.SIGKILL)
        for (name, number, _), code in zip(alive, await ended, strict=True):
            if isinstance(code, ProcessLostError):
                closed.append(_ended(name, number, None, str(code)))
            elif isinstance(code, BaseException):
                raise code
            else:
                closed.append(_ended(name, number, code, f"stopped: {why}"))
        await self._durably(self._closer(run_id, unfinished, closed, why))

    def _closer(self, run_id: str, unfinished: list[str], closed: list[ClosedAttempt],
                why: str) -> Callable[[], None]:
        """The write that closes a run that cannot be recovered: its rows in one commit with
        what the durable listeners write on hearing it FAILED (its outbox row, its
        backfill's end), then the other listeners told (its watchers wake)."""
        event = self._event(run_id, None, RunStatus.FAILED.value)

        def close() -> None:
            self._commit_with(lambda: self._store.fail_unrecoverable(
                run_id, unfinished, closed, reason=why, at=event.at), event)
            self._tell(self._listeners, event)
            self._signal_done(run_id)

        return close


def _ended(node: str, number: int, code: int | None, error: str | None, *,
           ended_at: datetime | None = None) -> ClosedAttempt:
    """An attempt's end as recorded for a run that cannot be recovered: its own result
    (and end, its exit file's time) when it finished by itself, else FAILED with `error`."""
    if error is None and code is not None and code != 0:
        error = f"exited with code {code}{EXIT_MEANINGS.get(code, '')}"
    status = AttemptStatus.SUCCEEDED if error is None else AttemptStatus.FAILED
    return ClosedAttempt(node=node, number=number, status=status, exit_code=code, error=error,
                         ended_at=ended_at)
