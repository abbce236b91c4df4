"""Validated workflow -> `WorkflowPlan`: every default applied, the graph in topological order,
the schedule normalized, job sources embedded.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from flowplan.compiler.models import QueueSpec, ScheduleSpec, SettingsSpec, WorkflowHeaderSpec
from flowplan.compiler.plan import (
    NodePlan,
    NotifyPlan,
    QueuePlan,
    ScheduleKind,
    SchedulePlan,
    SourcePlan,
    WorkflowPlan,
)
from flowplan.compiler.validate import CheckedNode

_SECOND = timedelta(seconds=1)

_T = TypeVar("_T")


def _first(node_value: _T | None, workflow_value: _T | None, default: _T) -> _T:
    """Node setting, else workflow setting, else repository default."""
    if node_value is not None:
        return node_value
    return workflow_value if workflow_value is not None else default


def source_plan(path: str, data: bytes) -> SourcePlan:
    return SourcePlan(path=path, sha256=hashlib.sha256(data).hexdigest(),
                      text=data.decode("utf-8"))


def resolve_workflow(
    *,
    file: str,
    name: str,
    header: WorkflowHeaderSpec,
    nodes: list[CheckedNode],
    settings: SettingsSpec,
    sources: Mapping[str, SourcePlan],
) -> WorkflowPlan:
    """Build the plan content of one valid workflow. `sources` maps source path -> embedded."""
    defaults = settings.defaults
    workflow_queue = header.queue or defaults.queue
    timezone = (header.schedule.timezone if header.schedule and header.schedule.timezone
                else defaults.timezone)

    plans: dict[str, NodePlan] = {}
    for node in nodes:
        spec = node.spec
        timeout = (spec.timeout if "timeout" in spec.model_fields_set
                   else header.timeout if "timeout" in header.model_fields_set
                   else defaults.timeout)
        plans[node.name] = NodePlan(
            name=node.name,
            description=spec.description,
            type=node.type,
            source=sources[spec.source] if spec.source is not None else None,
            command=spec.command,
            args=tuple(spec.args),
            env=dict(spec.env),
            upstream=tuple(dict.fromkeys(spec.upstream)),
            trigger=spec.trigger,
            queue=spec.queue or workflow_queue,
            queue_pinned=spec.queue is not None,
            retries=_first(spec.retries, header.retries, defaults.retries),
            retry_delay_seconds=_first(spec.retry_delay, header.retry_delay,
                                       defaults.retry_delay),
            retry_backoff=_first(spec.retry_backoff, header.retry_backoff,
                                 defaults.retry_backoff),
            timeout_seconds=timeout,
            tags={**header.tags, **spec.tags, "workflow_name": name, "task_name": node.name},
            notify=(NotifyPlan(email=tuple(spec.notify.email), on=tuple(spec.notify.on))
                    if spec.notify is not None else None),
        )
    return WorkflowPlan(
        name=name,
        description=header.description,
        file=file,
        timezone=timezone,
        queue=workflow_queue,
        max_active_runs=header.max_active_runs,
        params=dict(header.params),
        tags=dict(header.tags),
        on_failure_email=tuple(header.on_failure.email) if header.on_failure else (),
        schedule=(_schedule(header.schedule, timezone) if header.schedule is not None else None),
        queues={queue_name: _queue(queue) for queue_name, queue in settings.queues.items()},
        nodes=tuple(plans[n] for n in topological_order(
            {n.name: list(n.spec.upstream) for n in nodes})),
    )


def _queue(queue: QueueSpec) -> QueuePlan:
    return QueuePlan(executor=queue.executor, concurrency=queue.concurrency,
                     master=queue.master, conf=dict(queue.conf), python=queue.python)


def topological_order(upstreams: Mapping[str, list[str]]) -> list[str]:
    """Kahn's algorithm; among ready nodes the one declared first goes first (stable)."""
    position = {name: i for i, name in enumerate(upstreams)}
    waiting = {name: len(set(ups)) for name, ups in upstreams.items()}
    downstream: dict[str, list[str]] = {name: [] for name in upstreams}
    for name, ups in upstreams.items():
        for up in set(ups):
            downstream[up].append(name)
    ready = [(position[n], n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for child in downstream[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (position[child], child))
    if len(order) != len(upstreams):
        raise ValueError("graph has a cycle; validate before resolving")
    return order


def _schedule(spec: ScheduleSpec, timezone: str) -> SchedulePlan:
    start = _start_instant(spec.start, timezone) if spec.start is not None else None
    kind: ScheduleKind
    at = every_seconds = window = None
    if spec.cron is not None:
        kind = "cron"
    elif spec.every == "day":
        kind, at = "daily", spec.at or "00:00"
    else:
        assert spec.every is not None
        amount, unit = int(spec.every[:-1]), spec.every[-1]
        kind, every_seconds = "interval", amount * (3600 if unit == "h" else 60)
        window = (spec.window[0], spec.window[1]) if spec.window else ("00:00", "23:59")
    return SchedulePlan(kind=kind, at=at, every_seconds=every_seconds, window=window,
                        cron=spec.cron, timezone=timezone, start=start, enabled=spec.enabled,
                        catchup=spec.catchup)


def _start_instant(value: str, timezone: str) -> datetime:
    """An ISO date or date-time; a naive one is a wall time in the schedule's zone, and one
    that does not exist there (a DST gap) the first instant after it: the jump's, as a tick
    at that wall time fires (docs/scheduling.md)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        return parsed
    zone = ZoneInfo(timezone)
    before, after = parsed.replace(tzinfo=zone), parsed.replace(tzinfo=zone, fold=1)
    if before.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == parsed:
        return before
    # in a gap: fold=1 reads the wall time with the offset after the jump, an instant
    # before it; fold=0 with the offset before, one after it. The jump lies between.
    low, high = after.astimezone(UTC), before.astimezone(UTC)
    while high - low > _SECOND:
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == high.astimezone(zone).utcoffset():
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0).astimezone(zone)  # zones jump on whole seconds

