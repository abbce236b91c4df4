"""The engine: creates runs, starts each node when its trigger holds, runs attempts with
retries, timeouts and resource queues, cancels, resumes, and recovers after a crash.

`Engine` is the public face; its parts live in modules named for what they do: core.py (the
shared state, errors and events), attempts.py (the node state machine and its attempts),
admission.py (lanes), recovery.py (a restart). Creating, cancelling, resuming and reading
runs are here.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any

from flowplan.compiler.plan import NodePlan, Plan, PlanError
from flowplan.daemon import ids
from flowplan.daemon.domain import NodeRun, NodeStatus, Run, RunStatus, RunTrigger
from flowplan.daemon.engine.commands import mask, secret_values
from flowplan.daemon.engine.core import (
    LOST,
    EngineSettings,
    PlanProvider,
    QueuedRun,
    RunError,
    RunState,
    StatusEvent,
    lane_of,
    log,
)
from flowplan.daemon.engine.recovery import Recovery
from flowplan.daemon.engine.resume import ResumeError, ResumePlan, plan_resume


@dataclass(frozen=True, slots=True)
class RunLabels:
    """What metrics label a run's events with: bounded names, never the run id."""

    workflow: str
    trigger: str
    queue: str | None = None  # the node's queue, for a node's event


@dataclass(frozen=True, slots=True)
class QueueUsage:
    name: str
    capacity: int
    running: int  # slots in use
    waiting: int  # attempts waiting for a slot


@dataclass(frozen=True, slots=True)
class ResumeAnswer:
    run_id: str | None  # None for a dry run
    node_names: tuple[str, ...]
    plan_version: int = 0  # the version the re-run nodes use


class Engine(Recovery):
    """Everything that happens to a run after it is created."""

    async def stop(self) -> None:
        """Stop driving runs. Node processes keep running; the next start adopts them."""
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- creating runs ------------------------------------------------------------------

    def create_run(self, plan: Plan, *, trigger: RunTrigger, logical_time: datetime,
                   params: Mapping[str, Any] | None = None, queue: str | None = None,
                   remarks: str = "", backfill_id: str | None = None,
                   data_interval: tuple[datetime, datetime] | None = None,
                   run_id: str | None = None) -> Run:
        """Create a run of `plan` (durably) and start it when its lane allows."""
        run = self.build_run(plan, trigger=trigger, logical_time=logical_time, params=params,
                             queue=queue, remarks=remarks, backfill_id=backfill_id,
                             data_interval=data_interval, run_id=run_id)
        self._store.insert_run(run, graph_version=run.plan_version)
        self.submit([run], plan=plan)
        return run

    def build_run(self, plan: Plan, *, trigger: RunTrigger, logical_time: datetime,
                  params: Mapping[str, Any] | None = None, queue: str | None = None,
                  remarks: str = "", backfill_id: str | None = None,
                  data_interval: tuple[datetime, datetime] | None = None,
                  run_id: str | None = None, now: datetime | None = None) -> Run:
        """A PENDING run of `plan` with its nodes, checked but not stored: the caller stores
        it (`StateStore.insert_runs`, maybe with rows of its own) and then calls `submit`."""
        content = self._content(plan)
        if queue is not None and queue not in content.queues:
            raise RunError(f"queue '{queue}' is not defined; defined: "
                           f"{', '.join(sorted(content.queues))}", field="queue")
        now = now or self._clock.now()
        assert plan.version is not None
        run_id = run_id or ids.run_id(now)
        version = plan.version
        return Run(run_id=run_id, workflow=plan.workflow,
                   plan_version=version, plan_digest=plan.digest, trigger=trigger,
                   logical_time=logical_time, status=RunStatus.PENDING, created_at=now,
                   params={**content.params, **(params or {})}, remarks=remarks,
                   queue_override=queue, backfill_id=backfill_id,
                   data_interval_start=data_interval[0] if data_interval else None,
                   data_interval_end=data_interval[1] if data_interval else None,
                   nodes=tuple(NodeRun(run_id=run_id, name=n.name, status=NodeStatus.PENDING,
                                       queue=_queue_for(n, queue), plan_version=version)
                               for n in content.nodes))

    # ---- cancel -------------------------------------------------------------------------

    def cancel_run(self, run_id: str) -> None:
        """Cancel a run: pending nodes CANCELLED, running ones killed (group TERM, then KILL)."""
        if run_id not in self._runs and run_id not in self._queued:
            stored = self._store.get_run(run_id, with_nodes=False)
            if stored is None:
                raise RunError(f"run {run_id} does not exist", field="run_id", not_found=True)
            raise RunError(f"run {run_id} already finished ({stored.status.value})",
                           field="run_id", precondition=True)
        self.cancel_runs([run_id])

    def cancel_runs(self, run_ids: Sequence[str]) -> None:
        """Cancel many runs; ids of runs that already finished are ignored."""
        now = self._clock.now()
        queued = [self._queued[r] for r in run_ids if r in self._queued]
        if queued:
            self._store.cancel_queued([q.run_id for q in queued], at=now)
            gone = {q.run_id for q in queued}
            for name in {q.lane for q in queued}:  # once a lane: a backfill may queue 100,000
                lane = self._lanes[name]
                lane.pending = deque(p for p in lane.pending if p.run_id not in gone)
            for q in queued:
                del self._queued[q.run_id]
                if q.state is not None:
                    for node in q.state.nodes.values():
                        self._emit(q.run_id, node.name, NodeStatus.CANCELLED.value)
                self._emit(q.run_id, None, RunStatus.CANCELLED.value)
                self._signal_done(q.run_id)
        for run_id in run_ids:
            run = self._runs.get(run_id)
            if run is None or run.status.finished:
                continue
            self._store.request_cancel(run_id, at=now)  # intent first
            self._now_or_later(partial(self._cancel_now, run))

    def _cancel_now(self, run: RunState) -> None:
        self._apply_cancel(run)
        self._maybe_finish(run)

    # ---- reads --------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        run = self._store.get_run(run_id)
        if run is None:
            raise RunError(f"run {run_id} does not exist", field="run_id", not_found=True)
        return run

    def masked(self, run_id: str, text: str) -> str:
        return mask(text, self.secrets(run_id))

    def secrets(self, run_id: str) -> list[str]:
        """The values to mask wherever the run's text is shown."""
        run = self._runs.get(run_id)
        if run is not None:
            return run.secrets
        stored = self.get_run(run_id)
        plan = self._stored_plan(stored, stored.plan_version).content
        if plan is None:
            return secret_values((), stored, "UTC")
        return secret_values(plan.nodes, stored, plan.timezone)

    def _stored_plan(self, run: Run, version: int) -> Plan:
        """Version `version` of `run`'s workflow, which the run used; one that no longer
        loads (its file edited or removed since) refuses the request about the run, naming
        no path of the daemon's (the log has the reason)."""
        try:
            return self._plans.get(run.workflow, version)
        except (PlanError, OSError, ValueError) as exc:
            log.error("plan %s version %d cannot be read: %s", run.workflow, version, exc)
            raise RunError(f"run {run.run_id} used version {version} of {run.workflow}, which"
                           " can no longer be read (the daemon's log says why); restore that"
                           " plan file, or start a new run", field="run_id",
                           precondition=True) from exc

    async def wait_run(self, run_id: str) -> Run:
        """The run once it has finished."""
        if self.is_active(run_id):
            event = self._done.get(run_id) or self._done.setdefault(run_id, asyncio.Event())
            await event.wait()
        return self.get_run(run_id)

    def is_active(self, run_id: str) -> bool:
        """True while the run is pending or running in this engine."""
        return run_id in self._runs or run_id in self._queued

    # ---- for metrics: memory only, no I/O -----------------------------------------------

    def labels(self, run_id: str, node: str | None = None) -> RunLabels | None:
        """The workflow, trigger and (with `node`) queue of a run this engine holds; None
        for a run it does not hold. The trigger of a pending run found at start is
        "unknown" until it is admitted."""
        state = self._runs.get(run_id)
        if state is None:
            queued = self._queued.get(run_id)
            if queued is None:
                return None
            if queued.state is None:  # loaded when admitted: a backfill's, or found at start
                return RunLabels(queued.workflow,
                                 "backfill" if queued.lane[0] == "backfill" else "unknown")
            state = queued.state
        node_state = state.nodes.get(node) if node is not None else None
        return RunLabels(state.header.workflow, state.header.trigger.value,
                         node_state.queue if node_state is not None else None)

    def queue_usage(self) -> list[QueueUsage]:
        """Each resource queue's slots in use and attempts waiting for one."""
        return [QueueUsage(q.name, q.capacity, q.running, q.waiting)
                for q in self._queues.values()]

    def pending_runs(self) -> dict[tuple[str, str], int]:
        """Runs waiting for admission by (lane kind, workflow): "workflow" lanes (a
        workflow's own runs) and "backfill" lanes (counted under the backfill's workflow)."""
        counts: dict[tuple[str, str], int] = {}
        for queued in self._queued.values():
            key = (queued.lane[0], queued.workflow)
            counts[key] = counts.get(key, 0) + 1
        return counts

    # ---- resume -------------------------------------------------------------------------

    def resume_run(self, run_id: str, node_names: Sequence[str], *,
                   plan_version: int | None = None, dry_run: bool = False,
                   remarks: str | None = None) -> ResumeAnswer:
        """A new run re-running `node_names` and everything downstream; the rest copied."""
        original = self.get_run(run_id)
        graph_version = self._store.graph_version(run_id)
        graph = self._content(self._stored_plan(original, graph_version))
        latest = self._plans.latest(original.workflow)
        if latest is None or latest.version is None:
            raise RunError(f"workflow '{original.workflow}' has no published version",
                           field="plan_version", precondition=True)
        if latest.content is None:  # whichever version is asked for
            raise RunError(f"workflow '{original.workflow}' was removed (version"
                           f" {latest.version} is a tombstone): its runs cannot be resumed"
                           " until it is published again", field="run_id", precondition=True)
        chosen = latest
        if plan_version is not None:
            try:
                chosen = self._plans.get(original.workflow, plan_version)
            except Exception as exc:
                raise RunError(f"plan version {plan_version} of {original.workflow} cannot be"
                               f" used: {exc}", field="plan_version", not_found=True) from exc
            if chosen.content is None:
                raise RunError(f"plan version {plan_version} of {original.workflow} is a"
                               " tombstone (the workflow removed), not a version to run",
                               field="plan_version", precondition=True)
        rerun_content = self._content(chosen)
        assert chosen.version is not None
        try:
            shape: ResumePlan = plan_resume(original, graph, list(node_names),
                                            rerun_content, chosen.version)
        except ResumeError as exc:
            raise RunError(str(exc), field=exc.field, precondition=exc.precondition) from exc
        if dry_run:
            return ResumeAnswer(run_id=None, node_names=shape.starting,
                                plan_version=chosen.version)
        now = self._clock.now()
        new_id = ids.run_id(now)
        rerun = set(shape.rerun)
        nodes = []
        node_plans: dict[str, Plan] = {}
        for old in original.nodes:
            if old.name in rerun:
                queue = _queue_for(rerun_content.node(old.name), original.queue_override)
                nodes.append(NodeRun(run_id=new_id, name=old.name, status=NodeStatus.PENDING,
                                     queue=queue, plan_version=chosen.version))
                node_plans[old.name] = chosen
            else:
                node_plans[old.name] = self._stored_plan(original, old.plan_version)
                source = old.copied_from_run_id or original.run_id
                nodes.append(replace(
                    old, run_id=new_id, copied_from_run_id=source,
                    attempts=tuple(replace(a, run_id=new_id,
                                           copied_from_run_id=a.copied_from_run_id or source)
                                   for a in old.attempts)))
        run = Run(run_id=new_id, workflow=original.workflow, plan_version=chosen.version,
                  plan_digest=chosen.digest, trigger=RunTrigger.RESUME,
                  logical_time=original.logical_time, status=RunStatus.PENDING, created_at=now,
                  # the run's params, and the defaults of params the fix added
                  params={**rerun_content.params, **original.params},
                  remarks=original.remarks if remarks is None else remarks,
                  queue_override=original.queue_override, backfill_id=original.backfill_id,
                  previous_run_id=original.run_id,
                  data_interval_start=original.data_interval_start,
                  data_interval_end=original.data_interval_end, nodes=tuple(nodes))
        self._store.insert_run(run, graph_version=graph_version)
        self._enqueue([QueuedRun(run_id=new_id, workflow=run.workflow,
                                 plan_version=run.plan_version,
                                 lane=lane_of(run.workflow, run.backfill_id),
                                 state=self._state(run, graph, node_plans))])
        return ResumeAnswer(run_id=new_id, node_names=shape.starting,
                            plan_version=chosen.version)


def _queue_for(node: NodePlan, override: str | None) -> str:
    """The queue precedence (docs/plans.md): node's own > run override > workflow > default."""
    if node.queue_pinned or override is None:
        return node.queue
    return override


__all__ = ["LOST", "Engine", "EngineSettings", "PlanProvider", "ResumeAnswer", "RunError",
           "StatusEvent"]
