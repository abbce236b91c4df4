"""The daemon's OpenTelemetry traces (docs/operations.md#traces); imported only when tracing
is on (daemon/server/tracing.py decides, and derives the ids).

A trace per run: the run's span (from its start to its final status) and, under it, a span
per node attempt with the run id, workflow, node, attempt, queue and exit code, a failed
attempt's span marked as an error. They are built from the engine's status events: an event
is only queued when heard (the engine's handoff from one node to the next does no tracing
work) and the spans are built a moment later, after the handoff; the SDK's
BatchSpanProcessor exports them from its own thread. Each span is built once its run or
attempt has ended, with the start time it had, and with ids derived from the run id, so a run
that outlives a restart continues its trace. And a span per gRPC call (`GrpcTracing`), joined
to the caller's trace when the call carries a `traceparent`.

The exporters come from the standard variables: OTEL_TRACES_EXPORTER (`otlp` by default, as
OTEL_EXPORTER_OTLP_PROTOCOL says: grpc or http/protobuf; `console`; any name an installed
package registers), OTEL_EXPORTER_OTLP_ENDPOINT and the others the exporters read themselves,
OTEL_SERVICE_NAME (default `flowplan`), OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_BSP_*.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from flowplan.daemon.domain import NodeStatus, RunStatus
from flowplan.daemon.engine.core import StatusEvent
from flowplan.daemon.engine.engine import Engine
from flowplan.daemon.server.config import UsageError
from flowplan.daemon.server.observe import Context, observed, status_code
from flowplan.daemon.server.tracing import attempt_span_id, run_span_id, trace_id
from flowplan.daemon.state.store import StateStore

log = logging.getLogger("flowplan.daemon")

FLUSH_SECONDS = 0.1  # how long after an end its span is built (after the engine's handoff)
SLICE = 8  # spans built at once (~25 us each), then the event loop's other work goes first
MAX_QUEUED_EVENTS = 10_000  # built at once when this many wait
EXPORTER_GROUP = "opentelemetry_traces_exporter"  # the entry points exporters register
PROTOCOLS = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
FINAL_RUN = {RunStatus.SUCCEEDED.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value}
# a node status that ends an attempt -> the attempt's status
ATTEMPT_END = {NodeStatus.SUCCEEDED.value: "succeeded", NodeStatus.FAILED.value: "failed",
               NodeStatus.RETRYING.value: "failed", NodeStatus.CANCELLED.value: "cancelled"}
AttemptKey = tuple[str, str, int]  # run id, node, attempt number
SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)
KEPT = (Decision.RECORD_AND_SAMPLE,)


def exporters_from(environ: Mapping[str, str]) -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER names (a comma-separated list); UsageError naming
    the variable for a name no installed package provides."""
    names = [name.strip().lower() for name in
             environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc").strip().lower()
    if protocol not in PROTOCOLS:
        variable = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
                    if environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    else "OTEL_EXPORTER_OTLP_PROTOCOL")
        raise UsageError(f"{variable}={protocol!r} is not a protocol of the OTLP trace"
                         f" exporter: use {' or '.join(PROTOCOLS)}")
    available = {point.name: point for point in entry_points(group=EXPORTER_GROUP)}
    exporters: list[SpanExporter] = []
    for name in names:
        if name in ("", "none"):
            continue
        point = available.get(PROTOCOLS[protocol] if name == "otlp" else name)
        if point is None:
            raise UsageError(
                f"OTEL_TRACES_EXPORTER names {name!r}, which no installed package provides:"
                f" use one of {', '.join([*sorted(available), 'none'])} (the `otel` extra"
                " installs otlp and console)")
        exporters.append(point.load()())
    return exporters


class DerivedIds(IdGenerator):
    """Random ids, except the next ones a span of a run is given (`use`): derived ones."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._trace_id: int | None = None
        self._span_id: int | None = None

    def use(self, trace_id: int | None, span_id: int) -> None:
        self._trace_id, self._span_id = trace_id, span_id

    def generate_span_id(self) -> int:
        span_id, self._span_id = self._span_id, None
        return span_id if span_id is not None else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        trace_id, self._trace_id = self._trace_id, None
        return trace_id if trace_id is not None else self._random.generate_trace_id()


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000_000)


class Tracing:
    """The tracer provider and the spans of runs and attempts; `on_event` is the engine's
    listener (`follow`), `interceptor()` the gRPC server's."""

    def __init__(self, processors: Sequence[SpanProcessor]) -> None:
        self._ids = DerivedIds()
        # the SDK reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES from the process's
        # environment; a name from either wins, else flowplan names itself
        resource = Resource.create({})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "flowplan"}))
        self.provider = TracerProvider(resource=resource, id_generator=self._ids)
        for processor in processors:
            self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("flowplan.daemon")
        self._engine: Engine | None = None
        self._store: StateStore | None = None
        self._runs: dict[str, tuple[str, str, datetime | None]] = {}  # workflow, trigger, start
        self._started: dict[AttemptKey, tuple[datetime, str]] = {}  # -> (start, queue)
        self._ended: deque[tuple[StatusEvent, str | None]] = deque()  # with the node's queue
        self._flush: asyncio.Handle | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Tracing:
        """Exporting as the OTEL_* variables say, each exporter behind a BatchSpanProcessor
        (its own thread: nothing on the event loop waits for the collector)."""
        return cls([BatchSpanProcessor(exporter) for exporter in exporters_from(environ)])

    def follow(self, engine: Engine, store: StateStore) -> None:
        """Build the spans of `engine`'s runs (`store`: the start of a run or attempt that
        began before this daemon did)."""
        self._engine, self._store = engine, store
        engine.subscribe(self.on_event)

    async def shutdown(self) -> None:
        """Build what is queued and export it (off the event loop), then stop the exporters."""
        self.flush()
        await asyncio.to_thread(self.provider.shutdown)

    # ---- the engine's events --------------------------------------------------------

    def on_event(self, event: StatusEvent) -> None:
        """Hear a status change: a start is noted (with its labels, from the engine's memory
        while the run is there); an end is queued, its span built by `flush`, soon."""
        engine = self._engine
        if event.node is None:
            if event.status == RunStatus.RUNNING.value or event.status in FINAL_RUN:
                if event.run_id not in self._runs and engine is not None:
                    labels = engine.labels(event.run_id)
                    if labels is not None:
                        start = event.at if event.status == RunStatus.RUNNING.value else None
                        self._runs[event.run_id] = (labels.workflow, labels.trigger, start)
                if event.status in FINAL_RUN:
                    self._queue(event, None)
        elif event.attempt is not None:
            if event.status == NodeStatus.RUNNING.value:
                labels = engine.labels(event.run_id, event.node) if engine else None
                self._started[event.run_id, event.node, event.attempt] = (
                    event.at, (labels.queue if labels else None) or "unknown")
            elif event.status in ATTEMPT_END:
                queue = None
                if (event.run_id, event.node, event.attempt) not in self._started:
                    labels = engine.labels(event.run_id, event.node) if engine else None
                    queue = labels.queue if labels else None
                self._queue(event, queue)

    def _queue(self, event: StatusEvent, queue: str | None) -> None:
        self._ended.append((event, queue))
        if len(self._ended) >= MAX_QUEUED_EVENTS:
            self.flush()
        elif self._flush is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._flush = loop.call_later(FLUSH_SECONDS, self._build_slice)

    def flush(self) -> None:
        """Build the spans of all the queued ends."""
        self._build(len(self._ended))

    def _build_slice(self) -> None:
        """Build up to SLICE spans; the rest after what else the event loop has to do (a
        node's end waits for at most one slice, not for the whole queue)."""
        self._flush = None
        self._build(SLICE)
        if self._ended and self._flush is None:
            self._flush = asyncio.get_running_loop().call_soon(self._build_slice)

    def _build(self, count: int) -> None:
        if self._flush is not None and count >= len(self._ended):
            self._flush.cancel()
            self._flush = None
        for _ in range(min(count, len(self._ended))):
            event, queue = self._ended.popleft()
            try:
                if event.node is None:
                    self._run_span(event)
                else:
                    self._attempt_span(event, queue)
            except Exception:  # a span lost, never the daemon
                log.exception("cannot build the trace span of run %s", event.run_id)

    def _run_span(self, event: StatusEvent) -> None:
        workflow, trigger, start = self._runs.pop(event.run_id, ("unknown", "unknown", None))
        if start is None:  # started before this daemon did
            stored = self._store.get_run(event.run_id) if self._store else None
            if stored is not None:
                workflow, trigger = stored.workflow, stored.trigger.value
                start = stored.started_at or stored.created_at
        self._ids.use(trace_id(event.run_id), run_span_id(event.run_id))
        span = self.tracer.start_span(
            f"run {workflow}", context=None, kind=SpanKind.INTERNAL,
            start_time=_ns(start or event.at), attributes={
                "flowplan.run_id": event.run_id, "flowplan.workflow": workflow,
                "flowplan.trigger": trigger, "flowplan.status": event.status.lower()})
        if event.status == RunStatus.FAILED.value:
            span.set_status(Status(StatusCode.ERROR, "the run failed"))
        span.end(end_time=_ns(event.at))

    def _attempt_span(self, event: StatusEvent, queue: str | None) -> None:
        assert event.node is not None and event.attempt is not None
        key = (event.run_id, event.node, event.attempt)
        started = self._started.pop(key, None)
        start = started[0] if started else self._stored_start(key)
        queue = started[1] if started else queue or "unknown"
        run = self._runs.get(event.run_id)
        workflow = run[0] if run else (self._engine_workflow(event.run_id) or "unknown")
        status = ATTEMPT_END[event.status]
        attributes: dict[str, str | int] = {
            "flowplan.run_id": event.run_id, "flowplan.workflow": workflow,
            "flowplan.node": event.node, "flowplan.attempt": event.attempt,
            "flowplan.queue": queue, "flowplan.status": status}
        if event.exit_code is not None:
            attributes["flowplan.exit_code"] = event.exit_code
        run_trace = trace_id(event.run_id)
        # sampled as its run is: the sampler decides a run's root span by its trace id
        sampled = self.provider.sampler.should_sample(
            None, run_trace, "run").decision in KEPT
        parent = trace.set_span_in_context(NonRecordingSpan(SpanContext(
            run_trace, run_span_id(event.run_id), is_remote=False,
            trace_flags=SAMPLED if sampled else trace.TraceFlags(trace.TraceFlags.DEFAULT))))
        self._ids.use(None, attempt_span_id(*key))
        span = self.tracer.start_span(f"node {event.node}", context=parent,
                                      kind=SpanKind.INTERNAL,
                                      start_time=_ns(start or event.at), attributes=attributes)
        if status == "failed":
            span.set_status(Status(StatusCode.ERROR, "the attempt failed" + (
                f": exit code {event.exit_code}" if event.exit_code is not None else "")))
        span.end(end_time=_ns(event.at))

    def _stored_start(self, key: AttemptKey) -> datetime | None:
        """An attempt begun before this daemon started (adopted at the restart)."""
        stored = self._store.get_run(key[0]) if self._store else None
        if stored is None:
            return None
        try:
            attempts = stored.node(key[1]).attempts
        except KeyError:
            return None
        return next((a.started_at for a in attempts if a.number == key[2]), None)

    def _engine_workflow(self, run_id: str) -> str | None:
        labels = self._engine.labels(run_id) if self._engine else None
        return labels.workflow if labels else None

    def interceptor(self) -> GrpcTracing:
        return GrpcTracing(self.tracer)


# ---- gRPC ---------------------------------------------------------------------------

Continuation = Callable[[grpc.HandlerCallDetails],
                        Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]]
PROPAGATOR = TraceContextTextMapPropagator()


class GrpcTracing(grpc.aio.ServerInterceptor):
    """A SERVER span per gRPC call, named `package.Service/Method`, with the rpc.* attributes
    and its status code; a child of the caller's span when the call carries `traceparent`."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    async def intercept_service(self, continuation: Continuation,
                                details: grpc.HandlerCallDetails
                                ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None:
            return None
        metadata = {key: value for key, value in (details.invocation_metadata or ())
                    if isinstance(value, str)}
        return _traced(handler, details.method, metadata, self._tracer)


def _traced(handler: grpc.RpcMethodHandler[Any, Any], method: str, metadata: dict[str, str],
            tracer: trace.Tracer) -> grpc.RpcMethodHandler[Any, Any]:
    name = method.lstrip("/")
    service, _, rpc = name.partition("/")

    def start() -> trace.Span:
        return tracer.start_span(name, context=PROPAGATOR.extract(metadata),
                                 kind=SpanKind.SERVER, attributes={
                                     "rpc.system": "grpc", "rpc.service": service,
                                     "rpc.method": rpc})

    def end(span: trace.Span, context: Context, failed: BaseException | None) -> None:
        code = status_code(context, failed)
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            span.set_status(Status(StatusCode.ERROR, code.name))
        span.end()

    return observed(handler, start, end)
