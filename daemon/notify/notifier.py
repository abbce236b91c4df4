"""From engine events to outbox rows: the listener the daemon subscribes to the engine
(`on_event`), and `backfill_finished` for the backfill runner.

The listener is a durable one (`engine.subscribe(notifier.on_event, durable=True)`): it runs
inside the engine's commit of a run's end, a node's end or retry and an attempt's start, so
that the outbox row and the change it tells of are committed together. It reads state
through the store's public methods, builds the message (`messages`) and records it
(`OutboxSender.record`); it raises into the engine only StateWriteError (the commit is then
tried again whole): any other problem is logged, and the run goes on.
"""

from __future__ import annotations

import collections
import logging
from datetime import datetime
from pathlib import Path
from typing import Protocol

from flowplan.compiler.plan import NodePlan, Plan, PlanError, WorkflowPlan
from flowplan.daemon.domain import Attempt, NodeStatus, Run, RunStatus, RunTrigger
from flowplan.daemon.engine.commands import secret_values
from flowplan.daemon.engine.engine import StatusEvent
from flowplan.daemon.notify.messages import (
    MAX_LISTED_RUNS,
    BackfillInfo,
    backfill_message,
    listed_failures,
    merge_recipients,
    node_status_message,
    on_failure_message,
    tail_read_size,
    tail_text,
)
from flowplan.daemon.notify.sender import OutboxSender
from flowplan.daemon.state.store import StateStore, StateWriteError

log = logging.getLogger("flowplan.notify")

_NOTIFY_STATUSES = frozenset({NodeStatus.RUNNING.value, NodeStatus.RETRYING.value,
                              NodeStatus.SUCCEEDED.value, NodeStatus.FAILED.value})
_ALL_RUNS = 1_000_000
_CACHED = 1024  # run headers and plan node indexes kept


class Plans(Protocol):
    """The part of the engine's `PlanProvider` the notifier uses."""

    def get(self, workflow: str, version: int) -> Plan: ...


class Notifier:
    def __init__(self, *, store: StateStore, plans: Plans, sender: OutboxSender) -> None:
        self._store = store
        self._plans = plans
        self._sender = sender
        # a run's workflow and version never change: one lookup per run, not one per event
        self._headers: collections.OrderedDict[str, tuple[str, int]] = \
            collections.OrderedDict()
        self._indexes: collections.OrderedDict[tuple[str, int], dict[str, NodePlan]] = \
            collections.OrderedDict()

    # ---- the engine listener ------------------------------------------------------------

    def on_event(self, event: StatusEvent) -> None:
        """Subscribe this to the engine before `engine.start()` (recovery emits events)."""
        try:
            if event.node is None:
                if event.status == RunStatus.FAILED.value:
                    self._run_failed(event.run_id)
            elif event.status in _NOTIFY_STATUSES:
                self._node_status(event.run_id, event.node, NodeStatus(event.status),
                                  event.attempt)
        except StateWriteError:
            raise  # inside the engine's commit: the change and its message are tried again
        except Exception:
            log.exception("run %s: the notification for %s %s could not be recorded",
                          event.run_id, event.node or "the run", event.status)

    def _run_failed(self, run_id: str) -> None:
        header = self._store.get_run(run_id, with_nodes=False)
        if header is None:
            return
        if header.trigger is RunTrigger.BACKFILL:
            return  # one message for the whole backfill: `backfill_finished`
        try:
            plan = self._workflow_plan(header.workflow, header.plan_version)
            if plan is None or not plan.on_failure_email:
                return
            run = self._store.get_run(run_id)
            assert run is not None
            secrets = self._secrets(run)  # each node's own version: a resumed run's too
        except PlanError as exc:  # the reason it failed: the plan holds the recipients
            log.warning("run %s failed, and no failure e-mail was recorded: its plan cannot"
                        " be loaded (%s)", run_id, exc)
            return
        tails = {n.name: self._tail(n.attempts[-1] if n.attempts else None, secrets)
                 for n in listed_failures(run)}
        draft = on_failure_message(run, plan, tails, secrets)
        if draft is not None:
            self._sender.record(draft)

    def _node_status(self, run_id: str, name: str, status: NodeStatus, attempt: int | None
                     ) -> None:
        # a cheap look first: most nodes subscribe nobody, and a run has many events
        header = self._header(run_id)
        if header is None:
            return
        nodes = self._node_index(*header)
        if nodes is None or not _subscribed(nodes.get(name), status):
            return
        run = self._store.get_run(run_id)
        assert run is not None
        node = run.node(name)
        plan = self._workflow_plan(run.workflow, node.plan_version)
        node_plan = (self._node_index(run.workflow, node.plan_version) or {}).get(name)
        if plan is None or node_plan is None or node_plan.notify is None or not _subscribed(
                node_plan, status):
            return
        secrets = self._secrets(run)
        tail = None
        if status in (NodeStatus.FAILED, NodeStatus.RETRYING):
            tail = self._tail(next((a for a in node.attempts if a.number == attempt), None),
                              secrets)
        self._sender.record(node_status_message(
            run, plan, node, notify=node_plan.notify, status=status, attempt=attempt,
            tail=tail, secrets=secrets))

    # ---- backfills ----------------------------------------------------------------------

    def backfill_finished(self, backfill_id: str) -> bool:
        """For the backfill runner, when a backfill ends: one message summarising its failed
        runs (by each tick's latest run), to the backfill's `failure_emails` and the
        workflow's `on_failure.email`. True when a message was recorded. Never raises."""
        try:
            return self._backfill_finished(backfill_id)
        except Exception:
            log.exception("backfill %s: the failure notification could not be recorded",
                          backfill_id)
            return False

    def _backfill_finished(self, backfill_id: str) -> bool:
        backfill = self._store.get_backfill(backfill_id)
        if backfill is None:
            log.warning("backfill %s does not exist: no notification", backfill_id)
            return False
        info = BackfillInfo(
            backfill_id=backfill.backfill_id, workflow=backfill.workflow,
            start_time=backfill.start_time, end_time=backfill.end_time,
            status=backfill.status.value, remarks=backfill.remarks,
            failure_emails=backfill.failure_emails)
        latest: dict[datetime, Run] = {}
        for run in self._store.list_runs(backfill_id=backfill_id, limit=_ALL_RUNS):
            latest.setdefault(run.logical_time, run)  # newest first: the first is the latest
        failed = sorted((r for r in latest.values() if r.status is RunStatus.FAILED),
                        key=lambda r: r.logical_time)
        if not failed:
            return False
        try:
            plan = self._workflow_plan(info.workflow, failed[-1].plan_version)
        except PlanError:  # a run failed as it could not be loaded: the backfill's own go on
            plan = None
        recipients = merge_recipients(info.failure_emails,
                                      plan.on_failure_email if plan is not None else ())
        if not recipients:
            return False
        detailed: dict[str, Run] = {}
        secrets: dict[str, list[str]] = {}
        for header in failed[:MAX_LISTED_RUNS]:
            full = self._store.get_run(header.run_id)
            if full is None:
                continue
            try:
                secrets[full.run_id] = self._secrets(full)
            except PlanError:  # its secrets unknown: listed without its nodes' errors
                continue
            detailed[full.run_id] = full
        runs = [detailed.get(r.run_id, r) for r in latest.values()]
        draft = backfill_message(info, runs, recipients, secrets)
        return draft is not None and self._sender.record(draft) is not None

    # ---- helpers ------------------------------------------------------------------------

    def _workflow_plan(self, workflow: str, version: int) -> WorkflowPlan | None:
        return self._plans.get(workflow, version).content

    def _header(self, run_id: str) -> tuple[str, int] | None:
        """The run's workflow and plan version."""
        header = self._headers.get(run_id)
        if header is None:
            run = self._store.get_run(run_id, with_nodes=False)
            if run is None:
                return None
            header = self._headers[run_id] = (run.workflow, run.plan_version)
            if len(self._headers) > _CACHED:
                self._headers.popitem(last=False)
        return header

    def _node_index(self, workflow: str, version: int) -> dict[str, NodePlan] | None:
        """The nodes of a plan version by name (a 1,000-node run has 3,000 events)."""
        key = (workflow, version)
        nodes = self._indexes.get(key)
        if nodes is None:
            plan = self._workflow_plan(workflow, version)
            if plan is None:
                return None
            nodes = self._indexes[key] = {n.name: n for n in plan.nodes}
            if len(self._indexes) > _CACHED:
                self._indexes.popitem(last=False)
        return nodes

    def _secrets(self, run: Run) -> list[str]:
        """The values to mask, as the engine computes them: each node's env in the plan
        version it ran, and the run's params."""
        nodes: list[NodePlan] = []
        for node in run.nodes:
            node_plan = (self._node_index(run.workflow, node.plan_version) or {}).get(node.name)
            if node_plan is not None:
                nodes.append(node_plan)
        plan = self._workflow_plan(run.workflow, run.plan_version)
        return secret_values(nodes, run, plan.timezone if plan is not None else "UTC")

    def _tail(self, attempt: Attempt | None, secrets: list[str]) -> str | None:
        """The masked tail of an attempt's log; None when there is no log to read."""
        if attempt is None or not attempt.log_path:
            return None
        want = tail_read_size(secrets)
        try:
            with Path(attempt.log_path).open("rb") as handle:
                size = handle.seek(0, 2)
                start = max(0, size - want)
                handle.seek(start)
                data = handle.read(want)
        except OSError:
            return None
        return tail_text(data, cut=start > 0, secrets=secrets)


def _subscribed(node: NodePlan | None, status: NodeStatus) -> bool:
    return node is not None and node.notify is not None and status.value.lower() in node.notify.on

