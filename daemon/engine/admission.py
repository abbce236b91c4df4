"""Admission lanes: a workflow's scheduled, manual and resumed runs are bounded by its
`max_active_runs`, a backfill's runs by its parallelism; pending runs start oldest first as
their lane allows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from functools import partial

from flowplan.compiler.plan import Plan
from flowplan.daemon.domain import NodeStatus, Run, RunStatus
from flowplan.daemon.engine.attempts import Attempts
from flowplan.daemon.engine.core import LaneKey, QueuedRun, RunState, lane_of

log = logging.getLogger("flowplan.engine")


class Admission(Attempts):
    """Pending runs queued in their lanes and started as the lanes allow."""

    def submit(self, runs: Sequence[Run], *, plan: Plan | None = None) -> None:
        """Queue stored PENDING runs in their lanes and start what the lanes allow. With
        `plan` (the runs' plan) their state is built now; without, when each is admitted."""
        content = self._content(plan) if plan is not None else None
        every: dict[str, Plan] = ({n.name: plan for n in content.nodes}
                                  if content is not None and plan is not None else {})
        self._enqueue(
            QueuedRun(run_id=r.run_id, workflow=r.workflow, plan_version=r.plan_version,
                      lane=lane_of(r.workflow, r.backfill_id),
                      state=self._state(r, content, every) if content is not None else None)
            for r in runs)

    def _enqueue(self, queued: Iterable[QueuedRun]) -> None:
        lanes: dict[LaneKey, None] = {}
        for item in queued:
            self._lane(item.lane).pending.append(item)
            self._queued[item.run_id] = item
            lanes[item.lane] = None
            self._emit(item.run_id, None, RunStatus.PENDING.value)
        for key in lanes:
            self._admit(key)

    def _admit(self, key: LaneKey) -> None:
        """Start pending runs of lane `key`, oldest first, up to the lane's limit."""
        if key in self._admitting:
            return  # a run that ended during admission: the loop below goes on
        lane = self._lanes.get(key)
        if lane is None:
            return
        self._admitting.add(key)
        try:
            while lane.pending and lane.active < self._lane_limit(key, lane.pending[0]):
                head = lane.pending.popleft()
                del self._queued[head.run_id]
                try:
                    state = head.state or self._load_queued(head)
                except Exception as exc:
                    log.error("run %s cannot start: %s", head.run_id, exc)
                    self._fail_queued(head, str(exc))
                    continue
                lane.active += 1
                self._runs[head.run_id] = state
                self._now_or_later(partial(self._begin, state))
        finally:
            self._admitting.discard(key)
            if not lane.pending and not lane.active:
                self._lanes.pop(key, None)

    def _begin(self, state: RunState) -> None:
        """An admitted run: RUNNING, and its first nodes started."""
        if state.status is RunStatus.PENDING:
            self._set_run_status(state, RunStatus.RUNNING)
        self._evaluate(state, [n for n, s in state.nodes.items()
                               if s.status is NodeStatus.PENDING])
        self._maybe_finish(state)

    def _lane_limit(self, key: LaneKey, head: QueuedRun) -> int:
        if key[0] == "backfill":
            return self._store.backfill_parallelism(key[1]) or 1
        if head.state is not None:
            return head.state.graph.max_active_runs
        try:
            content = self._plans.get(head.workflow, head.plan_version).content
        except Exception:
            return 1  # admission fails the run with the reason
        return content.max_active_runs if content is not None else 1

    def _load_queued(self, head: QueuedRun) -> RunState:
        run = self._store.get_run(head.run_id)
        if run is None:
            raise KeyError(f"run {head.run_id} is missing from the state store")
        return self._load_run(run)

    def _fail_queued(self, head: QueuedRun, reason: str) -> None:
        run = self._store.get_run(head.run_id)
        if run is not None:
            self._fail_unrecoverable(run, reason)  # its FAILED committed and told
            return
        self._emit(head.run_id, None, RunStatus.FAILED.value)
        self._signal_done(head.run_id)

    def _load_run(self, run: Run) -> RunState:
        graph_version = self._store.graph_version(run.run_id)
        graph = self._content(self._plans.get(run.workflow, graph_version))
        versions = {v: self._plans.get(run.workflow, v) for v in {n.plan_version
                                                                  for n in run.nodes}}
        return self._state(run, graph, {n.name: versions[n.plan_version] for n in run.nodes})
