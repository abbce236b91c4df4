"""`flowplan.v1.WorkflowService`: each RPC checks its request, calls the engine, scheduler or
backfills, and converts the answer (daemon/server/convert.py). No state of its own beyond a
cache of serialized GetRun answers."""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import dataclasses
import difflib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message

from flowplan.compiler.plan import Plan, PlanError, WorkflowPlan
from flowplan.daemon.domain import (
    Attempt,
    AttemptStatus,
    Backfill,
    BackfillStatus,
    NodeRun,
    NodeStatus,
    Run,
    RunEvent,
    RunStatus,
    RunTrigger,
)
from flowplan.daemon.engine.clock import Clock
from flowplan.daemon.engine.engine import Engine, StatusEvent
from flowplan.daemon.notify.outbox import Outbox, OutboxRow, OutboxStatus
from flowplan.daemon.scheduler.backfills import AbandonedError, BackfillRequest, Backfills
from flowplan.daemon.scheduler.manual import start_run
from flowplan.daemon.scheduler.scheduler import Scheduler, latest_plan
from flowplan.daemon.server import convert
from flowplan.daemon.server.errors import (
    RequestError,
    handlers_of,
    opened,
    serve_tolerant,
    shown,
    shutting_down,
    stream,
    unary,
)
from flowplan.daemon.server.logs import stream_log
from flowplan.daemon.state.store import StateStore
from flowplan.daemon.watcher import PlanCatalog
from flowplan.v1 import workflow_service_pb2 as pb
from flowplan.v1 import workflow_service_pb2_grpc as pb_grpc

log = logging.getLogger("flowplan.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["WorkflowService"].full_name
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_PARAMS_BYTES = 64 * 1024  # of a request's params as compact UTF-8 JSON
PAGE_BYTES = 1024 * 1024  # a list answer stops before this, well under clients' 4 MB default
MAX_NAME_CHARS = 128  # no workflow or node name (100) or id is longer
MAX_REMARKS_CHARS = 4096
MAX_FAILURE_EMAILS = 100
_ANSWER_CACHE_SIZE = 256
_FINAL = -1  # in place of the history's length in the answer cache: a finished run's answer
_FINISHED = frozenset((pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_CANCELLED))
_READ_BATCH = 100  # runs or outbox rows read from the store at a time for a list answer

_Source = TypeVar("_Source")
_Position = TypeVar("_Position")
_Item = TypeVar("_Item", bound=Message)


@dataclass(frozen=True, slots=True)
class Parts:
    """What the service talks to; the daemon builds them (daemon/server/app.py)."""

    engine: Engine
    store: StateStore
    catalog: PlanCatalog
    scheduler: Scheduler
    backfills: Backfills
    clock: Clock
    closing: asyncio.Event  # set on shutdown: streams end cleanly


class WorkflowService(pb_grpc.WorkflowServiceServicer):
    def __init__(self, parts: Parts) -> None:
        self._p = parts
        self._answers: collections.OrderedDict[tuple[str, bool, int, bool], bytes] = \
            collections.OrderedDict()

    def subscribe(self, listener: Callable[[StatusEvent], None]) -> Callable[[], None]:
        """Call `listener` (in the event loop, without I/O) on each status change of a run or
        node, as WatchRun hears them; returns the unsubscribe. The console's backfill pages
        use it to know when to read again."""
        return self._p.engine.subscribe(listener)

    @property
    def closing(self) -> asyncio.Event:
        """Set when the daemon shuts down: a stream ends then."""
        return self._p.closing

    # ---- workflows ----------------------------------------------------------------------

    @unary
    async def ListWorkflows(self, request: pb.ListWorkflowsRequest, context: Any
                            ) -> pb.ListWorkflowsResponse:
        size = _page_size(request.page_size)
        after = _decode_token(request.page_token, scope=f"workflows:{request.include_tombstones}")
        names = [n for n in self._p.catalog.workflows() if after is None or n > after]

        def build(name: str) -> pb.Workflow | None:
            plan = self._p.catalog.latest(name)
            if plan is None or (plan.tombstone and not request.include_tombstones):
                return None
            return self._workflow(plan)

        items, more = _page(names, size, build)
        token = (_encode_token(items[-1].name, scope=f"workflows:{request.include_tombstones}")
                 if more else "")
        return pb.ListWorkflowsResponse(workflows=items, next_page_token=token)

    @unary
    async def GetWorkflow(self, request: pb.GetWorkflowRequest, context: Any
                          ) -> pb.GetWorkflowResponse:
        latest = self._latest_any(request.workflow)
        _version_number(request.plan_version)
        plan = latest
        if request.plan_version:
            plan = self._version(request.workflow, request.plan_version)
        return pb.GetWorkflowResponse(workflow=self._workflow(plan, latest=latest))

    @unary
    async def ListPlanVersions(self, request: pb.ListPlanVersionsRequest, context: Any
                               ) -> pb.ListPlanVersionsResponse:
        self._latest_any(request.workflow)
        size = _page_size(request.page_size)
        before = _decode_number(request.page_token, scope=f"versions:{request.workflow}")
        versions = [v for v in reversed(self._p.catalog.versions(request.workflow))
                    if before is None or v < before]

        def build(version: int) -> pb.PlanVersion | None:
            try:
                return convert.plan_version(self._p.catalog.header(request.workflow, version))
            except (PlanError, OSError, ValueError):
                return None  # logged by the watcher; a client sees the readable versions

        items, more = _page(versions, size, build)
        token = (_encode_token(str(items[-1].version), scope=f"versions:{request.workflow}")
                 if more else "")
        return pb.ListPlanVersionsResponse(plan_versions=items, next_page_token=token)

    @unary
    async def SetSchedulingStatus(self, request: pb.SetSchedulingStatusRequest, context: Any
                                  ) -> pb.SetSchedulingStatusResponse:
        _known_length(request.workflow, "workflow")
        plan = latest_plan(self._p.catalog, request.workflow)
        self._p.scheduler.set_enabled(request.workflow, request.enabled)
        return pb.SetSchedulingStatusResponse(workflow=self._workflow(plan))

    def latest_versions(self, workflows: Sequence[str]) -> dict[str, pb.PlanVersion]:
        """The plan version each workflow's `Workflow` describes (its `latest_version`), as
        ListPlanVersions lists it; a name with none is left out. For the console's
        Workflows page: one read for all its rows, not a call per row."""
        found = {}
        for name in workflows:
            plan = self._p.catalog.latest(name)
            if plan is not None:
                found[name] = convert.plan_version(plan)
        return found

    def _workflow(self, plan: Plan, *, latest: Plan | None = None) -> pb.Workflow:
        latest = latest or plan
        switch = None
        if latest.content is not None and latest.content.schedule is not None:
            switch = self._p.scheduler.switch_state(latest.workflow)
        return convert.workflow(plan, latest_version=latest.version or 0, switch=switch)

    def _latest_any(self, workflow: str) -> Plan:
        """The latest version, tombstones included."""
        _required(workflow, "workflow")
        plan = self._p.catalog.latest(workflow)
        if plan is None:
            close = difflib.get_close_matches(workflow, self._p.catalog.workflows(), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise RequestError(f"workflow '{shown(workflow)}' does not exist{hint}",
                               field="workflow", code=grpc.StatusCode.NOT_FOUND)
        return plan

    def _version(self, workflow: str, version: int) -> Plan:
        """Version `version` (positive) of `workflow`. A refusal never shows the plan store's
        paths: they are the daemon's, not the caller's; the log has them."""
        versions = self._p.catalog.versions(workflow)
        if version not in versions:
            known = ("it has none" if not versions else f"its only version is {versions[0]}"
                     if len(versions) == 1 else f"it has versions {versions[0]} to {versions[-1]}")
            raise RequestError(f"version {version} of {workflow} does not exist: {known}",
                               field="plan_version", code=grpc.StatusCode.NOT_FOUND)
        try:
            return self._p.catalog.get(workflow, version)
        except (PlanError, OSError, ValueError) as exc:
            log.error("plan %s version %d cannot be read: %s", workflow, version, exc)
            raise RequestError(f"version {version} of {workflow} cannot be read (the daemon's"
                               " log says why); use another version", field="plan_version",
                               code=grpc.StatusCode.NOT_FOUND) from exc

    # ---- runs ---------------------------------------------------------------------------

    @unary
    async def StartRun(self, request: pb.StartRunRequest, context: Any
                       ) -> pb.StartRunResponse:
        _known_length(request.workflow, "workflow")
        run = start_run(self._p.engine, self._p.catalog, self._p.clock, request.workflow,
                        params=_params(request.params), queue=request.queue or None,
                        remarks=_remarks(request.remarks),
                        logical_time=(_time(request.logical_time, "logical_time")
                                      if request.HasField("logical_time") else None))
        return pb.StartRunResponse(run=self._run(run.run_id, include_graph=True))

    @unary
    async def GetRun(self, request: pb.GetRunRequest, context: Any) -> bytes:
        """The serialized GetRunResponse (`register` sends bytes as they are): an answer is
        built and serialized once per state of the run, however many clients poll it. A
        finished run's answer is final (nothing changes a finished run): it is served
        without asking the state store for the history's length."""
        _required(request.run_id, "run_id")
        final = (request.run_id, request.include_graph, _FINAL, False)
        answer = self._answers.get(final)
        if answer is not None:
            self._answers.move_to_end(final)
            return answer
        sequence, cancelling = self._p.store.run_mark(request.run_id)
        key = (request.run_id, request.include_graph, sequence, cancelling)
        answer = self._answers.get(key)
        if answer is not None:
            self._answers.move_to_end(key)
            return answer
        run = self._run(request.run_id, include_graph=request.include_graph, sequence=sequence)
        answer = pb.GetRunResponse(run=run).SerializeToString()
        # the history's length names the state: safe to reuse
        self._answers[final if run.status in _FINISHED else key] = answer
        if len(self._answers) > _ANSWER_CACHE_SIZE:
            self._answers.popitem(last=False)
        return answer

    @unary
    async def ListRuns(self, request: pb.ListRunsRequest, context: Any) -> pb.ListRunsResponse:
        size = _page_size(request.page_size)
        filters = pb.ListRunsRequest()
        filters.CopyFrom(request)
        filters.page_token = ""
        filters.page_size = 0
        scope = "runs:" + hashlib.sha256(filters.SerializeToString(deterministic=True)
                                         ).hexdigest()[:16]
        before = _decode_token(request.page_token, scope=scope)
        workflows = self._tagged(request.tag) if request.tag else None
        if workflows is not None and request.workflow:
            workflows = [w for w in workflows if w == request.workflow]
        elif request.workflow:
            workflows = [request.workflow]
        status = _enum_name(pb.RunStatus, request.status, "status")
        trigger = _enum_name(pb.RunTrigger, request.trigger, "trigger")

        def runs(position: str | None, limit: int) -> list[Run]:
            if workflows is not None and not workflows:
                return []
            return self._p.store.list_runs(
                workflows=workflows, statuses=[RunStatus(status)] if status else (),
                trigger=RunTrigger(trigger.lower()) if trigger else None,
                backfill_id=request.backfill_id or None, before_run_id=position, limit=limit)

        items, more = _page(_in_batches(runs, before, size + 1, lambda run: run.run_id),
                            size, _listed_run)
        token = _encode_token(items[-1].run_id, scope=scope) if more else ""
        counts = self._p.store.node_counts([item.run_id for item in items])
        for item in items:  # a few bytes each: not worth counting against the page budget
            item.node_counts.CopyFrom(convert.node_counts(counts[item.run_id]))
        return pb.ListRunsResponse(runs=items, next_page_token=token)

    def latest_runs(self, workflows: Sequence[str], per_workflow: int
                    ) -> dict[str, list[pb.Run]]:
        """Each workflow's newest `per_workflow` runs, newest first as ListRuns pages them,
        with only `run_id`, `workflow` and `status` set. For the console's Workflows page:
        one read for all its rows, not a ListRuns call per row."""
        statuses = self._p.store.newest_run_statuses(workflows, per_workflow)
        return {name: [pb.Run(run_id=run_id, workflow=name,
                              status=convert.enum_value(pb.RunStatus, "RUN_STATUS",
                                                        status.value))
                       for run_id, status in runs]
                for name, runs in statuses.items()}

    def _tagged(self, tag: str) -> list[str]:
        """The workflows whose latest plan has the tag ("key=value", or "key" for any
        value) on the workflow or on one of its nodes."""
        key, sep, value = tag.partition("=")
        if not key:
            raise RequestError(f"tag '{shown(tag)}' has no key: use key=value (e.g."
                               " team=sales) or key (any value)", field="tag")

        def has(tags: dict[str, str]) -> bool:
            return key in tags and (not sep or tags[key] == value)

        found = []
        for name in self._p.catalog.workflows():
            plan = self._p.catalog.latest(name)
            if plan is None or plan.content is None:
                continue
            if has(plan.content.tags) or any(has(n.tags) for n in plan.content.nodes):
                found.append(name)
        return found

    @unary
    async def CancelRun(self, request: pb.CancelRunRequest, context: Any
                        ) -> pb.CancelRunResponse:
        _required(request.run_id, "run_id")
        self._p.engine.cancel_run(request.run_id)
        return pb.CancelRunResponse(run=self._run(request.run_id, include_graph=True))

    @unary
    async def ResumeRun(self, request: pb.ResumeRunRequest, context: Any
                        ) -> pb.ResumeRunResponse:
        _required(request.run_id, "run_id")
        if not request.node_names:
            raise RequestError("name at least one node to resume from (node_names)",
                               field="node_names")
        for index, name in enumerate(request.node_names):
            _known_length(name, f"node_names[{index}]")
        if _version_number(request.plan_version):
            original = self._p.store.get_run(request.run_id, with_nodes=False)
            if original is not None:  # else the engine says the run does not exist
                self._version(original.workflow, request.plan_version)
        answer = self._p.engine.resume_run(request.run_id, list(request.node_names),
                                           plan_version=request.plan_version or None,
                                           dry_run=request.dry_run,
                                           remarks=_remarks(request.remarks) or None)
        return pb.ResumeRunResponse(run_id=answer.run_id or "", node_names=answer.node_names,
                                    plan_version=answer.plan_version)

    def _run(self, run_id: str, *, include_graph: bool, sequence: int | None = None
             ) -> pb.Run:
        _required(run_id, "run_id")
        run = self._p.store.get_run(run_id, with_nodes=include_graph)
        if run is None:
            raise RequestError(f"run {run_id} does not exist", field="run_id",
                               code=grpc.StatusCode.NOT_FOUND)
        graph = self._graph(run) if include_graph else None
        return convert.run(run, graph=graph, last_sequence=(
            self._p.store.last_sequence(run_id) if sequence is None else sequence),
            cancel_requested_at=self._p.store.cancel_requested_at(run_id),
            counts=None if include_graph else self._p.store.node_counts([run_id])[run_id])

    def _graph(self, run: Run) -> WorkflowPlan | None:
        try:
            plan = self._p.catalog.get(run.workflow, self._p.store.graph_version(run.run_id))
        except (PlanError, OSError, ValueError, KeyError):
            return None
        return plan.content

    # ---- backfills ----------------------------------------------------------------------

    @unary
    async def StartBackfill(self, request: pb.StartBackfillRequest, context: Any
                            ) -> pb.StartBackfillResponse:
        _known_length(request.workflow, "workflow")
        for name in ("start_time", "end_time"):
            if not request.HasField(name):
                raise RequestError(f"{name} is required", field=name)
        if request.max_parallel_runs < 0:
            raise RequestError("max_parallel_runs must be positive (0: the workflow's"
                               " max_active_runs)", field="max_parallel_runs")
        def abandoned() -> bool:  # the client has been told DEADLINE_EXCEEDED already
            left = context.time_remaining()
            return left is not None and left <= 0

        try:
            answer = self._p.backfills.start(BackfillRequest(
                workflow=request.workflow, start_time=_time(request.start_time, "start_time"),
                end_time=_time(request.end_time, "end_time"),
                max_parallel_runs=request.max_parallel_runs or None,
                queue=request.queue or None, remarks=_remarks(request.remarks),
                failure_emails=_emails(request.failure_emails), dry_run=request.dry_run,
                reprocess=convert.reprocess(_known(pb.Reprocess, request.reprocess,
                                                   "reprocess"))), abandoned=abandoned)
        except AbandonedError as exc:
            log.warning("%s", exc)
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
        return pb.StartBackfillResponse(
            backfill_id=answer.backfill_id or "",
            logical_times=[convert.required_timestamp(t) for t in answer.logical_times],
            run_ids=answer.run_ids)

    @unary
    async def GetBackfill(self, request: pb.GetBackfillRequest, context: Any
                          ) -> pb.GetBackfillResponse:
        _required(request.backfill_id, "backfill_id")
        return pb.GetBackfillResponse(backfill=convert.backfill(
            self._p.backfills.get(request.backfill_id)))

    @unary
    async def ListBackfills(self, request: pb.ListBackfillsRequest, context: Any
                            ) -> pb.ListBackfillsResponse:
        size = _page_size(request.page_size)
        scope = f"backfills:{request.workflow}:{request.status}"
        before = _decode_token(request.page_token, scope=scope)
        status = _enum_name(pb.BackfillStatus, request.status, "status")
        items = self._p.store.list_backfills(workflow=request.workflow or None,
                                             statuses=[BackfillStatus(status)] if status else [],
                                             before_backfill_id=before,
                                             limit=size + 1)
        backfills, more = _page(items, size, _listed_backfill)
        token = _encode_token(backfills[-1].backfill_id, scope=scope) if more else ""
        return pb.ListBackfillsResponse(backfills=backfills, next_page_token=token)

    @unary
    async def CancelBackfill(self, request: pb.CancelBackfillRequest, context: Any
                             ) -> pb.CancelBackfillResponse:
        _required(request.backfill_id, "backfill_id")
        unfinished = [r.run_id for r in self._p.store.list_runs(
            backfill_id=request.backfill_id, statuses=[RunStatus.PENDING, RunStatus.RUNNING],
            limit=1_000_000)]
        backfill = self._p.backfills.cancel(request.backfill_id)
        return pb.CancelBackfillResponse(backfill=convert.backfill(backfill),
                                         cancelled_run_ids=sorted(unfinished))

    # ---- notifications ------------------------------------------------------------------

    @unary
    async def ListNotifications(self, request: pb.ListNotificationsRequest, context: Any
                                ) -> pb.ListNotificationsResponse:
        size = _page_size(request.page_size)
        scope = f"notifications:{request.run_id}:{request.status}"
        before = _decode_number(request.page_token, scope=scope)
        status = _enum_name(pb.NotificationStatus, request.status, "status")
        outbox = Outbox(self._p.store)

        def rows(position: int | None, limit: int) -> list[OutboxRow]:
            return outbox.page(run_id=request.run_id or None,
                               status=OutboxStatus(status) if status else None,
                               before_id=position, limit=limit)

        items, more = _page(_in_batches(rows, before, size + 1, lambda row: row.id),
                            size, convert.notification)
        token = _encode_token(str(items[-1].id), scope=scope) if more else ""
        return pb.ListNotificationsResponse(notifications=items, next_page_token=token)

    # ---- streams ------------------------------------------------------------------------

    @stream
    async def WatchRun(self, request: pb.WatchRunRequest, context: Any
                       ) -> AsyncIterator[pb.WatchRunResponse]:
        _required(request.run_id, "run_id")
        run_id = request.run_id
        header = self._p.store.get_run(run_id, with_nodes=False)
        if header is None:
            raise RequestError(f"run {run_id} does not exist", field="run_id",
                               code=grpc.StatusCode.NOT_FOUND)
        last = request.after_sequence
        if last < 0:
            raise RequestError(f"after_sequence {last} is negative: send 0 for the run's whole"
                               " history, or the last sequence received", field="after_sequence")
        known = self._p.store.last_sequence(run_id)
        if last > known:
            raise RequestError(f"after_sequence {last} is beyond run {run_id}'s history, which"
                               f" ends at sequence {known}: send the last sequence received,"
                               " or 0 for the whole history", field="after_sequence")
        await opened(context)
        status = self._p.store.run_status_at(run_id, last)
        if status is not None and status.finished:
            return  # the change that finished the run was sent already
        woken = asyncio.Event()
        unsubscribe = self._p.engine.subscribe(_waker(run_id, woken))
        try:
            while not self._p.closing.is_set():
                woken.clear()
                events = self._p.store.events_after(run_id, last)
                for event in events:
                    last = event.sequence
                    node = None
                    if event.node is None:
                        status = RunStatus(event.status)
                    else:
                        found = self._p.store.get_node(run_id, event.node)
                        node = found and self._as_of(found, event, header.workflow)
                        status = self._p.store.run_status_at(run_id, event.sequence)
                    yield convert.run_event(event, run_status=status, node=node)
                    if event.node is None and status is not None and status.finished:
                        return
                if not events:
                    await _first(woken.wait(), self._p.closing.wait())
        finally:
            unsubscribe()
        await shutting_down(context, "the daemon is shutting down; watch again with"
                                     f" after_sequence={last}")

    def _as_of(self, node: NodeRun, event: RunEvent, workflow: str) -> NodeRun:
        """`node` as it was right after `event` (docs/api.md, WatchRun): its attempts up to
        the event's, that one still running at a RUNNING, and for a RETRYING the time its
        next attempt was due then. Replayed later, the node has moved on."""
        if event.attempt is None:
            return node
        attempts = [a for a in node.attempts if a.number <= event.attempt]
        if event.status == NodeStatus.RUNNING.value and attempts and (
                attempts[-1].number == event.attempt):
            attempts[-1] = dataclasses.replace(attempts[-1], status=AttemptStatus.RUNNING,
                                               finished_at=None, exit_code=None, error=None)
        next_at = None
        if event.status == NodeStatus.RETRYING.value and attempts:
            next_at = self._retry_due(node, attempts[-1], workflow)
        return dataclasses.replace(node, attempts=tuple(attempts), next_attempt_at=next_at)

    def _retry_due(self, node: NodeRun, failed: Attempt, workflow: str) -> datetime | None:
        """When the attempt after `failed` was due, as the engine set it at its end."""
        if node.status is NodeStatus.RETRYING and len(node.attempts) == failed.number:
            return node.next_attempt_at  # that retry still waits: the stored time
        if failed.finished_at is None:
            return None
        try:
            plan = self._p.catalog.get(workflow, node.plan_version).content
            defined = plan.node(node.name) if plan is not None else None
        except (PlanError, OSError, ValueError, KeyError):
            return None
        if defined is None:
            return None
        return failed.finished_at + timedelta(
            seconds=defined.retry_delay_seconds * defined.retry_backoff ** (failed.number - 1))

    @stream
    async def GetNodeLog(self, request: pb.GetNodeLogRequest, context: Any
                         ) -> AsyncIterator[pb.GetNodeLogResponse]:
        _required(request.run_id, "run_id")
        _required(request.node_name, "node_name")
        run = self._p.store.get_run(request.run_id, with_nodes=False)
        if run is None:
            raise RequestError(f"run {request.run_id} does not exist", field="run_id",
                               code=grpc.StatusCode.NOT_FOUND)
        if self._p.store.get_node(request.run_id, request.node_name) is None:
            raise RequestError(f"run {request.run_id} has no node '{request.node_name}'",
                               field="node_name", code=grpc.StatusCode.NOT_FOUND)
        if request.attempt < 0:
            raise RequestError("attempt must be 0 (the latest) or an attempt number",
                               field="attempt")
        # before the headers: a run whose plan no longer loads has secrets no one can mask
        secrets = [s.encode() for s in self._p.engine.secrets(request.run_id) if s]
        await opened(context)
        woken = asyncio.Event()
        unsubscribe = self._p.engine.subscribe(_waker(request.run_id, woken))
        try:
            async for offset, data, number in stream_log(
                    self._p.store, request.run_id, request.node_name,
                    attempt=request.attempt, offset=request.offset, follow=request.follow,
                    secrets=secrets, woken=woken, closing=self._p.closing):
                yield pb.GetNodeLogResponse(offset=offset, data=data, attempt=number)
        finally:
            unsubscribe()
        if request.follow and self._p.closing.is_set():
            await shutting_down(context, "the daemon is shutting down; follow again from the"
                                         " next offset")


def _waker(run_id: str, event: asyncio.Event) -> Callable[[StatusEvent], None]:
    def listener(change: StatusEvent) -> None:
        if change.run_id == run_id:
            event.set()
    return listener


async def _first(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _required(value: str, field: str) -> None:
    """`value` is set and short enough to name something (else NOT_FOUND, not echoed whole)."""
    if not value:
        raise RequestError(f"{field} is required", field=field)
    _known_length(value, field)


def _known_length(value: str, field: str) -> None:
    if len(value) > MAX_NAME_CHARS:
        raise RequestError(f"{field} '{shown(value)}' ({len(value):,} characters) does not"
                           f" exist: names and ids have at most {MAX_NAME_CHARS} characters",
                           field=field, code=grpc.StatusCode.NOT_FOUND)


def _params(message: struct_pb2.Struct) -> dict[str, Any]:
    try:
        params = convert.from_struct(message)
    except (json_format.SerializeToJsonError, ValueError) as exc:
        raise RequestError("params must be JSON values: numbers must be finite (not NaN or"
                           " Infinity)", field="params") from exc
    size = _json_bytes(params)
    if size > MAX_PARAMS_BYTES:
        raise RequestError(f"params are {size:,} bytes of JSON: at most {MAX_PARAMS_BYTES:,}"
                           " bytes are accepted; pass large data by reference (a path or URL)",
                           field="params")
    return params


def _remarks(text: str) -> str:
    if len(text) > MAX_REMARKS_CHARS:
        raise RequestError(f"remarks are {len(text):,} characters: at most"
                           f" {MAX_REMARKS_CHARS:,} are accepted", field="remarks")
    return text


def _emails(addresses: Sequence[str]) -> tuple[str, ...]:
    if len(addresses) > MAX_FAILURE_EMAILS:
        raise RequestError(f"failure_emails has {len(addresses):,} addresses: at most"
                           f" {MAX_FAILURE_EMAILS} are accepted", field="failure_emails")
    return tuple(addresses)


def _json_bytes(values: dict[str, Any]) -> int:
    """The size of `values` as compact UTF-8 JSON: how params are measured."""
    return len(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode())


def _listed_run(run: Run) -> pb.Run:
    """A run as lists show it: without params larger than MAX_PARAMS_BYTES, its remarks cut
    at MAX_REMARKS_CHARS (only runs stored before those caps have more; GetRun returns them
    whole)."""
    if _json_bytes(run.params) > MAX_PARAMS_BYTES:
        run = dataclasses.replace(run, params={})
    if len(run.remarks) > MAX_REMARKS_CHARS:
        run = dataclasses.replace(run, remarks=shown(run.remarks, MAX_REMARKS_CHARS))
    return convert.run(run, graph=None, last_sequence=0)


def _listed_backfill(backfill: Backfill) -> pb.Backfill:
    """A backfill as lists show it: its remarks cut at MAX_REMARKS_CHARS, as a run's."""
    if len(backfill.remarks) > MAX_REMARKS_CHARS:
        backfill = dataclasses.replace(backfill,
                                       remarks=shown(backfill.remarks, MAX_REMARKS_CHARS))
    return convert.backfill(backfill)


def _in_batches(read: Callable[[_Position | None, int], list[_Source]],
                after: _Position | None, wanted: int, position: Callable[[_Source], _Position]
                ) -> Iterator[_Source]:
    """Up to `wanted` sources of `read(after, limit)`, a batch of _READ_BATCH at a time, each
    read after the last one's `position`: a page of big items (runs with large params, long
    e-mails) reads few more of them than it sends."""
    while wanted > 0:
        batch = read(after, min(wanted, _READ_BATCH))
        yield from batch
        if len(batch) < min(wanted, _READ_BATCH):
            return
        after, wanted = position(batch[-1]), wanted - len(batch)


def _page(sources: Iterable[_Source], size: int, build: Callable[[_Source], _Item | None]
          ) -> tuple[list[_Item], bool]:
    """A list answer's items: `build` of each source (None: left out) until `size` items or
    PAGE_BYTES (always at least one item); and whether more follow (the next page starts
    after the last item). Sources are taken one at a time: no more than the page needs."""
    items: list[_Item] = []
    total = 0
    for source in sources:
        if len(items) == size:
            return items, True
        item = build(source)
        if item is None:
            continue
        total += item.ByteSize() + 8  # with the field's tag and length
        if items and total > PAGE_BYTES:
            return items, True
        items.append(item)
    return items, False


def _time(message: timestamp_pb2.Timestamp, field: str) -> datetime:
    try:
        return convert.from_timestamp(message)
    except (ValueError, OverflowError) as exc:  # outside 0001-01-01..9999-12-31, bad nanos
        raise RequestError(f"{field} is not a valid time: {exc}", field=field) from exc


def _known(enum: EnumTypeWrapper, value: int, field: str) -> int:
    """`value` if `enum` defines it; else the request is refused, naming `field`."""
    if value not in enum.DESCRIPTOR.values_by_number:
        known = ", ".join(v.name for v in enum.DESCRIPTOR.values if v.number)
        raise RequestError(f"{field} {value} is not a value of {enum.DESCRIPTOR.name}: use one"
                           f" of {known} (or leave it unset)", field=field)
    return value


def _enum_name(enum: EnumTypeWrapper, value: int, field: str) -> str | None:
    """The name of a set enum value without the enum's prefix (RUN_STATUS_FAILED: FAILED);
    None when unset."""
    if not _known(enum, value, field):
        return None
    unset = enum.DESCRIPTOR.values_by_number[0].name  # RUN_STATUS_UNSPECIFIED
    return enum.Name(value)[len(unset) - len("UNSPECIFIED"):]


def _version_number(value: int) -> int:
    """A request's `plan_version`: 0 (the latest) or a version number."""
    if value < 0:
        raise RequestError(f"plan_version {value} is negative: give a version number, or 0"
                           " for the latest", field="plan_version")
    return value


def _page_size(value: int) -> int:
    if value < 0:
        raise RequestError("page_size must not be negative", field="page_size")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _encode_token(position: str, *, scope: str) -> str:
    raw = json.dumps({"p": position, "s": scope}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, *, scope: str) -> str | None:
    """An opaque page token's position; it is only valid with the same filters (AIP-158)."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position, token_scope = data["p"], data["s"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise RequestError("page_token is not one this daemon gave out",
                           field="page_token") from exc
    if token_scope != scope or not isinstance(position, str):
        raise RequestError("page_token belongs to a request with other filters; send the"
                           " same filters as the first page", field="page_token")
    return position


def _decode_number(token: str, *, scope: str) -> int | None:
    """`_decode_token` of a token whose position is a number (a plan version, an outbox
    row's id)."""
    position = _decode_token(token, scope=scope)
    if position is None:
        return None
    # 18 digits at most: the number fits an SQLite integer (the store compares with it)
    if not (position.isascii() and position.isdigit() and len(position) <= 18):
        raise RequestError("page_token is not one this daemon gave out", field="page_token")
    return int(position)


def register(server: grpc.aio.Server, parts: Parts) -> WorkflowService:
    """Serve the service on `server`: the generated handlers, except that GetRun's answer
    goes out as the bytes `GetRun` returns."""
    service = WorkflowService(parts)
    handlers = handlers_of(pb_grpc.add_WorkflowServiceServicer_to_server, service)
    handlers["GetRun"] = grpc.unary_unary_rpc_method_handler(
        service.GetRun, request_deserializer=pb.GetRunRequest.FromString,
        response_serializer=None)
    serve_tolerant(server, pb.DESCRIPTOR.services_by_name["WorkflowService"], handlers)
    return service
