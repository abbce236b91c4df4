"""The daemon's Prometheus metrics (`GET /metrics` on `--http`; docs/operations.md#metrics).

One `CollectorRegistry` per daemon, never the global one: two daemons in one process (tests,
`flowplan debug`) do not collide. What moves with events is counted as it happens, from the
engine's status events, the scheduler's created ticks, the outbox's send attempts and a gRPC
interceptor: a counter increment or a histogram observation, no I/O, so the engine's hot
path stays as it was. What
is a state (queue slots, pending runs, the outbox, the plan catalog) is read when scraped.
Label values are names the operator chose (workflows, queues, RPC methods) or fixed sets
(statuses, triggers, codes): never run ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from flowplan.daemon.domain import NodeStatus, RunStatus
from flowplan.daemon.engine.clock import Clock
from flowplan.daemon.engine.core import StatusEvent
from flowplan.daemon.engine.engine import Engine
from flowplan.daemon.notify.outbox import Outbox, OutboxStatus
from flowplan.daemon.notify.sender import AttemptOutcome
from flowplan.daemon.server.observe import Context, observed, status_code
from flowplan.daemon.state.store import StateStore
from flowplan.daemon.watcher import PlanCatalog
from flowplan.v1 import workflow_service_pb2

log = logging.getLogger("flowplan.daemon")

LOOP_PROBE_SECONDS = 0.25  # how often the event-loop lag is sampled (and events counted)
MAX_QUEUED_EVENTS = 10_000  # counted at once when this many wait
# attempts last from milliseconds (a shell step) to hours (a Spark job)
ATTEMPT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200,
                   14400, float("inf"))
SCHEDULER_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600,
                         float("inf"))
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                    float("inf"))
GRPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60,
                300, float("inf"))
AttemptKey = tuple[str, str, int]  # run id, node, attempt number
UNKNOWN_METHOD = "unknown"  # a method no service has: its name is the caller's, unbounded
KNOWN_METHODS = frozenset(
    f"/{service.full_name}/{method.name}"
    for module in (workflow_service_pb2, health_pb2, reflection_pb2)
    for service in module.DESCRIPTOR.services_by_name.values() for method in service.methods)
FINAL_RUN = frozenset({RunStatus.SUCCEEDED.value, RunStatus.FAILED.value,
                       RunStatus.CANCELLED.value})
# a node status that ends an attempt -> the attempt's status
ATTEMPT_END = {NodeStatus.SUCCEEDED.value: "succeeded", NodeStatus.FAILED.value: "failed",
               NodeStatus.RETRYING.value: "failed", NodeStatus.CANCELLED.value: "cancelled"}


@dataclass(frozen=True, slots=True)
class Sources:
    """What the scrape-time gauges read."""

    engine: Engine
    store: StateStore
    outbox: Outbox
    catalog: PlanCatalog
    clock: Clock


class Metrics:
    """The registry and its metrics; `on_event` is the engine's listener, `on_tick_created`
    the scheduler's, `on_email_attempt` the outbox sender's, `interceptor()` the gRPC
    server's."""

    def __init__(self, sources: Sources) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._sources = sources
        registry = self.registry
        self.runs_started = Counter(
            "flowplan_runs_started", "Runs admitted and started (RUNNING), resumed ones again",
            ["workflow", "trigger"], registry=registry)
        self.runs_finished = Counter(
            "flowplan_runs_finished", "Runs that reached a final status",
            ["workflow", "trigger", "status"], registry=registry)
        self.attempts_finished = Counter(
            "flowplan_node_attempts_finished", "Node attempts that ended, by their status",
            ["queue", "status"], registry=registry)
        self.attempt_duration = Histogram(
            "flowplan_node_attempt_duration_seconds",
            "Time from an attempt's start to its end", ["queue"], buckets=ATTEMPT_BUCKETS,
            registry=registry)
        self.scheduler_lag = Histogram(
            "flowplan_scheduler_lag_seconds",
            "How late a schedule tick's run is created after the tick's due time",
            buckets=SCHEDULER_LAG_BUCKETS, registry=registry)
        self.loop_lag = Histogram(
            "flowplan_event_loop_lag_seconds",
            "How much later than asked a timer of the daemon's event loop fires",
            buckets=LOOP_LAG_BUCKETS, registry=registry)
        self.grpc_handled = Counter(
            "flowplan_grpc_requests", "gRPC calls handled, by method and status code",
            ["method", "code"], registry=registry)
        self.grpc_latency = Histogram(
            "flowplan_grpc_request_duration_seconds",
            "gRPC call duration (a stream's: until it ends)", ["method"],
            buckets=GRPC_BUCKETS, registry=registry)
        self.email_attempts = Counter(
            "flowplan_outbox_send_attempts",
            "Attempts to send an e-mail of the outbox, by outcome: sent, retried (failed, tried"
            " again later) or failed (failed and given up)", ["outcome"], registry=registry)
        for outcome in AttemptOutcome:  # each at 0 from the start: rate() sees the first
            self.email_attempts.labels(outcome=outcome.value)
        ProcessCollector(registry=registry)  # the standard process_...: CPU, memory, fds
        PlatformCollector(registry=registry)
        registry.register(_StateCollector(sources))
        self._started: dict[AttemptKey, tuple[datetime, str]] = {}  # -> (start, queue)
        self._untimed: dict[AttemptKey, str] = {}  # an attempt that ends unstarted -> queue
        self._runs: dict[str, tuple[str, str]] = {}  # active run -> (workflow, trigger)
        self._ended: deque[StatusEvent] = deque()  # ends of attempts and runs, to count
        self._attempt_children: dict[tuple[str, str], Any] = {}
        self._duration_children: dict[str, Any] = {}

    def scrape(self) -> bytes:
        """The text format of every metric."""
        self.flush()
        return generate_latest(self.registry)

    # ---- the engine's events --------------------------------------------------------

    def on_event(self, event: StatusEvent) -> None:
        """Hear a status change. The ends of attempts and runs come between one node's end
        and the next one's start (the engine's handoff): they are only queued here, and
        counted by `flush` (at each scrape and every LOOP_PROBE_SECONDS). A start looks up
        its labels in the engine's memory now, while the run is there."""
        if event.node is None:
            if event.status in FINAL_RUN:
                self._ended.append(event)
            else:
                self._run_event(event)
        elif event.attempt is not None:
            if event.status == NodeStatus.RUNNING.value:
                self._started[event.run_id, event.node, event.attempt] = (
                    event.at, self._queue_of(event))
            elif event.status in ATTEMPT_END:
                if (event.run_id, event.node, event.attempt) not in self._started:
                    # never RUNNING here (its command could not be built, or adopted at a
                    # restart): its queue now, untimed
                    self._untimed[event.run_id, event.node, event.attempt] = (
                        self._queue_of(event))
                self._ended.append(event)
        if len(self._ended) >= MAX_QUEUED_EVENTS:
            self.flush()

    def flush(self) -> None:
        """Count the queued ends of attempts and runs."""
        while self._ended:
            event = self._ended.popleft()
            if event.node is None:
                workflow, trigger = self._runs.pop(event.run_id, ("unknown", "unknown"))
                self.runs_finished.labels(workflow, trigger, event.status.lower()).inc()
                continue
            assert event.attempt is not None
            key = (event.run_id, event.node, event.attempt)
            started = self._started.pop(key, None)
            if started is None:
                queue = self._untimed.pop(key, "unknown")
            else:
                queue = started[1]
                self._duration(queue).observe(
                    max(0.0, (event.at - started[0]).total_seconds()))
            self._finished_attempts(queue, ATTEMPT_END[event.status]).inc()

    def _queue_of(self, event: StatusEvent) -> str:
        labels = self._sources.engine.labels(event.run_id, event.node)
        return (labels.queue if labels is not None else None) or "unknown"

    def _run_event(self, event: StatusEvent) -> None:
        labels = self._sources.engine.labels(event.run_id)
        if labels is not None:
            self._runs[event.run_id] = (labels.workflow, labels.trigger)
        known = self._runs.get(event.run_id)
        if event.status == RunStatus.RUNNING.value and known is not None:
            self.runs_started.labels(*known).inc()

    def _finished_attempts(self, queue: str, status: str) -> Any:
        child = self._attempt_children.get((queue, status))
        if child is None:
            child = self._attempt_children[queue, status] = self.attempts_finished.labels(
                queue, status)
        return child

    def _duration(self, queue: str) -> Any:
        child = self._duration_children.get(queue)
        if child is None:
            child = self._duration_children[queue] = self.attempt_duration.labels(queue)
        return child

    # ---- the scheduler, the event loop, gRPC ----------------------------------------

    def on_tick_created(self, workflow: str, lag_seconds: float) -> None:
        self.scheduler_lag.observe(max(0.0, lag_seconds))

    def on_email_attempt(self, outcome: AttemptOutcome) -> None:
        """The outbox sender's listener: one attempt to send an e-mail ended."""
        self.email_attempts.labels(outcome=outcome.value).inc()

    async def watch_loop(self, stop: asyncio.Event) -> None:
        """Sample the event loop's lag until `stop`: how late a timer fires."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            asked = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LOOP_PROBE_SECONDS)
            if not stop.is_set():
                self.loop_lag.observe(max(0.0, loop.time() - asked - LOOP_PROBE_SECONDS))
                self.flush()

    def interceptor(self) -> GrpcMetrics:
        return GrpcMetrics(self)


class _StateCollector(Collector):
    """Gauges read at scrape time: queue slots, pending runs, backfills, the outbox, plans."""

    def __init__(self, sources: Sources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[GaugeMetricFamily]:
        engine = self._sources.engine
        in_use = GaugeMetricFamily("flowplan_queue_slots_in_use",
                                   "Attempts holding a slot of the resource queue",
                                   labels=["queue"])
        capacity = GaugeMetricFamily("flowplan_queue_slots",
                                     "The resource queue's concurrency", labels=["queue"])
        waiting = GaugeMetricFamily("flowplan_queue_nodes_waiting",
                                    "Node attempts waiting for a slot of the resource queue",
                                    labels=["queue"])
        for usage in engine.queue_usage():
            in_use.add_metric([usage.name], usage.running)
            capacity.add_metric([usage.name], usage.capacity)
            waiting.add_metric([usage.name], usage.waiting)
        yield from (in_use, capacity, waiting)
        pending = GaugeMetricFamily("flowplan_runs_pending",
                                    "Runs waiting for admission, by lane kind (workflow or"
                                    " backfill) and workflow", labels=["lane", "workflow"])
        for (lane, workflow), count in sorted(engine.pending_runs().items()):
            pending.add_metric([lane, workflow], count)
        yield pending
        backfills = GaugeMetricFamily("flowplan_backfills", "Backfills by status",
                                      labels=["status"])
        for status, count in sorted(self._sources.store.backfill_counts().items()):
            backfills.add_metric([status.lower()], count)
        yield backfills
        counts, oldest = self._sources.outbox.summary()
        messages = GaugeMetricFamily("flowplan_outbox_messages",
                                     "E-mail messages in the outbox by state",
                                     labels=["state"])
        for status in OutboxStatus:
            messages.add_metric([status.value.lower()], counts.get(status, 0))
        yield messages
        age = 0.0 if oldest is None else max(
            0.0, (self._sources.clock.now() - oldest).total_seconds())
        yield GaugeMetricFamily("flowplan_outbox_oldest_unsent_age_seconds",
                                "Age of the oldest message still to send (0: none)",
                                value=age)
        catalog = self._sources.catalog
        yield GaugeMetricFamily("flowplan_plans_active",
                                "Workflows with an active plan version (not removed)",
                                value=catalog.active())
        yield GaugeMetricFamily("flowplan_plans_skipped",
                                "Plan versions skipped as unreadable since the start",
                                value=catalog.skipped())


Continuation = Callable[[grpc.HandlerCallDetails],
                        Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]]


class GrpcMetrics(grpc.aio.ServerInterceptor):
    """Counts every call by method and final status code and times it. The outermost
    interceptor: calls the token interceptor refuses are counted too (UNAUTHENTICATED)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def intercept_service(self, continuation: Continuation,
                                details: grpc.HandlerCallDetails
                                ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        method: str = details.method
        if method not in KNOWN_METHODS:  # the caller's name: not a label value
            method = UNKNOWN_METHOD
        if handler is None:  # UNIMPLEMENTED, answered by gRPC itself
            self._metrics.grpc_handled.labels(method, grpc.StatusCode.UNIMPLEMENTED.name).inc()
            return None
        return _wrapped(handler, method, self._metrics)


def _wrapped(handler: grpc.RpcMethodHandler[Any, Any], method: str, metrics: Metrics
             ) -> grpc.RpcMethodHandler[Any, Any]:
    def done(started: float, context: Context, failed: BaseException | None) -> None:
        metrics.grpc_latency.labels(method).observe(time.perf_counter() - started)
        metrics.grpc_handled.labels(method, status_code(context, failed).name).inc()

    return observed(handler, time.perf_counter, done)
