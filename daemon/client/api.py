"""The Python client of a flowplan daemon: `Client` (blocking) and `AsyncClient` (asyncio,
`grpc.aio`), with the same methods. Import it as `flowplan.client`::

    from flowplan.client import Client

    with Client("127.0.0.1:50051") as client:
        run = client.start_run("daily_sales")
        run = client.wait_run(run.run_id, timeout=600)

Where and how to call are the CLI's (`flowplan status --help`): the address (argument, else
`$FLOWPLAN_ADDRESS`, else 127.0.0.1:50051), a bearer token (`token`, else read from
`token_file` or `$FLOWPLAN_TOKEN_FILE`), TLS (`tls_ca`, and `tls_cert` with `tls_key` for
mutual TLS), and `timeout`, the deadline of each unary call (10 s by default; streams have
none unless it is given).

Results are the protocol's messages (`flowplan.v1.workflow_service_pb2`): a call that
answers one object returns it (`start_run`, `get_run`, `cancel_run` -> `Run`;
`get_workflow`, `set_scheduling` -> `Workflow`; `get_backfill` -> `Backfill`); the others
return their response message (lists are one page with its `next_page_token`).

Failures raise `ClientError` (the gRPC `code`, the `message`, the `violations` of an
INVALID_ARGUMENT). Calls that are safe to repeat are tried again on UNAVAILABLE (a daemon
restarting) with growing pauses, for `Retry.give_up_after` seconds at most: every read, the
scheduling switch, cancelling a run or a backfill, and the dry runs of a backfill and of a
resume. `start_run`, `start_backfill` and `resume_run` are sent once: after UNAVAILABLE the
daemon may or may not have created the run. `watch_run` and `node_log` open their stream
again after the last sequence or byte they delivered, so a restart neither repeats nor
skips anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from flowplan.daemon.client.connection import (
    CONNECTED_PROBE_SECONDS,
    MAX_MESSAGE_BYTES,
    RECONNECT_FIRST_DELAY,
    RECONNECT_MAX_DELAY,
    TOKEN_FILE_ENV,
    ClientError,
    FieldViolation,
    Target,
    UsageError,
    error_of,
    opened,
    stopped,
    target_from_options,
)
from flowplan.v1 import workflow_service_pb2 as pb
from flowplan.v1 import workflow_service_pb2_grpc as pb_grpc

__all__ = [
    "FINISHED_RUN_STATUSES",
    "NO_RETRY",
    "AsyncClient",
    "Client",
    "ClientError",
    "FieldViolation",
    "ParamValue",
    "Retry",
    "Target",
    "UsageError",
]

ParamValue = str | int | float | bool | None
T = TypeVar("T")

FINISHED_RUN_STATUSES = frozenset({pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED,
                                   pb.RUN_STATUS_CANCELLED})
POLL_SECONDS = 0.5  # a watch whose stream ended before the run did asks the run this often

_log = logging.getLogger("flowplan.client")


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    """How calls that are safe to repeat, and streams that break, are tried again after
    UNAVAILABLE: pauses that double from `first_delay` to `max_delay`, until
    `give_up_after` seconds have passed since the first failure (0: never try again).
    `before_answer=False` tries again only once the daemon has answered this client, so
    that a daemon that is not running is reported at once (the CLI's choice)."""

    first_delay: float = RECONNECT_FIRST_DELAY
    max_delay: float = RECONNECT_MAX_DELAY
    give_up_after: float = 30.0
    before_answer: bool = True


NO_RETRY = Retry(give_up_after=0.0)


class _Backoff:
    """The pauses of one retried call or stream."""

    def __init__(self, retry: Retry) -> None:
        self.retry = retry
        self.delay = retry.first_delay
        self.since: float | None = None  # the first failure since the last answer
        self.first = False  # the last failure was the first one

    def next_delay(self, err: grpc.RpcError, *, answered: bool) -> float | None:
        """The pause before trying again after `err`, or None: give up."""
        if err.code() is not grpc.StatusCode.UNAVAILABLE:
            return None
        if not answered and not self.retry.before_answer:
            return None
        now = time.monotonic()
        self.first = self.since is None
        if self.since is None:
            self.since = now
        if now - self.since >= self.retry.give_up_after:
            return None
        delay = self.delay
        self.delay = min(self.delay * 2, self.retry.max_delay)
        return delay

    def reset(self) -> None:
        self.delay, self.since = self.retry.first_delay, None

    @property
    def failing(self) -> bool:
        return self.since is not None


def _target(address: str | None, *, token: str | None, token_file: Path | str | None,
            tls_ca: Path | str | None, tls_cert: Path | str | None,
            tls_key: Path | str | None, timeout: float | None,
            environ: Mapping[str, str] | None) -> Target:
    def path(value: Path | str | None) -> Path | None:
        return None if value is None else Path(value)

    if token is not None and token_file is not None:
        raise UsageError("give the bearer token either as token= or in token_file=, not both")
    environ = os.environ if environ is None else environ
    if token is not None:  # given directly: $FLOWPLAN_TOKEN_FILE is not read
        environ = {k: v for k, v in environ.items() if k != TOKEN_FILE_ENV}
    target = target_from_options(
        address=address, token_file=path(token_file), tls_ca=path(tls_ca),
        tls_cert=path(tls_cert), tls_key=path(tls_key), timeout=timeout, environ=environ)
    if token is not None:
        target = dataclasses.replace(target, token=token)
    return target


def _credentials(target: Target) -> grpc.ChannelCredentials | None:
    if target.tls is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=target.tls.root_certificates, private_key=target.tls.private_key,
        certificate_chain=target.tls.certificate_chain)


# -- requests (shared by both clients) ---------------------------------------------------

def _start_run(workflow: str, params: Mapping[str, ParamValue] | None, queue: str,
               remarks: str, logical_time: datetime | None) -> pb.StartRunRequest:
    request = pb.StartRunRequest(workflow=workflow, queue=queue, remarks=remarks)
    if params:
        request.params.update(dict(params))
    if logical_time is not None:
        _set_time(request.logical_time, logical_time, "logical_time")
    return request


def _start_backfill(workflow: str, *, start: datetime, end: datetime, queue: str,
                    remarks: str, failure_emails: Iterable[str], max_parallel_runs: int,
                    dry_run: bool, reprocess: int) -> pb.StartBackfillRequest:
    request = pb.StartBackfillRequest(
        workflow=workflow, queue=queue, remarks=remarks, failure_emails=list(failure_emails),
        max_parallel_runs=max_parallel_runs, dry_run=dry_run,
        reprocess=reprocess)  # type: ignore[arg-type]
    _set_time(request.start_time, start, "start")
    _set_time(request.end_time, end, "end")
    return request


_SETTLED_PAGE = 1000  # the daemon's largest page: a settled cancel lists a backfill's runs


def _cancelled_backfill(backfill: pb.Backfill, run_ids: list[str]
                        ) -> pb.CancelBackfillResponse:
    """The answer a repeated CancelBackfill stands for: the backfill and its CANCELLED runs
    (those the lost first answer named that have ended, and any cancelled before it)."""
    return pb.CancelBackfillResponse(backfill=backfill, cancelled_run_ids=sorted(run_ids))


def _set_time(field: Timestamp, moment: datetime, name: str) -> None:
    try:
        field.FromDatetime(moment)
    except (OverflowError, ValueError) as exc:  # outside the calendar once in UTC
        raise UsageError(f"{name} {moment.isoformat()} is not a time the daemon can take: it"
                         " must lie within 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z") from exc


def _fresh_log(chunk: pb.GetNodeLogResponse, next_offset: int | None
               ) -> pb.GetNodeLogResponse | None:
    """`chunk` without the bytes before `next_offset` (already delivered before a
    reconnect); None when nothing new is left in it."""
    if next_offset is None or chunk.offset >= next_offset:
        return chunk
    skip = next_offset - chunk.offset
    if skip >= len(chunk.data):
        return None
    return pb.GetNodeLogResponse(offset=next_offset, data=chunk.data[skip:],
                                 attempt=chunk.attempt)


def _attempt_running(run: pb.Run, node: str, attempt: int) -> bool:
    """Whether attempt `attempt` (0: the latest) of `node` in `run` is still running."""
    for found in run.nodes:
        if found.name == node and found.attempts:
            chosen = (found.attempts[-1] if not attempt else
                      next((a for a in found.attempts if a.number == attempt), None))
            return chosen is not None and chosen.status == pb.ATTEMPT_STATUS_RUNNING
    return False


class _Base:
    """What both clients share: the target, the token, the retry policy."""

    def __init__(self, address: str | None = None, *, token: str | None = None,
                 token_file: Path | str | None = None, tls_ca: Path | str | None = None,
                 tls_cert: Path | str | None = None, tls_key: Path | str | None = None,
                 timeout: float | None = None, retry: Retry = Retry(),
                 on_reconnect: Callable[[str], None] | None = None,
                 environ: Mapping[str, str] | None = None,
                 target: Target | None = None) -> None:
        self.target = target if target is not None else _target(
            address, token=token, token_file=token_file, tls_ca=tls_ca, tls_cert=tls_cert,
            tls_key=tls_key, timeout=timeout, environ=environ)
        self.retry = retry
        self.poll_seconds = POLL_SECONDS
        self._note = on_reconnect or _log.warning
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {self.target.token}"),) if self.target.token else ())
        self._options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        self._answered = False  # a call returned or a stream opened: the daemon was reached
        self._channel = self._open(_credentials(self.target))
        self._stub = pb_grpc.WorkflowServiceStub(self._channel)

    def _open(self, credentials: grpc.ChannelCredentials | None) -> Any:
        """The channel to the target: blocking or asyncio, as the subclass is."""
        raise NotImplementedError

    @property
    def answered(self) -> bool:
        """True once the daemon has answered this client: a call returned, or it took a
        `watch_run` or `node_log` stream (before anything came on it)."""
        return self._answered

    def _lost(self, err: grpc.RpcError, backoff: _Backoff) -> None:
        if backoff.first:
            self._note(f"lost the daemon (UNAVAILABLE: {err.details() or 'no details'});"
                       " retrying")

    def _back(self, backoff: _Backoff) -> None:
        if backoff.failing:
            self._note("reconnected")
            backoff.reset()



class Client(_Base):
    """A blocking client of one daemon. Close it (or use `with`). See the module's text
    for the options, the results, the errors and which calls are tried again."""

    _channel: grpc.Channel

    def _open(self, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
        if credentials is None:
            return grpc.insecure_channel(self.target.address, options=self._options)
        return grpc.secure_channel(self.target.address, credentials, options=self._options)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def connected(self, *, now: bool = False) -> bool:
        """True when the daemon has answered this client (`answered`; with `now`, that is
        not enough), or the channel is connected now: the daemon was reached. (Watching the
        channel's state all along would cost every call 0.2 s at close, so it is asked only
        after a failure.)"""
        if self._answered and not now:
            return True
        ready = grpc.channel_ready_future(self._channel)
        try:
            ready.result(timeout=CONNECTED_PROBE_SECONDS)
        except grpc.FutureTimeoutError:
            return False
        finally:
            ready.cancel()
        return True

    def _call(self, method: str, request: Any, *, idempotent: bool,
              settled: Callable[[], Any] | None = None) -> Any:
        """`method`'s answer, tried again on UNAVAILABLE when `idempotent`. `settled`: for a
        call tried again whose repeat is refused with FAILED_PRECONDITION (the first one
        reached the daemon before its restart), the answer it stands for, or None."""
        backoff = _Backoff(self.retry if idempotent else NO_RETRY)
        while True:
            try:
                response = getattr(self._stub, method)(
                    request, timeout=self.target.unary_timeout, metadata=self._metadata)
            except grpc.RpcError as err:
                delay = backoff.next_delay(err, answered=self._answered)
                if delay is None:
                    if settled is not None and backoff.failing and (
                            err.code() is grpc.StatusCode.FAILED_PRECONDITION):
                        answer = settled()
                        if answer is not None:
                            return answer
                    raise error_of(err) from None
                self._lost(err, backoff)
                time.sleep(delay)
                continue
            self._answered = True
            self._back(backoff)
            return response

    def _follow(self, open_stream: Callable[[], Iterable[T]]) -> Iterator[T]:
        """The items of `open_stream()`, called again when the stream breaks with
        UNAVAILABLE (as `retry` says); `open_stream` builds its request from what was
        delivered, so that the new stream continues where the broken one stopped."""
        backoff = _Backoff(self.retry)
        while True:
            try:
                stream = open_stream()
                if opened(cast(grpc.Call, stream).initial_metadata()):
                    self._answered = True
                    self._back(backoff)  # through again, though nothing came yet
                for item in stream:
                    self._answered = True
                    self._back(backoff)
                    yield item
                return
            except grpc.RpcError as err:
                self._answered = self._answered or stopped(err)  # it was reached
                delay = backoff.next_delay(err, answered=self._answered)
                if delay is None:
                    raise error_of(err) from None
                self._lost(err, backoff)
                time.sleep(delay)

    # -- workflows ------------------------------------------------------------------------

    def list_workflows(self, *, include_tombstones: bool = False, page_size: int = 0,
                       page_token: str = "") -> pb.ListWorkflowsResponse:
        """One page of the daemon's workflows (removed ones too with include_tombstones)."""
        return self._call("ListWorkflows", pb.ListWorkflowsRequest(  # type: ignore[no-any-return]
            include_tombstones=include_tombstones, page_size=page_size,
            page_token=page_token), idempotent=True)

    def get_workflow(self, workflow: str, *, plan_version: int = 0) -> pb.Workflow:
        """A workflow, at its latest plan version or at `plan_version`."""
        return self._call("GetWorkflow", pb.GetWorkflowRequest(  # type: ignore[no-any-return]
            workflow=workflow, plan_version=plan_version), idempotent=True).workflow

    def list_plan_versions(self, workflow: str, *, page_size: int = 0, page_token: str = ""
                           ) -> pb.ListPlanVersionsResponse:
        """One page of a workflow's published plan versions, newest first."""
        return self._call("ListPlanVersions", pb.ListPlanVersionsRequest(  # type: ignore[no-any-return]
            workflow=workflow, page_size=page_size, page_token=page_token), idempotent=True)

    def set_scheduling(self, workflow: str, *, enabled: bool) -> pb.Workflow:
        """Turn a workflow's scheduling switch on or off (safe to repeat)."""
        return self._call("SetSchedulingStatus", pb.SetSchedulingStatusRequest(  # type: ignore[no-any-return]
            workflow=workflow, enabled=enabled), idempotent=True).workflow

    # -- runs -----------------------------------------------------------------------------

    def start_run(self, workflow: str, *, params: Mapping[str, ParamValue] | None = None,
                  queue: str = "", remarks: str = "", logical_time: datetime | None = None
                  ) -> pb.Run:
        """Start a manual run of `workflow` with its latest plan version (sent once)."""
        return self._call("StartRun", _start_run(  # type: ignore[no-any-return]
            workflow, params, queue, remarks, logical_time), idempotent=False).run

    def get_run(self, run_id: str, *, include_graph: bool = True) -> pb.Run:
        """A run, with its nodes and their attempts unless include_graph is False."""
        return self._call("GetRun", pb.GetRunRequest(  # type: ignore[no-any-return]
            run_id=run_id, include_graph=include_graph), idempotent=True).run

    def list_runs(self, *, workflow: str = "", status: int = 0, trigger: int = 0,
                  tag: str = "", backfill_id: str = "", page_size: int = 0,
                  page_token: str = "") -> pb.ListRunsResponse:
        """One page of runs, newest first; `status` and `trigger` are pb.RunStatus and
        pb.RunTrigger values (0: any)."""
        return self._call("ListRuns", pb.ListRunsRequest(  # type: ignore[no-any-return]
            workflow=workflow, status=status, trigger=trigger,  # type: ignore[arg-type]
            tag=tag, backfill_id=backfill_id, page_size=page_size, page_token=page_token),
            idempotent=True)

    def cancel_run(self, run_id: str) -> pb.Run:
        """Ask a run to stop (safe to repeat); the run as it is now. Tried again through a
        daemon restart, a cancel that landed before it answers the CANCELLED run."""
        def settled() -> pb.CancelRunResponse | None:
            run = self.get_run(run_id)
            return pb.CancelRunResponse(run=run) if run.status == pb.RUN_STATUS_CANCELLED \
                else None

        return self._call("CancelRun", pb.CancelRunRequest(  # type: ignore[no-any-return]
            run_id=run_id), idempotent=True, settled=settled).run

    def resume_run(self, run_id: str, nodes: Iterable[str], *, plan_version: int = 0,
                   dry_run: bool = False, remarks: str = "") -> pb.ResumeRunResponse:
        """Run `nodes` of a finished run and everything downstream of them again, in a new
        run (sent once unless dry_run)."""
        return self._call("ResumeRun", pb.ResumeRunRequest(  # type: ignore[no-any-return]
            run_id=run_id, node_names=list(nodes), plan_version=plan_version,
            dry_run=dry_run, remarks=remarks), idempotent=dry_run)

    def watch_run(self, run_id: str, *, after_sequence: int = 0, until_end: bool = True
                  ) -> Iterator[pb.WatchRunResponse]:
        """The run's status changes after `after_sequence` (0: its whole history) until it
        ends: the stream is opened again after the last sequence delivered when it breaks,
        and when it ends before the run does (until_end=False: stop there)."""
        last = after_sequence

        def open_stream() -> Iterable[pb.WatchRunResponse]:
            return self._stub.WatchRun(  # type: ignore[no-any-return]
                pb.WatchRunRequest(run_id=run_id, after_sequence=last),
                timeout=self.target.timeout, metadata=self._metadata)

        while True:
            status = 0
            for change in self._follow(open_stream):
                if change.sequence and change.sequence <= last:
                    continue  # already delivered (a server that repeats after a reconnect)
                last = change.sequence or last
                status = change.run_status
                yield change
            if status in FINISHED_RUN_STATUSES or not until_end:
                return
            if self.get_run(run_id, include_graph=False).status in FINISHED_RUN_STATUSES:
                return
            time.sleep(self.poll_seconds)

    def wait_run(self, run_id: str, *, timeout: float | None = None) -> pb.Run:
        """The run once it has ended (with its graph); TimeoutError after `timeout`
        seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run.status in FINISHED_RUN_STATUSES:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} has not ended after {timeout:g}s"
                                   f" (status {pb.RunStatus.Name(run.status)})")
            pause = self.poll_seconds if deadline is None else max(
                0.0, min(self.poll_seconds, deadline - time.monotonic()))
            time.sleep(pause)

    def node_log(self, run_id: str, node: str, *, attempt: int = 0, offset: int = 0,
                 follow: bool = True, until_end: bool = True
                 ) -> Iterator[pb.GetNodeLogResponse]:
        """The log of one attempt of a node (0: the latest) from byte `offset`, in chunks;
        with follow, until the attempt ends. The stream is opened again from the next byte,
        with the same attempt, when it breaks, and with follow when it ends while the
        attempt still runs (a daemon that stopped; until_end=False: stop there)."""
        next_offset: int | None = offset or None

        def open_stream() -> Iterable[pb.GetNodeLogResponse]:
            return self._stub.GetNodeLog(  # type: ignore[no-any-return]
                pb.GetNodeLogRequest(run_id=run_id, node_name=node, attempt=attempt,
                                     offset=next_offset or 0, follow=follow),
                timeout=self.target.timeout, metadata=self._metadata)

        while True:
            for chunk in self._follow(open_stream):
                fresh = _fresh_log(chunk, next_offset)
                attempt = chunk.attempt or attempt  # a reconnect stays with this attempt
                next_offset = max(next_offset or 0, chunk.offset + len(chunk.data))
                if fresh is not None:
                    yield fresh
            if not (follow and until_end and _attempt_running(
                    self.get_run(run_id), node, attempt)):
                return
            time.sleep(self.poll_seconds)

    # -- backfills ------------------------------------------------------------------------

    def start_backfill(self, workflow: str, *, start: datetime, end: datetime,
                       queue: str = "", remarks: str = "",
                       failure_emails: Iterable[str] = (), max_parallel_runs: int = 0,
                       dry_run: bool = False, reprocess: int = pb.REPROCESS_ALL
                       ) -> pb.StartBackfillResponse:
        """One run per tick of `workflow` from `start` to `end`, both inclusive (sent once
        unless dry_run)."""
        return self._call("StartBackfill", _start_backfill(  # type: ignore[no-any-return]
            workflow, start=start, end=end, queue=queue, remarks=remarks,
            failure_emails=failure_emails, max_parallel_runs=max_parallel_runs,
            dry_run=dry_run, reprocess=reprocess), idempotent=dry_run)

    def get_backfill(self, backfill_id: str) -> pb.Backfill:
        """A backfill with its progress."""
        return self._call("GetBackfill", pb.GetBackfillRequest(  # type: ignore[no-any-return]
            backfill_id=backfill_id), idempotent=True).backfill

    def list_backfills(self, *, workflow: str = "", status: int = 0, page_size: int = 0,
                       page_token: str = "") -> pb.ListBackfillsResponse:
        """One page of backfills, newest first (`status`: a pb.BackfillStatus, 0: any)."""
        return self._call("ListBackfills", pb.ListBackfillsRequest(  # type: ignore[no-any-return]
            workflow=workflow, status=status, page_size=page_size,  # type: ignore[arg-type]
            page_token=page_token), idempotent=True)

    def cancel_backfill(self, backfill_id: str) -> pb.CancelBackfillResponse:
        """Cancel a backfill and its unfinished runs (safe to repeat). Tried again through a
        daemon restart, a cancel that landed before it answers the CANCELLED backfill with
        its CANCELLED runs."""
        def settled() -> pb.CancelBackfillResponse | None:
            backfill = self.get_backfill(backfill_id)
            if backfill.status != pb.BACKFILL_STATUS_CANCELLED:
                return None
            run_ids: list[str] = []
            token = ""
            while True:
                page = self.list_runs(backfill_id=backfill_id, status=pb.RUN_STATUS_CANCELLED,
                                      page_size=_SETTLED_PAGE, page_token=token)
                run_ids += (run.run_id for run in page.runs)
                token = page.next_page_token
                if not token:
                    return _cancelled_backfill(backfill, run_ids)

        return self._call("CancelBackfill", pb.CancelBackfillRequest(  # type: ignore[no-any-return]
            backfill_id=backfill_id), idempotent=True, settled=settled)

    # -- notifications --------------------------------------------------------------------

    def list_notifications(self, *, run_id: str = "", status: int = 0, page_size: int = 0,
                           page_token: str = "") -> pb.ListNotificationsResponse:
        """One page of the notification outbox, newest first."""
        return self._call("ListNotifications", pb.ListNotificationsRequest(  # type: ignore[no-any-return]
            run_id=run_id, status=status, page_size=page_size,  # type: ignore[arg-type]
            page_token=page_token), idempotent=True)


class AsyncClient(_Base):
    """The asyncio twin of `Client` (`grpc.aio`): the same options and methods, awaited;
    `watch_run` and `node_log` are async iterators. Close it (`await client.close()`) or
    use `async with`. Create it inside the event loop that uses it."""

    _channel: grpc.aio.Channel

    def _open(self, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
        if credentials is None:
            return grpc.aio.insecure_channel(self.target.address, options=self._options)
        return grpc.aio.secure_channel(self.target.address, credentials, options=self._options)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request: Any, *, idempotent: bool,
                    settled: Callable[[], Awaitable[Any]] | None = None) -> Any:
        backoff = _Backoff(self.retry if idempotent else NO_RETRY)
        while True:
            try:
                response = await getattr(self._stub, method)(
                    request, timeout=self.target.unary_timeout, metadata=self._metadata)
            except grpc.RpcError as err:
                delay = backoff.next_delay(err, answered=self._answered)
                if delay is None:
                    if settled is not None and backoff.failing and (
                            err.code() is grpc.StatusCode.FAILED_PRECONDITION):
                        answer = await settled()
                        if answer is not None:
                            return answer
                    raise error_of(err) from None
                self._lost(err, backoff)
                await asyncio.sleep(delay)
                continue
            self._answered = True
            self._back(backoff)
            return response

    async def _follow(self, open_stream: Callable[[], Any]) -> AsyncIterator[Any]:
        backoff = _Backoff(self.retry)
        while True:
            try:
                stream = open_stream()
                try:
                    headers = await stream.initial_metadata()
                except BaseException:  # cancelled: grpc cancels the call only while reading
                    stream.cancel()
                    raise
                if opened(headers):
                    self._answered = True
                    self._back(backoff)  # through again, though nothing came yet
                async for item in stream:
                    self._answered = True
                    self._back(backoff)
                    yield item
                return
            except grpc.RpcError as err:
                self._answered = self._answered or stopped(err)  # it was reached
                delay = backoff.next_delay(err, answered=self._answered)
                if delay is None:
                    raise error_of(err) from None
                self._lost(err, backoff)
                await asyncio.sleep(delay)

    async def list_workflows(self, *, include_tombstones: bool = False, page_size: int = 0,
                             page_token: str = "") -> pb.ListWorkflowsResponse:
        return await self._call("ListWorkflows", pb.ListWorkflowsRequest(  # type: ignore[no-any-return]
            include_tombstones=include_tombstones, page_size=page_size,
            page_token=page_token), idempotent=True)

    async def get_workflow(self, workflow: str, *, plan_version: int = 0) -> pb.Workflow:
        return (await self._call("GetWorkflow", pb.GetWorkflowRequest(  # type: ignore[no-any-return]
            workflow=workflow, plan_version=plan_version), idempotent=True)).workflow

    async def list_plan_versions(self, workflow: str, *, page_size: int = 0,
                                 page_token: str = "") -> pb.ListPlanVersionsResponse:
        return await self._call("ListPlanVersions", pb.ListPlanVersionsRequest(  # type: ignore[no-any-return]
            workflow=workflow, page_size=page_size, page_token=page_token), idempotent=True)

    async def set_scheduling(self, workflow: str, *, enabled: bool) -> pb.Workflow:
        return (await self._call("SetSchedulingStatus", pb.SetSchedulingStatusRequest(  # type: ignore[no-any-return]
            workflow=workflow, enabled=enabled), idempotent=True)).workflow

    async def start_run(self, workflow: str, *,
                        params: Mapping[str, ParamValue] | None = None, queue: str = "",
                        remarks: str = "", logical_time: datetime | None = None) -> pb.Run:
        return (await self._call("StartRun", _start_run(  # type: ignore[no-any-return]
            workflow, params, queue, remarks, logical_time), idempotent=False)).run

    async def get_run(self, run_id: str, *, include_graph: bool = True) -> pb.Run:
        return (await self._call("GetRun", pb.GetRunRequest(  # type: ignore[no-any-return]
            run_id=run_id, include_graph=include_graph), idempotent=True)).run

    async def list_runs(self, *, workflow: str = "", status: int = 0, trigger: int = 0,
                        tag: str = "", backfill_id: str = "", page_size: int = 0,
                        page_token: str = "") -> pb.ListRunsResponse:
        return await self._call("ListRuns", pb.ListRunsRequest(  # type: ignore[no-any-return]
            workflow=workflow, status=status, trigger=trigger,  # type: ignore[arg-type]
            tag=tag, backfill_id=backfill_id, page_size=page_size, page_token=page_token),
            idempotent=True)

    async def cancel_run(self, run_id: str) -> pb.Run:
        async def settled() -> pb.CancelRunResponse | None:
            run = await self.get_run(run_id)
            return pb.CancelRunResponse(run=run) if run.status == pb.RUN_STATUS_CANCELLED \
                else None

        return (await self._call("CancelRun", pb.CancelRunRequest(  # type: ignore[no-any-return]
            run_id=run_id), idempotent=True, settled=settled)).run

    async def resume_run(self, run_id: str, nodes: Iterable[str], *, plan_version: int = 0,
                         dry_run: bool = False, remarks: str = "") -> pb.ResumeRunResponse:
        return await self._call("ResumeRun", pb.ResumeRunRequest(  # type: ignore[no-any-return]
            run_id=run_id, node_names=list(nodes), plan_version=plan_version,
            dry_run=dry_run, remarks=remarks), idempotent=dry_run)

    async def watch_run(self, run_id: str, *, after_sequence: int = 0,
                        until_end: bool = True) -> AsyncIterator[pb.WatchRunResponse]:
        last = after_sequence

        def open_stream() -> Any:
            return self._stub.WatchRun(
                pb.WatchRunRequest(run_id=run_id, after_sequence=last),
                timeout=self.target.timeout, metadata=self._metadata)

        while True:
            status = 0
            async for change in self._follow(open_stream):
                if change.sequence and change.sequence <= last:
                    continue
                last = change.sequence or last
                status = change.run_status
                yield change
            if status in FINISHED_RUN_STATUSES or not until_end:
                return
            if (await self.get_run(run_id, include_graph=False)).status in (
                    FINISHED_RUN_STATUSES):
                return
            await asyncio.sleep(self.poll_seconds)

    async def wait_run(self, run_id: str, *, timeout: float | None = None) -> pb.Run:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = await self.get_run(run_id)
            if run.status in FINISHED_RUN_STATUSES:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} has not ended after {timeout:g}s"
                                   f" (status {pb.RunStatus.Name(run.status)})")
            pause = self.poll_seconds if deadline is None else max(
                0.0, min(self.poll_seconds, deadline - time.monotonic()))
            await asyncio.sleep(pause)

    async def node_log(self, run_id: str, node: str, *, attempt: int = 0, offset: int = 0,
                       follow: bool = True, until_end: bool = True
                       ) -> AsyncIterator[pb.GetNodeLogResponse]:
        next_offset: int | None = offset or None

        def open_stream() -> Any:
            return self._stub.GetNodeLog(
                pb.GetNodeLogRequest(run_id=run_id, node_name=node, attempt=attempt,
                                     offset=next_offset or 0, follow=follow),
                timeout=self.target.timeout, metadata=self._metadata)

        while True:
            async for chunk in self._follow(open_stream):
                fresh = _fresh_log(chunk, next_offset)
                attempt = chunk.attempt or attempt
                next_offset = max(next_offset or 0, chunk.offset + len(chunk.data))
                if fresh is not None:
                    yield fresh
            if not (follow and until_end and _attempt_running(
                    await self.get_run(run_id), node, attempt)):
                return
            await asyncio.sleep(self.poll_seconds)

    async def start_backfill(self, workflow: str, *, start: datetime, end: datetime,
                             queue: str = "", remarks: str = "",
                             failure_emails: Iterable[str] = (), max_parallel_runs: int = 0,
                             dry_run: bool = False, reprocess: int = pb.REPROCESS_ALL
                             ) -> pb.StartBackfillResponse:
        return await self._call("StartBackfill", _start_backfill(  # type: ignore[no-any-return]
            workflow, start=start, end=end, queue=queue, remarks=remarks,
            failure_emails=failure_emails, max_parallel_runs=max_parallel_runs,
            dry_run=dry_run, reprocess=reprocess), idempotent=dry_run)

    async def get_backfill(self, backfill_id: str) -> pb.Backfill:
        return (await self._call("GetBackfill", pb.GetBackfillRequest(  # type: ignore[no-any-return]
            backfill_id=backfill_id), idempotent=True)).backfill

    async def list_backfills(self, *, workflow: str = "", status: int = 0,
                             page_size: int = 0, page_token: str = ""
                             ) -> pb.ListBackfillsResponse:
        return await self._call("ListBackfills", pb.ListBackfillsRequest(  # type: ignore[no-any-return]
            workflow=workflow, status=status, page_size=page_size,  # type: ignore[arg-type]
            page_token=page_token), idempotent=True)

    async def cancel_backfill(self, backfill_id: str) -> pb.CancelBackfillResponse:
        async def settled() -> pb.CancelBackfillResponse | None:
            backfill = await self.get_backfill(backfill_id)
            if backfill.status != pb.BACKFILL_STATUS_CANCELLED:
                return None
            run_ids: list[str] = []
            token = ""
            while True:
                page = await self.list_runs(backfill_id=backfill_id,
                                            status=pb.RUN_STATUS_CANCELLED,
                                            page_size=_SETTLED_PAGE, page_token=token)
                run_ids += (run.run_id for run in page.runs)
                token = page.next_page_token
                if not token:
                    return _cancelled_backfill(backfill, run_ids)

        return await self._call("CancelBackfill", pb.CancelBackfillRequest(  # type: ignore[no-any-return]
            backfill_id=backfill_id), idempotent=True, settled=settled)

    async def list_notifications(self, *, run_id: str = "", status: int = 0,
                                 page_size: int = 0, page_token: str = ""
                                 ) -> pb.ListNotificationsResponse:
        return await self._call("ListNotifications", pb.ListNotificationsRequest(  # type: ignore[no-any-return]
            run_id=run_id, status=status, page_size=page_size,  # type: ignore[arg-type]
            page_token=page_token), idempotent=True)


def _share_docs() -> None:
    """AsyncClient's methods say what Client's say."""
    for name, method in vars(AsyncClient).items():
        twin = getattr(Client, name, None)
        if callable(method) and method.__doc__ is None and twin is not None:
            method.__doc__ = twin.__doc__


_share_docs()
