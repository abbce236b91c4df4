"""The edge between the daemon's own types and the wire contract `flowplan.v1`: the only
module that builds protobuf messages from them (and reads requests' times and params)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from flowplan.compiler.plan import NodePlan, Plan, SchedulePlan, WorkflowPlan
from flowplan.daemon.domain import (
    Attempt,
    Backfill,
    NodeRun,
    NodeStatus,
    Reprocess,
    Run,
    RunEvent,
    RunStatus,
)
from flowplan.daemon.engine.commands import masked_params
from flowplan.daemon.notify.outbox import OutboxRow
from flowplan.daemon.scheduler.scheduler import SwitchState
from flowplan.v1 import workflow_service_pb2 as pb

_SCHEDULE_KINDS = {"daily": pb.SCHEDULE_KIND_DAILY, "interval": pb.SCHEDULE_KIND_INTERVAL,
                   "cron": pb.SCHEDULE_KIND_CRON}
_CATCHUP = {"none": pb.CATCHUP_NONE, "latest": pb.CATCHUP_LATEST, "all": pb.CATCHUP_ALL}
_NODE_TYPES = {"shell": pb.NODE_TYPE_SHELL, "python": pb.NODE_TYPE_PYTHON,
               "sql": pb.NODE_TYPE_SQL}
_REPROCESS: dict[int, Reprocess] = {
    pb.REPROCESS_MISSING: Reprocess.MISSING, pb.REPROCESS_FAILED: Reprocess.FAILED,
    pb.REPROCESS_ALL: Reprocess.ALL, pb.REPROCESS_UNSPECIFIED: Reprocess.ALL}


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value.astimezone(UTC))
    return message


def required_timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value.astimezone(UTC))
    return message


def from_timestamp(message: timestamp_pb2.Timestamp) -> datetime:
    return message.ToDatetime(tzinfo=UTC)


def struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(dict(values))
    return message


def from_struct(message: struct_pb2.Struct) -> dict[str, Any]:
    """Struct numbers are doubles: give whole numbers back as ints (`--param n=5` is 5)."""
    values = json_format.MessageToDict(message)
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v
            for k, v in values.items()}


def enum_value(enum: Any, prefix: str, value: str) -> Any:
    return enum.Value(f"{prefix}_{value.upper()}")


def reprocess(value: int) -> Reprocess:
    return _REPROCESS[value]


def attempt(a: Attempt) -> pb.Attempt:
    message = pb.Attempt(number=a.number, status=enum_value(pb.AttemptStatus, "ATTEMPT_STATUS",
                                                            a.status.value),
                         plan_version=a.plan_version, started_at=timestamp(a.started_at),
                         finished_at=timestamp(a.finished_at), error=a.error or "",
                         log_path=a.log_path or "",
                         copied_from_run_id=a.copied_from_run_id or "",
                         spark_application_id=getattr(a, "spark_application_id", None) or "")
    if a.exit_code is not None:
        message.exit_code = a.exit_code
    return message


def node_run(n: NodeRun) -> pb.NodeRun:
    return pb.NodeRun(name=n.name, status=enum_value(pb.NodeStatus, "NODE_STATUS",
                                                     n.status.value),
                      queue=n.queue, attempts=[attempt(a) for a in n.attempts],
                      copied_from_run_id=n.copied_from_run_id or "",
                      plan_version=n.plan_version, skip_reason=n.skip_reason or "",
                      next_attempt_at=timestamp(n.next_attempt_at))


def edges(graph: WorkflowPlan) -> list[pb.Edge]:
    return [pb.Edge(upstream=u, downstream=d) for u, d in graph.edges()]


def node_counts(counts: Mapping[NodeStatus, int]) -> pb.NodeCounts:
    """A run's nodes by status; RETRYING counts as running."""
    return pb.NodeCounts(
        total=sum(counts.values()), succeeded=counts.get(NodeStatus.SUCCEEDED, 0),
        failed=counts.get(NodeStatus.FAILED, 0), skipped=counts.get(NodeStatus.SKIPPED, 0),
        cancelled=counts.get(NodeStatus.CANCELLED, 0),
        running=counts.get(NodeStatus.RUNNING, 0) + counts.get(NodeStatus.RETRYING, 0),
        pending=counts.get(NodeStatus.PENDING, 0))


def run(r: Run, *, graph: WorkflowPlan | None, last_sequence: int,
        cancel_requested_at: datetime | None = None,
        counts: Mapping[NodeStatus, int] | None = None) -> pb.Run:
    """A run with the nodes it was loaded with (in the graph's order), with `counts` (else
    from its nodes, when it has them) its nodes by status; with `graph`, its tags, its
    nodes' tags and its edges too. A run whose plan cannot be read any more keeps its
    nodes."""
    message = pb.Run(
        run_id=r.run_id, workflow=r.workflow, plan_version=r.plan_version,
        status=enum_value(pb.RunStatus, "RUN_STATUS", r.status.value),
        trigger=enum_value(pb.RunTrigger, "RUN_TRIGGER", r.trigger.value),
        logical_time=timestamp(r.logical_time), params=struct(masked_params(r.params)),
        remarks=r.remarks,
        previous_run_id=r.previous_run_id or "", backfill_id=r.backfill_id or "",
        created_at=timestamp(r.created_at), started_at=timestamp(r.started_at),
        finished_at=timestamp(r.finished_at), plan_digest=r.plan_digest,
        data_interval_start=timestamp(r.data_interval_start),
        data_interval_end=timestamp(r.data_interval_end), queue=r.queue_override or "",
        cancel_requested_at=timestamp(cancel_requested_at), last_sequence=last_sequence)
    if counts is None and r.nodes:
        counts = {}
        for n in r.nodes:
            counts[n.status] = counts.get(n.status, 0) + 1
    if counts is not None:
        message.node_counts.CopyFrom(node_counts(counts))
    tags = {n.name: n.tags for n in graph.nodes} if graph is not None else {}
    for n in r.nodes:
        node = message.nodes.add()
        node.CopyFrom(node_run(n))
        node.tags.update(tags.get(n.name, {}))
    if graph is not None:
        message.tags.update(graph.tags)
        message.edges.extend(edges(graph))
    return message


def run_event(event: RunEvent, *, run_status: RunStatus | None, node: NodeRun | None
              ) -> pb.WatchRunResponse:
    message = pb.WatchRunResponse(sequence=event.sequence, event_time=timestamp(event.at))
    if run_status is not None:
        message.run_status = enum_value(pb.RunStatus, "RUN_STATUS", run_status.value)
    if node is not None:
        message.node.CopyFrom(node_run(node))
        message.node.status = enum_value(pb.NodeStatus, "NODE_STATUS", event.status)
    return message


def schedule(s: SchedulePlan) -> pb.Schedule:
    return pb.Schedule(kind=_SCHEDULE_KINDS[s.kind], at=s.at or "",
                       every_seconds=s.every_seconds or 0,
                       window_start=s.window[0] if s.window else "",
                       window_end=s.window[1] if s.window else "", cron=s.cron or "",
                       timezone=s.timezone, start=timestamp(s.start),
                       enabled_in_git=s.enabled, catchup=_CATCHUP[s.catchup])


def node_definition(n: NodePlan) -> pb.NodeDefinition:
    message = pb.NodeDefinition(
        name=n.name, type=_NODE_TYPES.get(n.type, pb.NODE_TYPE_UNSPECIFIED), queue=n.queue,
        retries=n.retries, trigger=enum_value(pb.TriggerRule, "TRIGGER_RULE", n.trigger),
        upstream=list(n.upstream), description=n.description,
        source_path=n.source.path if n.source else "",
        source_sha256=n.source.sha256 if n.source else "", command=n.command or "",
        retry_delay_seconds=n.retry_delay_seconds, retry_backoff=n.retry_backoff,
        queue_pinned=n.queue_pinned)
    message.tags.update(n.tags)
    if n.timeout_seconds is not None:
        message.timeout_seconds = n.timeout_seconds
    return message


def workflow(plan: Plan, *, latest_version: int, switch: SwitchState | None) -> pb.Workflow:
    """The static view of a workflow at `plan`'s version."""
    message = pb.Workflow(name=plan.workflow, latest_version=latest_version,
                          tombstone=plan.tombstone, plan_version=plan.version or 0,
                          plan_digest=plan.digest)
    content = plan.content
    if content is None:
        return message
    message.description = content.description
    message.timezone = content.timezone
    message.queue = content.queue
    message.max_active_runs = content.max_active_runs
    message.tags.update(content.tags)
    message.file = content.file
    message.params.CopyFrom(struct(masked_params(content.params)))
    message.failure_emails.extend(content.on_failure_email)
    message.nodes.extend(node_definition(n) for n in content.nodes)
    message.edges.extend(edges(content))
    if content.schedule is not None:
        message.schedule.CopyFrom(schedule(content.schedule))
    if switch is not None:
        message.scheduling_enabled = switch.enabled
        if switch.next_tick is not None:
            message.next_tick.FromDatetime(switch.next_tick.astimezone(UTC))
    return message


def plan_version(plan: Plan) -> pb.PlanVersion:
    return pb.PlanVersion(workflow=plan.workflow, version=plan.version or 0, digest=plan.digest,
                          published_at=timestamp(plan.published_at), remarks=plan.remarks,
                          commit=plan.commit or "", compiler_version=plan.compiler_version,
                          tombstone=plan.tombstone)


def backfill(b: Backfill) -> pb.Backfill:
    p = b.progress
    return pb.Backfill(
        backfill_id=b.backfill_id, workflow=b.workflow,
        status=enum_value(pb.BackfillStatus, "BACKFILL_STATUS", b.status.value),
        start_time=timestamp(b.start_time), end_time=timestamp(b.end_time),
        max_parallel_runs=b.max_parallel_runs, queue=b.queue_override or "",
        remarks=b.remarks, failure_emails=list(b.failure_emails),
        reprocess=enum_value(pb.Reprocess, "REPROCESS", b.reprocess.value),
        created_at=timestamp(b.created_at), finished_at=timestamp(b.finished_at),
        progress=pb.BackfillProgress(total=p.total, succeeded=p.succeeded, failed=p.failed,
                                     running=p.running, pending=p.pending,
                                     cancelled=p.cancelled))


def notification(row: OutboxRow) -> pb.Notification:
    return pb.Notification(
        id=row.id, kind=row.kind, recipients=list(row.recipients), subject=row.subject,
        body=row.body,
        status=enum_value(pb.NotificationStatus, "NOTIFICATION_STATUS", row.status.value),
        attempts=row.attempts, created_at=timestamp(row.created_at),
        next_attempt_at=timestamp(row.next_attempt_at), error=row.last_error or "",
        sent_at=timestamp(row.sent_at), run_id=row.run_id or "",
        backfill_id=row.backfill_id or "", node_name=row.node or "")
