"""Backfills: one run per scheduling tick of a time range, oldest first, at most
`max_parallel_runs` at once.

A backfill row and all its runs (with their node rows) are committed in one transaction,
then handed to the engine, whose admission lane for the backfill starts the next run the
moment one ends. Progress counts each tick by the status of its latest run, so a resumed
run replaces the failed one it resumes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from flowplan.compiler.grammars import is_email_address
from flowplan.daemon import ids
from flowplan.daemon.domain import (
    Backfill,
    BackfillStatus,
    NodeRun,
    Reprocess,
    Run,
    RunStatus,
    RunTrigger,
)
from flowplan.daemon.engine.clock import Clock
from flowplan.daemon.engine.engine import Engine, RunError, StatusEvent
from flowplan.daemon.scheduler.scheduler import Catalog, data_interval, latest_plan
from flowplan.daemon.scheduler.ticks import TooManyTicks, ticks_between
from flowplan.daemon.state.store import StateStore, StateWriteError

log = logging.getLogger("flowplan.backfills")

# One request creates every run of its backfill in one commit, on the event loop: these
# bound that to a few seconds (bench/backfill.py), within a client's default 10 s deadline.
MAX_TICKS = 20_000
MAX_NODE_RUNS = 200_000  # the chosen ticks times the workflow's nodes
MAX_PARALLEL_RUNS = 1000
FINISH_RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    workflow: str
    start_time: datetime
    end_time: datetime
    max_parallel_runs: int | None = None  # None: the workflow's max_active_runs
    queue: str | None = None
    remarks: str = ""
    failure_emails: tuple[str, ...] = ()
    dry_run: bool = False
    reprocess: Reprocess = Reprocess.ALL


class AbandonedError(Exception):
    """The caller gave up (its deadline passed) before the backfill was committed: nothing
    of it was written."""


@dataclass(frozen=True, slots=True)
class BackfillAnswer:
    backfill_id: str | None  # None for a dry run
    logical_times: tuple[datetime, ...]
    run_ids: tuple[str, ...]


class Backfills:
    def __init__(self, *, engine: Engine, store: StateStore, catalog: Catalog, clock: Clock,
                 ) -> None:
        self._engine = engine
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._finished: list[Callable[[Backfill], object]] = []
        self._cancelling = False  # within cancel(): its runs' ends are its own doing
        # in the commit of each run's end: the backfill's end and its e-mail go with it
        self._unsubscribe = engine.subscribe(self._on_event, durable=True)

    def on_finished(self, callback: Callable[[Backfill], object]) -> None:
        """Call `callback` once when a backfill ends (e.g. to send its failure e-mail)."""
        self._finished.append(callback)

    def recover(self) -> None:
        """Finish backfills whose last run ended just before a crash."""
        for backfill in self._store.list_backfills(statuses=[BackfillStatus.RUNNING],
                                                   limit=1_000_000):
            self._maybe_finish(backfill.backfill_id)

    def start(self, request: BackfillRequest, *,
              abandoned: Callable[[], bool] = lambda: False) -> BackfillAnswer:
        """Create the backfill and its runs (or, for a dry run, only say which ticks).

        `abandoned()` is asked just before the commit: True (the caller's deadline passed)
        rolls everything back and raises `AbandonedError`, so that a client told its call failed
        finds no backfill it would create again by retrying."""
        plan = latest_plan(self._catalog, request.workflow)
        assert plan.content is not None and plan.version is not None
        schedule = plan.content.schedule
        if schedule is None:
            raise RunError(f"workflow '{request.workflow}' has no schedule, so it has no ticks"
                           " to backfill; start manual runs with a logical time instead",
                           field="workflow", precondition=True)
        _check(request, plan.content.queues)
        try:
            ticks = ticks_between(schedule, request.start_time, request.end_time,
                                  limit=MAX_TICKS)
        except TooManyTicks as exc:
            raise RunError(f"the range holds more than {MAX_TICKS:,} ticks of {request.workflow}"
                           "'s schedule; split it into several backfills",
                           field="end_time") from exc
        if not ticks:
            raise RunError(f"no tick of {request.workflow}'s schedule between"
                           f" {request.start_time.isoformat()} and"
                           f" {request.end_time.isoformat()}", field="start_time")
        intervals = {t: (prev, t) for prev, t in zip([data_interval(schedule, ticks[0])[0],
                                                      *ticks], ticks, strict=False)}
        chosen = self._reprocess(request, ticks)
        if len(chosen) * len(plan.content.nodes) > MAX_NODE_RUNS:
            raise RunError(f"the range's {len(chosen):,} runs of {request.workflow} would hold"
                           f" {len(chosen) * len(plan.content.nodes):,} node runs, more than"
                           f" the {MAX_NODE_RUNS:,} one backfill may create; split it into"
                           " several backfills", field="end_time")
        if request.dry_run or not chosen:  # nothing selected: nothing to create
            return BackfillAnswer(None, tuple(chosen), ())
        now = self._clock.now()
        backfill = Backfill(
            backfill_id=ids.backfill_id(now), workflow=request.workflow,
            start_time=request.start_time, end_time=request.end_time,
            status=BackfillStatus.RUNNING,
            max_parallel_runs=request.max_parallel_runs or plan.content.max_active_runs,
            reprocess=request.reprocess, created_at=now, queue_override=request.queue or None,
            remarks=request.remarks, failure_emails=request.failure_emails,
            finished_at=None)
        template = self._engine.build_run(plan, trigger=RunTrigger.BACKFILL,
                                          logical_time=ticks[0], queue=backfill.queue_override,
                                          remarks=request.remarks, now=now,
                                          backfill_id=backfill.backfill_id)
        # keyword copies, not dataclasses.replace: a third of the time of 100,000 runs
        run_fields = {f.name: getattr(template, f.name) for f in fields(Run)}
        node_fields = [{f.name: getattr(n, f.name) for f in fields(NodeRun)}
                       for n in template.nodes]
        runs = []
        for tick in chosen:
            run_id = ids.run_id(now)
            runs.append(Run(**{
                **run_fields, "run_id": run_id, "logical_time": tick,
                "data_interval_start": intervals[tick][0], "data_interval_end": tick,
                "nodes": tuple(NodeRun(**{**n, "run_id": run_id}) for n in node_fields)}))
        with self._store.transaction():
            self._store.insert_backfill(backfill)
            self._store.insert_runs(runs)
            if abandoned():
                raise AbandonedError(f"backfill of {request.workflow}: the caller gave up before"
                                f" its {len(runs):,} runs were committed; none was created")
        self._engine.submit(runs)
        log.info("backfill %s of %s: %d run(s), %d at once", backfill.backfill_id,
                 request.workflow, len(runs), backfill.max_parallel_runs)
        return BackfillAnswer(backfill.backfill_id, tuple(chosen),
                              tuple(r.run_id for r in runs))

    def _reprocess(self, request: BackfillRequest, ticks: Sequence[datetime]
                   ) -> list[datetime]:
        if request.reprocess is Reprocess.ALL:
            return list(ticks)
        latest = self._store.latest_statuses(request.workflow, ticks[0], ticks[-1])
        if request.reprocess is Reprocess.MISSING:
            return [t for t in ticks if not (t in latest and latest[t][1])]
        return [t for t in ticks if t in latest
                and latest[t][0] in (RunStatus.FAILED, RunStatus.CANCELLED)]

    def get(self, backfill_id: str) -> Backfill:
        backfill = self._store.get_backfill(backfill_id)
        if backfill is None:
            raise RunError(f"backfill {backfill_id} does not exist", field="backfill_id",
                           not_found=True)
        return backfill

    def cancel(self, backfill_id: str) -> Backfill:
        """Cancel a backfill: its pending runs CANCELLED, its running runs cancelled."""
        backfill = self.get(backfill_id)
        if backfill.status.finished:
            raise RunError(f"backfill {backfill_id} already finished ({backfill.status.value})",
                           field="backfill_id", precondition=True)
        pending, running = self._store.cancel_backfill(backfill_id, at=self._clock.now())
        # its runs' ends cannot change a CANCELLED backfill: not asked about 100,000 times
        self._cancelling = True
        try:
            self._engine.cancel_runs([*pending, *running])
        finally:
            self._cancelling = False
        cancelled = self.get(backfill_id)
        self._notify(cancelled)
        return cancelled

    def _on_event(self, event: StatusEvent) -> None:
        if (event.node is not None or event.status not in _FINAL_RUN_STATUSES
                or self._cancelling):
            return
        backfill_id = self._store.run_backfill_id(event.run_id)
        if backfill_id is not None:
            self._finish_soon(backfill_id)

    def _finish_soon(self, backfill_id: str) -> None:
        """`_maybe_finish`, tried again every second while the state database cannot be
        written (a full disk): its last run's end must still end the backfill."""
        try:
            self._maybe_finish(backfill_id)
        except StateWriteError:
            asyncio.get_running_loop().call_later(FINISH_RETRY_SECONDS, self._finish_soon,
                                                  backfill_id)

    def _maybe_finish(self, backfill_id: str) -> None:
        """End the backfill once its last run has ended; a backfill that ended already is
        judged again when a resumed run of it ends (a CANCELLED one stays so)."""
        if self._store.backfill_unfinished(backfill_id):
            return
        backfill = self._store.get_backfill(backfill_id)
        if backfill is None or backfill.status is BackfillStatus.CANCELLED or (
                backfill.progress.unfinished):
            return
        progress = backfill.progress
        status = (BackfillStatus.FAILED if progress.failed else BackfillStatus.CANCELLED
                  if progress.cancelled else BackfillStatus.SUCCEEDED)
        if status is backfill.status:
            return
        self._store.finish_backfill(backfill_id, status, at=self._clock.now())
        self._notify(self.get(backfill_id))

    def _notify(self, backfill: Backfill) -> None:
        for callback in self._finished:
            try:
                callback(backfill)
            except Exception:  # a notification problem must never stop a backfill
                log.exception("backfill %s: a finish callback failed", backfill.backfill_id)


_FINAL_RUN_STATUSES = frozenset(s.value for s in RunStatus if s.finished)


def _check(request: BackfillRequest, queues: Collection[str]) -> None:
    for name, value in (("start_time", request.start_time), ("end_time", request.end_time)):
        if value.tzinfo is None:
            raise RunError(f"{name} needs a time zone (e.g. 2026-01-31T00:00:00Z)", field=name)
    if request.start_time > request.end_time:
        raise RunError(f"end_time {request.end_time.isoformat()} is before start_time"
                       f" {request.start_time.isoformat()}", field="end_time")
    if request.max_parallel_runs is not None and not (
            1 <= request.max_parallel_runs <= MAX_PARALLEL_RUNS):
        raise RunError(f"max_parallel_runs must be between 1 and {MAX_PARALLEL_RUNS}"
                       " (0 or unset: the workflow's max_active_runs)",
                       field="max_parallel_runs")
    if request.queue and request.queue not in queues:
        raise RunError(f"queue '{request.queue}' is not defined; defined:"
                       f" {', '.join(sorted(queues))}", field="queue")
    for index, address in enumerate(request.failure_emails):
        if not is_email_address(address):
            raise RunError(f"'{address}' is not an e-mail address",
                           field=f"failure_emails[{index}]")
