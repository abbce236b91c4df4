"""The engine: creates runs, starts each node when its trigger holds, runs attempts with
retries, timeouts and resource queues, cancels, resumes, and recovers after a crash.

Every state change is committed to the `StateStore` before it is acted on: the attempt row
before the launch, the result before the downstream nodes start. Time comes from a `Clock`
and processes from a `Launcher`, so tests can replace both.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from compiler.plan import NodePlan, Plan, QueuePlan, WorkflowPlan
from daemon import ids
from daemon.domain import (
    Attempt,
    AttemptStatus,
    NodeRun,
    NodeStatus,
    Run,
    RunStatus,
    RunTrigger,
)
from daemon.engine.clock import Clock
from daemon.engine.commands import (
    CommandError,
    RunContext,
    attempt_env,
    build_command,
    mask,
    process_problem,
    secret_values,
)
from daemon.engine.launcher import (
    Launcher,
    LaunchSpec,
    ProcessHandle,
    ProcessLostError,
    Recovered,
    process_start,
)
from daemon.engine.queues import ResourceQueue, capacity_of
from daemon.engine.resume import ResumeError, ResumePlan, plan_resume
from daemon.engine.spark import attempt_application_id
from daemon.engine.triggers import Readiness, readiness
from daemon.state.store import ClosedAttempt, StateStore, StateWriteError

log = logging.getLogger("flowplan.engine")

WRITE_RETRY_FIRST, WRITE_RETRY_MAX = 0.05, 2.0  # seconds between commits the disk refuses
LOST = "lost: the process ended while the daemon was down and left no exit status"
LOST_UNWRITTEN = ("lost: the node ended but its exit status could not be written (exit.tmp is"
                  " empty: was the disk full?)")
_EXIT_MEANINGS = {126: ": command not executable (see the log)",
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


LaneKey = tuple[str, str]
"""An admission lane: ("workflow", name) for its scheduled, manual and resumed runs, bounded
by `max_active_runs`; ("backfill", id) for a backfill's runs, bounded by its parallelism."""


def lane_of(workflow: str, backfill_id: str | None) -> LaneKey:
    return ("backfill", backfill_id) if backfill_id else ("workflow", workflow)


@dataclass(frozen=True, slots=True)
class ResumeAnswer:
    run_id: str | None  # None for a dry run
    node_names: tuple[str, ...]
    plan_version: int = 0  # the version the re-run nodes use


@dataclass(slots=True)
class _Node:
    name: str
    plan: NodePlan
    plan_version: int
    status: NodeStatus
    queue: str
    upstream: list[str] = field(default_factory=list)
    downstream: list[str] = field(default_factory=list)
    attempts: int = 0
    dispatched: bool = False
    handle: ProcessHandle | None = None


@dataclass(slots=True)
class _Run:
    header: Run
    graph: WorkflowPlan
    context: RunContext
    nodes: dict[str, _Node]
    status: RunStatus
    secrets: list[str]
    lane: LaneKey
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    unfinished: int = 0  # nodes not in a final status: a run ends when it reaches 0

    def set_node_status(self, node: _Node, status: NodeStatus) -> None:
        """The one place a node's status changes in memory, keeping `unfinished` true."""
        self.unfinished += int(node.status.finished) - int(status.finished)
        node.status = status


@dataclass(slots=True)
class _Queued:
    """A PENDING run waiting for its lane. `state` is built already for a run created here;
    a backfill's runs and runs found at start are loaded from the store when admitted."""

    run_id: str
    workflow: str
    plan_version: int
    lane: LaneKey
    state: _Run | None = None


@dataclass(slots=True)
class _Lane:
    pending: deque[_Queued] = field(default_factory=deque)
    active: int = 0


@dataclass(frozen=True, slots=True)
class EngineSettings:
    state_dir: Path
    kill_grace_seconds: float = 10.0
    render_timeout_seconds: float = 10.0  # building one attempt's command from templates
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


class Engine:
    def __init__(self, *, store: StateStore, plans: PlanProvider, launcher: Launcher,
                 clock: Clock, settings: EngineSettings) -> None:
        self._store = store
        self._plans = plans
        self._launcher = launcher
        self._clock = clock
        self._settings = settings
        self._runs: dict[str, _Run] = {}  # admitted runs that have not finished
        self._queued: dict[str, _Queued] = {}
        self._lanes: dict[LaneKey, _Lane] = {}
        self._admitting: set[LaneKey] = set()
        self._done: dict[str, asyncio.Event] = {}
        self._queues: dict[str, ResourceQueue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: list[Callable[[StatusEvent], None]] = []
        self._stopping = False

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Recover every run that was active when the last process stopped."""
        now = self._clock.now()
        for run in self._store.runs_with_status([RunStatus.RUNNING]):
            try:
                state = self._load_run(run)
            except Exception as exc:  # a plan that vanished or was tampered with
                log.error("run %s cannot be recovered: %s", run.run_id, exc)
                self._fail_unrecoverable(run, str(exc))
                continue
            self._runs[run.run_id] = state
            self._lane(state.lane).active += 1
            if self._store.cancel_requested(run.run_id):
                self._apply_cancel(state)  # cancelled before the crash: finish the cancel
            self._recover_nodes(state, run)
        pending = self._store.runs_with_status([RunStatus.PENDING], with_nodes=False)
        cancelled = [r.run_id for r in pending if self._store.cancel_requested(r.run_id)]
        if cancelled:
            self._store.cancel_queued(cancelled, at=now)
        skip = set(cancelled)
        pending.sort(key=lambda r: (r.created_at, r.logical_time, r.run_id))
        self._enqueue(_Queued(run_id=r.run_id, workflow=r.workflow, plan_version=r.plan_version,
                              lane=lane_of(r.workflow, r.backfill_id))
                      for r in pending if r.run_id not in skip)

    async def stop(self) -> None:
        """Stop driving runs. Node processes keep running; the next start adopts them."""
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def subscribe(self, listener: Callable[[StatusEvent], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, run_id: str, node: str | None, status: str, attempt: int | None = None
              ) -> None:
        event = StatusEvent(run_id, node, status, self._clock.now(), attempt)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a listener must not stop the change it hears of halfway
                log.exception("a listener of run %s failed", run_id)

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("engine task failed", exc_info=task.exception())

    # ---- writes the disk refuses -------------------------------------------------------

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

    def submit(self, runs: Sequence[Run], *, plan: Plan | None = None) -> None:
        """Queue stored PENDING runs in their lanes and start what the lanes allow. With
        `plan` (the runs' plan) their state is built now; without, when each is admitted."""
        content = self._content(plan) if plan is not None else None
        node_plans = {n.name: n for n in content.nodes} if content is not None else {}
        self._enqueue(
            _Queued(run_id=r.run_id, workflow=r.workflow, plan_version=r.plan_version,
                    lane=lane_of(r.workflow, r.backfill_id),
                    state=(self._state(r, content, node_plans) if content is not None
                           else None))
            for r in runs)

    def _enqueue(self, queued: Iterable[_Queued]) -> None:
        lanes: dict[LaneKey, None] = {}
        for item in queued:
            self._lane(item.lane).pending.append(item)
            self._queued[item.run_id] = item
            lanes[item.lane] = None
            self._emit(item.run_id, None, RunStatus.PENDING.value)
        for key in lanes:
            self._admit(key)

    def _lane(self, key: LaneKey) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        return lane

    def _content(self, plan: Plan) -> WorkflowPlan:
        if plan.content is None:
            raise RunError(f"workflow '{plan.workflow}' was removed (version {plan.version} is"
                           " a tombstone)", field="workflow", precondition=True)
        return plan.content

    def _state(self, run: Run, graph: WorkflowPlan, node_plans: Mapping[str, NodePlan]) -> _Run:
        workspace = self._settings.state_dir / "runs" / run.run_id / "workspace"
        context = RunContext(run_id=run.run_id, workflow=run.workflow, timezone=graph.timezone,
                             logical_time=run.logical_time,
                             data_interval_start=run.data_interval_start,
                             data_interval_end=run.data_interval_end, params=run.params,
                             workspace=workspace)
        nodes = {n.name: _Node(name=n.name, plan=node_plans[n.name], plan_version=n.plan_version,
                               status=n.status, queue=n.queue, attempts=len(n.attempts))
                 for n in run.nodes}
        for upstream, downstream in graph.edges():
            nodes[upstream].downstream.append(downstream)
            nodes[downstream].upstream.append(upstream)
        secrets = secret_values((n.plan for n in nodes.values()), context, graph.timezone)
        for queue_name, queue in graph.queues.items():
            if queue_name not in self._queues:
                self._queues[queue_name] = ResourceQueue(queue_name, capacity_of(queue))
            else:
                self._queues[queue_name].resize(capacity_of(queue))
        return _Run(header=run, graph=graph, context=context, nodes=nodes, status=run.status,
                    secrets=secrets, lane=lane_of(run.workflow, run.backfill_id),
                    unfinished=sum(not n.status.finished for n in nodes.values()))

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

    def _begin(self, state: _Run) -> None:
        """An admitted run: RUNNING, and its first nodes started."""
        if state.status is RunStatus.PENDING:
            self._set_run_status(state, RunStatus.RUNNING)
        self._evaluate(state, [n for n, s in state.nodes.items()
                               if s.status is NodeStatus.PENDING])
        self._maybe_finish(state)

    def _lane_limit(self, key: LaneKey, head: _Queued) -> int:
        if key[0] == "backfill":
            return self._store.backfill_parallelism(key[1]) or 1
        if head.state is not None:
            return head.state.graph.max_active_runs
        try:
            content = self._plans.get(head.workflow, head.plan_version).content
        except Exception:
            return 1  # admission fails the run with the reason
        return content.max_active_runs if content is not None else 1

    def _load_queued(self, head: _Queued) -> _Run:
        run = self._store.get_run(head.run_id)
        if run is None:
            raise KeyError(f"run {head.run_id} is missing from the state store")
        return self._load_run(run)

    def _fail_queued(self, head: _Queued, reason: str) -> None:
        run = self._store.get_run(head.run_id)
        if run is not None:
            self._fail_unrecoverable(run, reason)
        self._emit(head.run_id, None, RunStatus.FAILED.value)
        self._signal_done(head.run_id)

    def _signal_done(self, run_id: str) -> None:
        event = self._done.pop(run_id, None)
        if event is not None:
            event.set()

    # ---- the node state machine ---------------------------------------------------------

    def _evaluate(self, run: _Run, names: Sequence[str]) -> None:
        """Start or skip pending nodes among `names` whose trigger is decided."""
        work = list(reversed(names))
        while work:
            node = run.nodes[work.pop()]
            if node.status is not NodeStatus.PENDING or node.dispatched:
                continue
            decision = readiness(node.plan.trigger,
                                 [run.nodes[u].status for u in node.upstream])
            if decision is Readiness.READY:
                node.dispatched = True
                self._spawn(self._execute(run, node, None))
            elif decision is Readiness.SKIP:
                reason = f"trigger {node.plan.trigger} cannot hold over its upstreams"
                self._set_node_status(run, [node], NodeStatus.SKIPPED, skip_reason=reason)
                work.extend(reversed(node.downstream))

    async def _execute(self, run: _Run, node: _Node, recovered: Recovered | None,
                       retry_at: datetime | None = None) -> None:
        """Attempts of one node until it succeeds, fails for good or is cancelled."""
        queue = self._queues.get(node.queue) or self._queues.setdefault(
            node.queue, ResourceQueue(node.queue, 1))  # unknown queue: fails in _attempt
        try:
            if retry_at is not None:
                await self._retry_delay(run, retry_at)
            if run.cancel.is_set() and recovered is not None:
                await self._attempt(run, node, recovered)  # closes the attempt left RUNNING
            while not run.cancel.is_set():
                if recovered is not None and recovered.handle is not None:
                    queue.take()
                else:
                    await queue.acquire(run.lane)
                try:
                    outcome = await self._attempt(run, node, recovered)
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception as exc:  # a bug must fail one node, never stall its run
                    log.exception("run %s node %s: internal error", run.header.run_id,
                                  node.name)
                    outcome = await self._finish(run, node, max(node.attempts, 1), None,
                                                 f"internal error: {exc}", retryable=False)
                finally:
                    queue.release()
                recovered = None
                if outcome is None:
                    break  # final status already written
                await self._retry_delay(run, outcome)
            if run.cancel.is_set() and not node.status.finished:
                await self._durably(
                    lambda: self._set_node_status(run, [node], NodeStatus.CANCELLED))
        finally:
            if not self._stopping:
                self._now_or_later(lambda: self._after_final(run, node))

    async def _retry_delay(self, run: _Run, until: datetime) -> None:
        delay = (until - self._clock.now()).total_seconds()
        sleeper = asyncio.ensure_future(self._clock.sleep(delay))
        cancelled = asyncio.ensure_future(run.cancel.wait())
        try:
            await asyncio.wait({sleeper, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            cancelled.cancel()

    async def _attempt(self, run: _Run, node: _Node, recovered: Recovered | None
                       ) -> datetime | None:
        """One attempt. Returns when the next attempt is due, or None when the node is final."""
        if run.cancel.is_set():
            if recovered is not None and recovered.handle is None:  # its row is RUNNING
                await self._finish(run, node, node.attempts, recovered.exit_code, "cancelled",
                                   cancelled=True)
            if recovered is None or recovered.handle is None:
                return None
        plan = node.plan
        if recovered is None or recovered.never_started:
            number = node.attempts + 1 if recovered is None else node.attempts
            started = self._clock.now()
            attempt_dir = self._attempt_dir(run, node.name, number)
            variables = run.context.variables(node.name, number)
            attempt = Attempt(run_id=run.header.run_id, node=node.name, number=number,
                              plan_version=node.plan_version, status=AttemptStatus.RUNNING,
                              started_at=started, log_path=str(attempt_dir / "log"))
            try:
                queue_plan = run.graph.queues.get(node.queue)
                if queue_plan is None:
                    raise CommandError(f"queue '{node.queue}' is not defined in plan version"
                                       f" {run.header.plan_version}")
                argv, node_env = await self._build_command(plan, queue_plan, variables,
                                                           attempt_dir)
                env = attempt_env(self._settings.base_env, variables, node_env,
                                  workspace=run.context.workspace,
                                  sqlite_db=self._settings.state_dir / "sqlite"
                                  / f"{run.header.workflow}.sqlite3")
                if (problem := process_problem(argv, node_env, env)) is not None:
                    raise CommandError(problem)
            except CommandError as exc:
                await self._durably(lambda: self._store.start_attempt(attempt))
                node.attempts = number
                return await self._finish(run, node, number, None,
                                          mask(str(exc), run.secrets), retryable=False)
            # intent first, then the launch (on a full disk: once it can be written)
            await self._durably(lambda: self._store.start_attempt(attempt))
            node.attempts = number
            run.set_node_status(node, NodeStatus.RUNNING)
            self._emit(run.header.run_id, node.name, NodeStatus.RUNNING.value, number)
            try:
                handle = await self._launcher.launch(LaunchSpec(
                    argv=argv, env=env, cwd=run.context.workspace, attempt_dir=attempt_dir))
            except OSError as exc:  # e.g. a queue's python interpreter that does not exist
                return await self._finish(run, node, number, None,
                                          f"cannot start {argv[0]}: {exc.strerror or exc}")
            self._record_process(run.header.run_id, node.name, number, handle.pid,
                                 process_start(handle.pid))
            timeout = plan.timeout_seconds
        elif recovered.handle is not None:
            handle = recovered.handle
            number = node.attempts
            self._record_process(run.header.run_id, node.name, number, handle.pid,
                                 process_start(handle.pid))  # maybe never stored
            elapsed = (self._clock.now() - self._attempt_started(run, node)).total_seconds()
            timeout = (None if plan.timeout_seconds is None
                       else max(0.0, plan.timeout_seconds - elapsed))
        else:
            number = node.attempts
            if recovered.lost:
                unwritten = (self._attempt_dir(run, node.name, number) / "exit.tmp").exists()
                return await self._finish(run, node, number, None,
                                          LOST_UNWRITTEN if unwritten else LOST)
            return await self._finish(run, node, number, recovered.exit_code, None)
        node.handle = handle
        try:
            code, reason = await self._wait(run, handle, timeout)
        except ProcessLostError as lost:
            return await self._finish(run, node, number, None, str(lost))
        finally:
            node.handle = None
        if reason == "cancelled":
            await self._finish(run, node, number, code, "cancelled", cancelled=True)
            return None
        if reason == "timeout":
            return await self._finish(run, node, number, code,
                                      f"timed out after {plan.timeout_seconds:g}s")
        return await self._finish(run, node, number, code, None)

    async def _build_command(self, plan: NodePlan, queue: QueuePlan,
                             variables: Mapping[str, Any], attempt_dir: Path
                             ) -> tuple[tuple[str, ...], dict[str, str]]:
        """`build_command` off the event loop (templates render there), within a time limit."""
        build = functools.partial(
            build_command, plan, queue, variables,
            sources_dir=self._settings.state_dir / "sources", attempt_dir=attempt_dir)
        try:
            return await self._clock.run_bounded(build, self._settings.render_timeout_seconds)
        except TimeoutError:
            raise CommandError(f"rendering the node's templates took longer than"
                               f" {self._settings.render_timeout_seconds:g}s") from None

    async def _wait(self, run: _Run, handle: ProcessHandle, timeout: float | None
                    ) -> tuple[int, str | None]:
        """Wait for the process; on timeout or cancel, TERM its group, then KILL after grace."""
        waiter = asyncio.ensure_future(handle.wait())
        others: list[asyncio.Future[Any]] = [asyncio.ensure_future(run.cancel.wait())]
        if timeout is not None:
            others.append(asyncio.ensure_future(self._clock.sleep(timeout)))
        try:
            await asyncio.wait({waiter, *others}, return_when=asyncio.FIRST_COMPLETED)
            if waiter.done():
                return waiter.result(), None
            reason = "cancelled" if others[0].done() else "timeout"
            handle.signal_group(signal.SIGTERM)
            grace = asyncio.ensure_future(self._clock.sleep(self._settings.kill_grace_seconds))
            await asyncio.wait({waiter, grace}, return_when=asyncio.FIRST_COMPLETED)
            grace.cancel()
            if not waiter.done():
                handle.signal_group(signal.SIGKILL)
            return await waiter, reason
        finally:
            for other in others:
                other.cancel()
            if not waiter.done():  # the engine is stopping: the process lives on
                waiter.cancel()

    async def _finish(self, run: _Run, node: _Node, number: int, code: int | None,
                      error: str | None, *, retryable: bool = True, cancelled: bool = False
                      ) -> datetime | None:
        """Record an attempt's end and the node's next status in one commit (on a full
        disk: kept here and retried until it is written; nothing acts on it before)."""
        now = self._clock.now()
        plan = node.plan
        succeeded = code == 0 and error is None
        next_at: datetime | None = None
        if cancelled:
            attempt_status, node_status = AttemptStatus.CANCELLED, NodeStatus.CANCELLED
        elif succeeded:
            attempt_status, node_status = AttemptStatus.SUCCEEDED, NodeStatus.SUCCEEDED
        else:
            attempt_status = AttemptStatus.FAILED
            if retryable and number <= plan.retries and not run.cancel.is_set():
                delay = plan.retry_delay_seconds * plan.retry_backoff ** (number - 1)
                next_at = now + timedelta(seconds=delay)
                node_status = NodeStatus.RETRYING
            else:
                node_status = NodeStatus.FAILED
        if error is None and code not in (0, None):
            error = f"exited with code {code}{_EXIT_MEANINGS.get(code, '')}"
        application_id = attempt_application_id(run.graph.queues.get(node.queue),
                                                self._attempt_dir(run, node.name, number))
        await self._durably(lambda: self._store.finish_attempt(
            run.header.run_id, node.name, number, status=attempt_status, at=now,
            exit_code=code, error=error, node_status=node_status, next_attempt_at=next_at,
            spark_application_id=application_id))
        run.set_node_status(node, node_status)
        self._emit(run.header.run_id, node.name, node_status.value, number)
        return next_at

    def _after_final(self, run: _Run, node: _Node) -> None:
        if node.status.finished:
            self._evaluate(run, node.downstream)
        self._maybe_finish(run)

    def _maybe_finish(self, run: _Run) -> None:
        if run.status.finished or run.status is RunStatus.PENDING:
            return
        if run.unfinished:
            return
        if run.cancel.is_set():
            status = RunStatus.CANCELLED
        elif any(n.status is NodeStatus.FAILED for n in run.nodes.values()):
            status = RunStatus.FAILED
        else:
            status = RunStatus.SUCCEEDED
        self._set_run_status(run, status)
        del self._runs[run.header.run_id]
        self._signal_done(run.header.run_id)
        lane = self._lanes.get(run.lane)
        if lane is not None:
            lane.active -= 1
            self._admit(run.lane)

    def _set_run_status(self, run: _Run, status: RunStatus) -> None:
        self._store.set_run_status(run.header.run_id, status, at=self._clock.now())
        run.status = status
        self._emit(run.header.run_id, None, status.value)

    def _set_node_status(self, run: _Run, nodes: Sequence[_Node], status: NodeStatus, *,
                         skip_reason: str | None = None) -> None:
        self._store.set_node_status(run.header.run_id, [n.name for n in nodes], status,
                                    at=self._clock.now(),
                                    skip_reason=skip_reason)
        for node in nodes:
            run.set_node_status(node, status)
            self._emit(run.header.run_id, node.name, status.value)

    def _attempt_dir(self, run: _Run, node: str, number: int) -> Path:
        return self._settings.state_dir / "runs" / run.header.run_id / node / str(number)

    def _attempt_started(self, run: _Run, node: _Node) -> datetime:
        stored = self._store.get_run(run.header.run_id)
        assert stored is not None
        return stored.node(node.name).attempts[-1].started_at

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
            for q in queued:
                del self._queued[q.run_id]
                lane = self._lanes[q.lane]
                lane.pending = deque(p for p in lane.pending if p.run_id not in gone)
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

    def _cancel_now(self, run: _Run) -> None:
        self._apply_cancel(run)
        self._maybe_finish(run)

    def _apply_cancel(self, run: _Run) -> None:
        """Cancel idle nodes now; running attempts see `run.cancel` and are killed."""
        run.cancel.set()
        idle = [n for n in run.nodes.values()
                if n.status in (NodeStatus.PENDING, NodeStatus.RETRYING)]
        if idle:
            self._set_node_status(run, idle, NodeStatus.CANCELLED)

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
        plan = self._plans.get(stored.workflow, stored.plan_version).content
        if plan is None:
            return secret_values((), stored, "UTC")
        return secret_values(plan.nodes, stored, plan.timezone)

    async def wait_run(self, run_id: str) -> Run:
        """The run once it has finished."""
        if self.is_active(run_id):
            event = self._done.get(run_id) or self._done.setdefault(run_id, asyncio.Event())
            await event.wait()
        return self.get_run(run_id)

    def is_active(self, run_id: str) -> bool:
        """True while the run is pending or running in this engine."""
        return run_id in self._runs or run_id in self._queued

    # ---- resume -------------------------------------------------------------------------

    def resume_run(self, run_id: str, node_names: Sequence[str], *,
                   plan_version: int | None = None, dry_run: bool = False,
                   remarks: str | None = None) -> ResumeAnswer:
        """A new run re-running `node_names` and everything downstream; the rest copied."""
        original = self.get_run(run_id)
        graph_version = self._store.graph_version(run_id)
        graph = self._content(self._plans.get(original.workflow, graph_version))
        if plan_version is None:
            latest = self._plans.latest(original.workflow)
            if latest is None or latest.version is None:
                raise RunError(f"workflow '{original.workflow}' has no published version",
                               field="plan_version", precondition=True)
            chosen = latest
        else:
            try:
                chosen = self._plans.get(original.workflow, plan_version)
            except Exception as exc:
                raise RunError(f"plan version {plan_version} of {original.workflow} cannot be"
                               f" used: {exc}", field="plan_version", not_found=True) from exc
        rerun_content = self._content(chosen)
        assert chosen.version is not None
        try:
            shape: ResumePlan = plan_resume(original, graph, list(dict.fromkeys(node_names)),
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
        node_plans: dict[str, NodePlan] = {}
        for old in original.nodes:
            if old.name in rerun:
                node_plan = rerun_content.node(old.name)
                queue = _queue_for(node_plan, original.queue_override)
                nodes.append(NodeRun(run_id=new_id, name=old.name, status=NodeStatus.PENDING,
                                     queue=queue, plan_version=chosen.version))
            else:
                node_plan = self._plans.get(original.workflow, old.plan_version).content.node(  # type: ignore[union-attr]
                    old.name)
                source = old.copied_from_run_id or original.run_id
                nodes.append(replace(
                    old, run_id=new_id, copied_from_run_id=source,
                    attempts=tuple(replace(a, run_id=new_id,
                                           copied_from_run_id=a.copied_from_run_id or source)
                                   for a in old.attempts)))
            node_plans[old.name] = node_plan
        run = Run(run_id=new_id, workflow=original.workflow, plan_version=chosen.version,
                  plan_digest=chosen.digest, trigger=RunTrigger.RESUME,
                  logical_time=original.logical_time, status=RunStatus.PENDING, created_at=now,
                  params=original.params,
                  remarks=original.remarks if remarks is None else remarks,
                  queue_override=original.queue_override, backfill_id=original.backfill_id,
                  previous_run_id=original.run_id,
                  data_interval_start=original.data_interval_start,
                  data_interval_end=original.data_interval_end, nodes=tuple(nodes))
        self._store.insert_run(run, graph_version=graph_version)
        self._enqueue([_Queued(run_id=new_id, workflow=run.workflow,
                               plan_version=run.plan_version,
                               lane=lane_of(run.workflow, run.backfill_id),
                               state=self._state(run, graph, node_plans))])
        return ResumeAnswer(run_id=new_id, node_names=shape.starting,
                            plan_version=chosen.version)

    # ---- recovery -----------------------------------------------------------------------

    def _load_run(self, run: Run) -> _Run:
        graph_version = self._store.graph_version(run.run_id)
        graph = self._content(self._plans.get(run.workflow, graph_version))
        node_plans: dict[str, NodePlan] = {}
        for node in run.nodes:
            content = self._content(self._plans.get(run.workflow, node.plan_version))
            node_plans[node.name] = content.node(node.name)
        return self._state(run, graph, node_plans)

    def _recover_nodes(self, state: _Run, run: Run) -> None:
        for stored in run.nodes:
            node = state.nodes[stored.name]
            if stored.status is NodeStatus.RUNNING and stored.attempts:
                last = stored.attempts[-1]
                recovered = self._launcher.recover(Path(last.log_path or "").parent, last.pid,
                                                   last.pid_start)
                if last.pid is None and recovered.pid is not None and recovered.handle is None:
                    # launched, then the crash came before its pid was stored; it has ended
                    # since, so its start time cannot be known any more
                    self._record_process(run.run_id, node.name, last.number, recovered.pid,
                                         None)
                log.info("run %s node %s attempt %d: %s", run.run_id, node.name, last.number,
                         "adopted" if recovered.handle else "never started"
                         if recovered.never_started else "lost" if recovered.lost
                         else f"finished with {recovered.exit_code}")
                node.dispatched = True
                self._spawn(self._execute(state, node, recovered))
            elif stored.status is NodeStatus.RETRYING:
                node.dispatched = True
                self._spawn(self._execute(state, node, None,
                                          retry_at=stored.next_attempt_at or self._clock.now()))
        self._evaluate(state, [n.name for n in run.nodes if n.status is NodeStatus.PENDING])
        self._maybe_finish(state)

    def _fail_unrecoverable(self, run: Run, reason: str) -> None:
        """Fail a run whose plan cannot be loaded any more. Its attempts still running are
        stopped first (group SIGTERM, SIGKILL after the grace): until then its rows stay as
        they are, so a crash meanwhile does it again at the next start. Then its attempts,
        nodes and the run are closed in one commit; the nodes keep their rows (the graph)."""
        why = f"cannot recover: {reason}"
        closed: list[ClosedAttempt] = []
        alive: list[tuple[str, int, ProcessHandle]] = []
        for node in run.nodes:
            last = node.attempts[-1] if node.attempts else None
            if last is None or last.status is not AttemptStatus.RUNNING:
                continue
            found = self._launcher.recover(Path(last.log_path or "").parent, last.pid,
                                           last.pid_start)
            if found.handle is not None:
                alive.append((node.name, last.number, found.handle))
            elif found.exit_code is not None:  # it ended by itself while the daemon was down
                closed.append(_ended(node.name, last.number, found.exit_code, None))
            else:
                closed.append(_ended(node.name, last.number, None, LOST if found.lost else why))
        unfinished = [n.name for n in run.nodes if not n.status.finished]
        if not alive:
            now = self._clock.now()
            self._now_or_later(lambda: self._store.fail_unrecoverable(
                run.run_id, unfinished, closed, reason=why, at=now))
            return
        log.warning("run %s: stopping %d node process(es) it left running", run.run_id,
                    len(alive))
        self._spawn(self._stop_unrecoverable(run.run_id, unfinished, closed, alive, why))

    async def _stop_unrecoverable(self, run_id: str, unfinished: list[str],
                                  closed: list[ClosedAttempt],
                                  alive: list[tuple[str, int, ProcessHandle]], why: str) -> None:
        waiters = [asyncio.ensure_future(handle.wait()) for _, _, handle in alive]
        for _, _, handle in alive:
            handle.signal_group(signal.SIGTERM)
        grace: asyncio.Future[Any] = asyncio.ensure_future(
            self._clock.sleep(self._settings.kill_grace_seconds))
        ended: asyncio.Future[list[Any]] = asyncio.gather(*waiters, return_exceptions=True)
        try:
            await asyncio.wait({ended, grace}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            grace.cancel()
        for (_, _, handle), waiter in zip(alive, waiters, strict=True):
            if not waiter.done():
                handle.signal_group(signal.SIGKILL)
        for (name, number, _), code in zip(alive, await ended, strict=True):
            if isinstance(code, ProcessLostError):
                closed.append(_ended(name, number, None, str(code)))
            elif isinstance(code, BaseException):
                raise code
            else:
                closed.append(_ended(name, number, code, f"stopped: {why}"))
        now = self._clock.now()
        await self._durably(lambda: self._store.fail_unrecoverable(
            run_id, unfinished, closed, reason=why, at=now))


def _ended(node: str, number: int, code: int | None, error: str | None) -> ClosedAttempt:
    """An attempt's end as recorded for a run that cannot be recovered: its own result
    when it finished by itself, else FAILED with `error`."""
    if error is None and code is not None and code != 0:
        error = f"exited with code {code}{_EXIT_MEANINGS.get(code, '')}"
    status = AttemptStatus.SUCCEEDED if error is None else AttemptStatus.FAILED
    return ClosedAttempt(node=node, number=number, status=status, exit_code=code, error=error)


def _queue_for(node: NodePlan, override: str | None) -> str:
    """The queue precedence (docs/plans.md): node's own > run override > workflow > default."""
    if node.queue_pinned or override is None:
        return node.queue
    return override


