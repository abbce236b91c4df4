"""The node state machine and its attempts: when a node starts or is skipped, how each attempt
is launched, waited for, timed out, killed and recorded, and when a run ends.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flowplan.compiler.plan import NodePlan, QueuePlan
from flowplan.daemon.domain import Attempt, AttemptStatus, NodeStatus, RunStatus
from flowplan.daemon.engine.clock import sleep_unless
from flowplan.daemon.engine.commands import (
    CommandError,
    attempt_env,
    build_command,
    mask,
    process_problem,
    renders_as_written,
)
from flowplan.daemon.engine.core import (
    EXIT_MEANINGS,
    LOST,
    LOST_UNWRITTEN,
    EngineCore,
    NodeState,
    RunState,
    StatusEvent,
)
from flowplan.daemon.engine.launcher import (
    LaunchSpec,
    ProcessHandle,
    ProcessLostError,
    Recovered,
    process_start,
)
from flowplan.daemon.engine.queues import ResourceQueue
from flowplan.daemon.engine.spark import attempt_application_id
from flowplan.daemon.engine.triggers import Readiness, readiness, skip_reason

log = logging.getLogger("flowplan.engine")


class Attempts(EngineCore):
    """Start or skip a node when its trigger is decided, run its attempts (retries, timeouts,
    resource queues, a kill on cancel), record each end, end the run after its last node."""

    def _evaluate(self, run: RunState, names: Sequence[str]) -> None:
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
                reason = skip_reason(node.plan.trigger,
                                     {u: run.nodes[u].status for u in node.upstream})
                self._set_node_status(run, [node], NodeStatus.SKIPPED, skip_reason=reason)
                work.extend(reversed(node.downstream))

    async def _execute(self, run: RunState, node: NodeState, recovered: Recovered | None,
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
                    if node.status is not NodeStatus.RUNNING:  # before its attempt's row
                        attempt = self._new_attempt(run, node, node.attempts + 1)
                        await self._durably(functools.partial(self._store.start_attempt,
                                                              attempt))
                        node.attempts = attempt.number
                    outcome = await self._finish(run, node, node.attempts, None,
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

    async def _retry_delay(self, run: RunState, until: datetime) -> None:
        await sleep_unless(self._clock, (until - self._clock.now()).total_seconds(),
                           run.cancel)

    async def _attempt(self, run: RunState, node: NodeState, recovered: Recovered | None
                       ) -> datetime | None:
        """One attempt. Returns when the next attempt is due, or None when the node is final."""
        if run.cancel.is_set():
            if recovered is not None and recovered.handle is None:  # its row is RUNNING
                await self._finish(run, node, node.attempts, recovered.exit_code, "cancelled",
                                   cancelled=True, ended_at=recovered.ended_at)
            if recovered is None or recovered.handle is None:
                return None
        plan = node.plan
        if recovered is None or recovered.never_started:
            number = node.attempts + 1 if recovered is None else node.attempts
            attempt = self._new_attempt(run, node, number)
            attempt_dir = self._attempt_dir(run, node.name, number)
            variables = run.context.variables(node.name, number)
            try:
                queue_plan = node.queue_plan
                if queue_plan is None:
                    raise CommandError(f"queue '{node.queue}' is not defined in plan version"
                                       f" {node.plan_version}")
                argv, node_env = await self._build_command(plan, queue_plan, node.queue,
                                                           variables, attempt_dir)
                env = attempt_env(self._settings.base_env, variables, node_env,
                                  workspace=run.context.workspace,
                                  sqlite_db=self._settings.state_dir / "sqlite"
                                  / f"{run.header.workflow}.sqlite3")
                if (traceparent := self._settings.traceparent) is not None and (
                        "TRACEPARENT" not in node_env):  # the node's own value wins
                    env["TRACEPARENT"] = traceparent(run.header.run_id, node.name, number)
                if (problem := process_problem(argv, node_env, env)) is not None:
                    raise CommandError(problem)
            except (CommandError, OSError) as exc:
                if run.cancel.is_set():  # cancelled while it was built: the node is CANCELLED
                    return None
                await self._durably(lambda: self._store.start_attempt(attempt))
                node.attempts = number
                if isinstance(exc, OSError):  # writing its source or query file: may clear
                    log.warning("run %s node %s attempt %d: %s", run.header.run_id,
                                node.name, number, exc)
                    return await self._finish(run, node, number, None, "cannot write the"
                                              f" attempt's files: {exc.strerror or exc}")
                return await self._finish(run, node, number, None,
                                          mask(str(exc), run.secrets), retryable=False)
            # Intent first, then the launch (on a full disk: once it can be written). A cancel
            # that came while the command was built, or while the disk was full, has made the
            # node CANCELLED and maybe ended the run: nothing may start then.
            started: list[StatusEvent] = []

            def record_start() -> None:
                if not run.cancel.is_set():
                    event = self._event(run.header.run_id, node.name,
                                        NodeStatus.RUNNING.value, number)
                    self._commit_with(lambda: self._store.start_attempt(attempt), event)
                    started[:] = [event]

            await self._durably(record_start)
            if run.cancel.is_set():
                return None
            node.attempts = number
            run.set_node_status(node, NodeStatus.RUNNING)
            self._tell(self._listeners, started[0])
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
            return await self._finish(run, node, number, recovered.exit_code, None,
                                      ended_at=recovered.ended_at)
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

    def _new_attempt(self, run: RunState, node: NodeState, number: int) -> Attempt:
        """Attempt `number` of `node` as its start records it: RUNNING from now."""
        return Attempt(run_id=run.header.run_id, node=node.name, number=number,
                       plan_version=node.plan_version, status=AttemptStatus.RUNNING,
                       started_at=self._clock.now(),
                       log_path=str(self._attempt_dir(run, node.name, number) / "log"))

    async def _build_command(self, plan: NodePlan, queue: QueuePlan, queue_name: str,
                             variables: Mapping[str, Any], attempt_dir: Path
                             ) -> tuple[tuple[str, ...], dict[str, str]]:
        """`build_command` off the event loop (templates render there), within a time limit;
        on the loop when there is nothing to render: the hop to the thread and back costs
        the loop more than such a command does."""
        build = functools.partial(
            build_command, plan, queue, variables, queue_name=queue_name,
            sources_dir=self._settings.state_dir / "sources", attempt_dir=attempt_dir)
        if renders_as_written(plan, queue):
            return build()
        try:
            return await self._clock.run_bounded(build, self._settings.render_timeout_seconds)
        except TimeoutError:
            raise CommandError(f"rendering the node's templates took longer than"
                               f" {self._settings.render_timeout_seconds:g}s") from None

    async def _wait(self, run: RunState, handle: ProcessHandle, timeout: float | None
                    ) -> tuple[int, str | None]:
        """Wait for the process; on timeout or cancel, TERM its group, then KILL after grace.
        Our own launches' ends and the cancel are futures: no task is made for them."""
        waiter = asyncio.ensure_future(handle.wait())
        cancelled = run.cancelled()
        others: list[asyncio.Future[Any]] = []
        if timeout is not None:
            others.append(asyncio.ensure_future(self._clock.sleep(timeout)))
        awaited: set[asyncio.Future[Any]] = {waiter, cancelled, *others}
        try:
            await asyncio.wait(awaited, return_when=asyncio.FIRST_COMPLETED)
            if waiter.done():
                return waiter.result(), None
            reason = "cancelled" if cancelled.done() else "timeout"
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

    async def _finish(self, run: RunState, node: NodeState, number: int, code: int | None,
                      error: str | None, *, retryable: bool = True, cancelled: bool = False,
                      ended_at: datetime | None = None) -> datetime | None:
        """Record an attempt's end and the node's next status in one commit (on a full
        disk: kept here and retried until it is written; nothing acts on it before).

        The attempt ends now, or at `ended_at` when it ended while the daemon was away (its
        exit file's time): its `finished_at` and the base of its retry delay, kept between its
        start and now (a clock that moved, a file's time that was changed)."""
        at = self._clock.now()
        if ended_at is not None:
            at = min(max(ended_at, self._attempt_started(run, node)), at)
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
                next_at = at + timedelta(seconds=delay)
                node_status = NodeStatus.RETRYING
            else:
                node_status = NodeStatus.FAILED
        if error is None and code not in (0, None):
            error = f"exited with code {code}{EXIT_MEANINGS.get(code, '')}"
        application_id = attempt_application_id(node.queue_plan,
                                                self._attempt_dir(run, node.name, number))
        ended: list[StatusEvent] = []

        def record_end() -> None:
            event = self._event(run.header.run_id, node.name, node_status.value, number, code)
            self._commit_with(lambda: self._store.finish_attempt(
                run.header.run_id, node.name, number, status=attempt_status, at=at,
                exit_code=code, error=error, node_status=node_status, next_attempt_at=next_at,
                spark_application_id=application_id), event)
            ended[:] = [event]

        await self._durably(record_end)
        run.set_node_status(node, node_status)
        self._tell(self._listeners, ended[0])
        return next_at

    def _after_final(self, run: RunState, node: NodeState) -> None:
        if node.status.finished:
            self._evaluate(run, node.downstream)
        self._maybe_finish(run)

    def _maybe_finish(self, run: RunState) -> None:
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

    def _apply_cancel(self, run: RunState) -> None:
        """Cancel idle nodes now; running attempts see `run.cancel` and are killed."""
        run.set_cancel()
        idle = [n for n in run.nodes.values()
                if n.status in (NodeStatus.PENDING, NodeStatus.RETRYING)]
        if idle:
            self._set_node_status(run, idle, NodeStatus.CANCELLED)
