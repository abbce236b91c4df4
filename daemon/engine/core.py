"""The engine's shared core: its errors and events, the in-memory state of runs, nodes and
admission lanes, its settings, and `EngineCore`, which holds them with the store, the clock
and the writes retried while the disk refuses them.

Every state change is committed to the `StateStore` before it is acted on: the attempt row
before the launch, the result before the downstream nodes start. Time comes from a `Clock`
and processes from a `Launcher`, so tests can replace both.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from flowplan.compiler.plan import NodePlan, Plan, QueuePlan, WorkflowPlan
from flowplan.daemon.domain import NodeStatus, Run, RunStatus
from flowplan.daemon.engine.clock import Clock
from flowplan.daemon.engine.commands import RunContext, secret_values
from flowplan.daemon.engine.launcher import Launcher, ProcessHandle
from flowplan.daemon.engine.queues import ResourceQueue, capacity_of
from flowplan.daemon.state.store import StateStore, StateWriteError

log = logging.getLogger("flowplan.engine")


WRITE_RETRY_FIRST, WRITE_RETRY_MAX = 0.05, 2.0  # seconds between commits the disk refuses
LOST = "lost: the process ended while the daemon was down and left no exit status"
LOST_UNWRITTEN = ("lost: the node ended but its exit status could not be written (exit.tmp is"
                  " empty: was the disk full?)")
EXIT_MEANINGS = {126: ": command not executable (see the log)",
                  127: ": command not found (see the log)",
                  137: " (killed by SIGKILL)", 143: " (terminated by SIGTERM)"}


class PlanProvider(Protocol):
    """Where the engine finds plan versions (the plan store, or memory for debug runs)."""

    def get(self, workflow: str, version: int) -> Plan: ...

    def latest(self, workflow: str) -> Plan | None: ...


class RunError(ValueError):
    """A request the engine refuses; `field` names the request field at fault."""

    def __init__(self, message: str, *, field: str, precondition: bool = False,
                 not_found: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.precondition = precondition
        self.not_found = not_found


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A status change, for watchers: `node` is None for the run itself."""

    run_id: str
    node: str | None
    status: str
    at: datetime
    attempt: int | None = None
    exit_code: int | None = None  # an attempt's end: its process's exit code, when it had one


LaneKey = tuple[str, str]
"""An admission lane: ("workflow", name) for its scheduled, manual and resumed runs, bounded
by `max_active_runs`; ("backfill", id) for a backfill's runs, bounded by its parallelism."""


def lane_of(workflow: str, backfill_id: str | None) -> LaneKey:
    return ("backfill", backfill_id) if backfill_id else ("workflow", workflow)


@dataclass(slots=True)
class NodeState:
    name: str
    plan: NodePlan
    plan_version: int
    status: NodeStatus
    queue: str
    queue_plan: QueuePlan | None  # its queue as its own plan version defines it; None: not there
    upstream: list[str] = field(default_factory=list)
    downstream: list[str] = field(default_factory=list)
    attempts: int = 0
    dispatched: bool = False
    handle: ProcessHandle | None = None


@dataclass(slots=True)
class RunState:
    header: Run
    graph: WorkflowPlan
    context: RunContext
    nodes: dict[str, NodeState]
    status: RunStatus
    secrets: list[str]
    lane: LaneKey
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    unfinished: int = 0  # nodes not in a final status: a run ends when it reaches 0
    _cancelled: asyncio.Future[None] | None = None  # see `cancelled`

    def set_node_status(self, node: NodeState, status: NodeStatus) -> None:
        """The one place a node's status changes in memory, keeping `unfinished` true."""
        self.unfinished += int(node.status.finished) - int(status.finished)
        node.status = status

    def set_cancel(self) -> None:
        """Set `cancel`, and with it the future of `cancelled`."""
        self.cancel.set()
        if self._cancelled is not None and not self._cancelled.done():
            self._cancelled.set_result(None)

    def cancelled(self) -> asyncio.Future[None]:
        """A future done once the run is cancelled, shared by its attempts' waits (never
        cancel it): `cancel.wait()` would cost a task per attempt, and its wake-ups."""
        if self._cancelled is None:
            self._cancelled = asyncio.get_running_loop().create_future()
            if self.cancel.is_set():
                self._cancelled.set_result(None)
        return self._cancelled


@dataclass(slots=True)
class QueuedRun:
    """A PENDING run waiting for its lane. `state` is built already for a run created here;
    a backfill's runs and runs found at start are loaded from the store when admitted."""

    run_id: str
    workflow: str
    plan_version: int
    lane: LaneKey
    state: RunState | None = None


@dataclass(slots=True)
class Lane:
    pending: deque[QueuedRun] = field(default_factory=deque)
    active: int = 0


@dataclass(frozen=True, slots=True)
class EngineSettings:
    state_dir: Path
    kill_grace_seconds: float = 10.0
    render_timeout_seconds: float = 10.0  # building one attempt's command from templates
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # (run id, node, attempt) -> the attempt's W3C trace context, set as its TRACEPARENT
    # (daemon/server/tracing.py); None: no TRACEPARENT, no tracing work
    traceparent: Callable[[str, str, int], str] | None = None


class EngineCore:
    """What the engine's parts share: its runs, lanes and queues in memory, the store, the
    clock, listeners, and writes retried while the disk refuses them. The parts build on it
    in this order: attempts.py (the node state machine), admission.py (lanes), recovery.py
    (a restart), engine.py (creating, cancelling, resuming and reading runs)."""

    def __init__(self, *, store: StateStore, plans: PlanProvider, launcher: Launcher,
                 clock: Clock, settings: EngineSettings) -> None:
        self._store = store
        self._plans = plans
        self._launcher = launcher
        self._clock = clock
        self._settings = settings
        self._runs: dict[str, RunState] = {}  # admitted runs that have not finished
        self._queued: dict[str, QueuedRun] = {}
        self._lanes: dict[LaneKey, Lane] = {}
        self._admitting: set[LaneKey] = set()
        self._done: dict[str, asyncio.Event] = {}
        self._queues: dict[str, ResourceQueue] = {}
        # when the plan whose settings sized each queue was published (None: never published)
        self._queues_sized_at: dict[str, datetime | None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: list[Callable[[StatusEvent], None]] = []
        self._durable: list[Callable[[StatusEvent], None]] = []
        self._stopping = False

    def subscribe(self, listener: Callable[[StatusEvent], None], *, durable: bool = False
                  ) -> Callable[[], None]:
        """Call `listener` with each status change, after it is committed; a `durable` one
        (the notification outbox, backfills) inside the commit of a run's end, a node's end
        or retry and an attempt's start, so that what it writes to the state store commits
        with the change or not at all (a crash cannot keep one and lose the other). A
        durable listener is quick, reads the store, and raises only StateWriteError."""
        listeners = self._durable if durable else self._listeners
        listeners.append(listener)
        return lambda: listeners.remove(listener)

    def _event(self, run_id: str, node: str | None, status: str, attempt: int | None = None,
               exit_code: int | None = None) -> StatusEvent:
        return StatusEvent(run_id, node, status, self._clock.now(), attempt, exit_code)

    def _emit(self, run_id: str, node: str | None, status: str, attempt: int | None = None,
              exit_code: int | None = None) -> None:
        """Tell every listener of a change committed already (its own commit)."""
        event = self._event(run_id, node, status, attempt, exit_code)
        self._tell(self._durable, event)
        self._tell(self._listeners, event)

    def _commit_with(self, write: Callable[[], object], event: StatusEvent) -> None:
        """`write` and what the durable listeners write on hearing `event`, in one commit;
        a StateWriteError of either rolls both back (the caller tries again)."""
        with self._store.transaction():
            write()
            for listener in list(self._durable):
                try:
                    listener(event)
                except StateWriteError:
                    raise
                except Exception:  # a bug of the listener's: the change goes on without it
                    log.exception("a listener of run %s failed", event.run_id)

    def _tell(self, listeners: Sequence[Callable[[StatusEvent], None]],
              event: StatusEvent) -> None:
        for listener in list(listeners):
            try:
                listener(event)
            except Exception:  # a listener must not stop the change it hears of halfway
                log.exception("a listener of run %s failed", event.run_id)

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("engine task failed", exc_info=task.exception())

    async def _durably(self, write: Callable[[], object], *, tried: bool = False) -> None:
        """Run `write` (store writes, then what follows from them) until its commit
        succeeds: while the state database cannot be written (a full disk), retry with
        backoff. The outcome waits in memory; nothing acts on it before it is committed."""
        delay = WRITE_RETRY_FIRST
        while True:
            if tried:
                await self._clock.sleep(delay)
                delay = min(delay * 2, WRITE_RETRY_MAX)
            tried = True
            try:
                write()
                return
            except StateWriteError as exc:
                log.debug("retrying in %.2fs: %s", delay, exc)

    def _now_or_later(self, write: Callable[[], object]) -> None:
        """`write` now or, when the state cannot be written, by `_durably` in a task of
        its own; for callers that cannot wait. `write` must be safe to run again."""
        try:
            write()
        except StateWriteError:
            self._spawn(self._durably(write, tried=True))

    def _record_process(self, run_id: str, node: str, number: int, pid: int,
                        pid_start: int | None) -> None:
        """Store the node's pid: best effort, since the attempt folder's `pid` file has it
        too (`LocalLauncher.recover` reads it when the store has none)."""
        try:
            self._store.set_attempt_process(run_id, node, number, pid, pid_start)
        except StateWriteError as exc:
            log.warning("run %s node %s attempt %d: pid %d not stored: %s", run_id, node,
                        number, pid, exc)

    def _content(self, plan: Plan) -> WorkflowPlan:
        if plan.content is None:
            raise RunError(f"workflow '{plan.workflow}' was removed (version {plan.version} is"
                           " a tombstone)", field="workflow", precondition=True)
        return plan.content

    def _state(self, run: Run, graph: WorkflowPlan, node_plans: Mapping[str, Plan]) -> RunState:
        """A run's state: `graph` its shape, `node_plans` the plan version each node runs."""
        workspace = self._settings.state_dir / "runs" / run.run_id / "workspace"
        context = RunContext(run_id=run.run_id, workflow=run.workflow, timezone=graph.timezone,
                             logical_time=run.logical_time,
                             data_interval_start=run.data_interval_start,
                             data_interval_end=run.data_interval_end, params=run.params,
                             workspace=workspace)
        plans = {id(plan): plan for plan in node_plans.values()}
        defined = {key: {n.name: n for n in self._content(plan).nodes}
                   for key, plan in plans.items()}
        nodes = {n.name: NodeState(name=n.name, plan=defined[id(node_plans[n.name])][n.name],
                                   plan_version=n.plan_version, status=n.status, queue=n.queue,
                                   queue_plan=self._content(node_plans[n.name]).queues.get(
                                       n.queue),
                                   attempts=len(n.attempts))
                 for n in run.nodes}
        for upstream, downstream in graph.edges():
            nodes[upstream].downstream.append(downstream)
            nodes[downstream].upstream.append(upstream)
        secrets = secret_values((n.plan for n in nodes.values()), context, graph.timezone)
        for plan in plans.values():
            self._size_queues(plan)
        return RunState(header=run, graph=graph, context=context, nodes=nodes,
                        status=run.status, secrets=secrets,
                        lane=lane_of(run.workflow, run.backfill_id),
                        unfinished=sum(not n.status.finished for n in nodes.values()))

    def _size_queues(self, plan: Plan) -> None:
        """Make the queues `plan` defines; a queue's capacity is the one of the most recently
        published plan seen, so that a run of an older version (resumed, recovered, of a
        backfill) never brings back a concurrency the repository has changed since."""
        assert plan.content is not None
        for name, queue in plan.content.queues.items():
            if name not in self._queues:
                self._queues[name] = ResourceQueue(name, capacity_of(queue))
            else:
                sized_at = self._queues_sized_at[name]
                if plan.published_at is None or (sized_at is not None
                                                 and plan.published_at <= sized_at):
                    continue
                self._queues[name].resize(capacity_of(queue))
            self._queues_sized_at[name] = plan.published_at

    def _lane(self, key: LaneKey) -> Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane()
        return lane

    def _signal_done(self, run_id: str) -> None:
        event = self._done.pop(run_id, None)
        if event is not None:
            event.set()

    def _set_run_status(self, run: RunState, status: RunStatus) -> None:
        event = self._event(run.header.run_id, None, status.value)
        self._commit_with(lambda: self._store.set_run_status(run.header.run_id, status,
                                                             at=event.at), event)
        run.status = status
        self._tell(self._listeners, event)

    def _set_node_status(self, run: RunState, nodes: Sequence[NodeState], status: NodeStatus, *,
                         skip_reason: str | None = None) -> None:
        self._store.set_node_status(run.header.run_id, [n.name for n in nodes], status,
                                    at=self._clock.now(),
                                    skip_reason=skip_reason)
        for node in nodes:
            run.set_node_status(node, status)
            self._emit(run.header.run_id, node.name, status.value)

    def _attempt_dir(self, run: RunState, node: str, number: int) -> Path:
        """<state>/runs/<run id>/<node>/<number>, beside the run's workspace: one join, not
        four (1.5 us instead of 4.5 here; twice an attempt, on the event loop)."""
        return run.context.workspace.parent.joinpath(node, str(number))

    def _attempt_started(self, run: RunState, node: NodeState) -> datetime:
        stored = self._store.get_run(run.header.run_id)
        assert stored is not None
        return stored.node(node.name).attempts[-1].started_at

    # ---- implemented by the parts that build on this one --------------------------------

    def _admit(self, key: LaneKey) -> None:
        """Start pending runs of lane `key`, oldest first, up to its limit (admission.py)."""
        raise NotImplementedError

    def _fail_unrecoverable(self, run: Run, reason: str) -> None:
        """Fail a run whose plan cannot be loaded any more (recovery.py)."""
        raise NotImplementedError
