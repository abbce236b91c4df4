"""How the client reaches a daemon, and what a failed call means.

Where: `--address` or `$FLOWPLAN_ADDRESS` (default 127.0.0.1:50051). Who: a bearer token read
from `--token-file` or `$FLOWPLAN_TOKEN_FILE`, sent as `authorization: Bearer <token>` on
every call. How: plaintext, or TLS when `--tls-ca` (the CA that signed the daemon's
certificate) or a client certificate (`--tls-cert` with `--tls-key`, mutual TLS) is given.
Every unary call has a deadline (`--timeout`, 10 s by default); streams have none unless
`--timeout` is given.

Exit codes: 0 done, 1 the daemon answered with an error (or the run or backfill waited for
did not succeed), 2 usage error, 3 the daemon cannot be reached (UNAVAILABLE, or a deadline
that passed with no connection to it).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped,unused-ignore]
from grpc_status import rpc_status  # type: ignore[import-untyped,unused-ignore]

from flowplan.v1 import workflow_service_pb2 as pb
from flowplan.v1 import workflow_service_pb2_grpc as pb_grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_TIMEOUT_SECONDS = 10.0
ADDRESS_ENV, TOKEN_FILE_ENV = "FLOWPLAN_ADDRESS", "FLOWPLAN_TOKEN_FILE"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # GetRun of a run with thousands of nodes and attempts

# A stream that breaks (UNAVAILABLE after it delivered, e.g. a daemon restart) is opened
# again after a pause that doubles from the first delay to the longest, for this long at most.
RECONNECT_FIRST_DELAY = 0.2
RECONNECT_MAX_DELAY = 5.0
RECONNECT_GIVE_UP_SECONDS = 120.0
CONNECTED_PROBE_SECONDS = 0.2  # after a deadline: is the channel connected? (else exit 3)

UNREACHABLE_HINT = "is the daemon running? Start one with 'flowplan up' or 'flowplan serve'"

T = TypeVar("T")


class UsageError(Exception):
    """An option that parsed but cannot be used (an unreadable token file...): exit 2."""


@dataclasses.dataclass(frozen=True, slots=True)
class Tls:
    """PEM bytes for a TLS channel: the roots to trust (None: the system's) and, for mutual
    TLS, the client's certificate chain and private key."""

    root_certificates: bytes | None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A daemon and how to call it."""

    address: str
    token: str | None = None
    token_file: Path | None = None  # where the token came from, for messages
    tls: Tls | None = None
    timeout: float | None = None  # None: DEFAULT_TIMEOUT_SECONDS for unary calls, streams none

    @property
    def unary_timeout(self) -> float:
        return DEFAULT_TIMEOUT_SECONDS if self.timeout is None else self.timeout


def target_from_options(*, address: str | None, token_file: Path | None,
                        tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None,
                        timeout: float | None, environ: Mapping[str, str]) -> Target:
    """The target the options (over the environment) name; raises UsageError."""
    address = address or environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS
    if token_file is None and environ.get(TOKEN_FILE_ENV):
        token_file = Path(environ[TOKEN_FILE_ENV])
    token = None
    if token_file is not None:
        token = _read(token_file, "token file").decode("utf-8", errors="replace").strip()
        if not token:
            raise UsageError(f"token file {token_file} is empty")
        if any(c.isspace() or not c.isprintable() for c in token):
            raise UsageError(f"token file {token_file}: the token must be one line without"
                             " spaces")
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together (mutual TLS)")
    tls = None
    if tls_ca is not None or tls_cert is not None:
        tls = Tls(root_certificates=_read(tls_ca, "--tls-ca") if tls_ca else None,
                  certificate_chain=_read(tls_cert, "--tls-cert") if tls_cert else None,
                  private_key=_read(tls_key, "--tls-key") if tls_key else None)
    return Target(address=address, token=token, token_file=token_file, tls=tls,
                  timeout=timeout)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from None


class Client:
    """A channel to one daemon with typed calls. Unary calls carry the deadline and the
    token; `follow` reopens a stream that breaks. Close it (or use `with`)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        if target.tls is None:
            self._channel = grpc.insecure_channel(target.address, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=target.tls.root_certificates,
                private_key=target.tls.private_key,
                certificate_chain=target.tls.certificate_chain)
            self._channel = grpc.secure_channel(target.address, credentials, options=options)
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {target.token}"),) if target.token else ())
        self._answered = False  # a call has returned: the daemon was reached
        self._stub = pb_grpc.WorkflowServiceStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def connected(self) -> bool:
        """True when a call has returned, or the channel is connected now: the daemon was
        reached. (Watching the channel's state all along would cost every command 0.2 s at
        close, so it is asked only after a failure.)"""
        if self._answered:
            return True
        ready = grpc.channel_ready_future(self._channel)
        try:
            ready.result(timeout=CONNECTED_PROBE_SECONDS)
        except grpc.FutureTimeoutError:
            return False
        finally:
            ready.cancel()
        return True

    # -- unary calls ----------------------------------------------------------------------

    def _unary(self, method: Any, request: Any) -> Any:
        response = method(request, timeout=self.target.unary_timeout, metadata=self._metadata)
        self._answered = True
        return response

    def list_workflows(self, request: pb.ListWorkflowsRequest) -> pb.ListWorkflowsResponse:
        return self._unary(self._stub.ListWorkflows, request)  # type: ignore[no-any-return]

    def list_plan_versions(
            self, request: pb.ListPlanVersionsRequest) -> pb.ListPlanVersionsResponse:
        return self._unary(self._stub.ListPlanVersions, request)  # type: ignore[no-any-return]

    def set_scheduling_status(
            self, request: pb.SetSchedulingStatusRequest) -> pb.SetSchedulingStatusResponse:
        return self._unary(self._stub.SetSchedulingStatus,  # type: ignore[no-any-return]
                           request)

    def start_run(self, request: pb.StartRunRequest) -> pb.StartRunResponse:
        return self._unary(self._stub.StartRun, request)  # type: ignore[no-any-return]

    def start_backfill(self, request: pb.StartBackfillRequest) -> pb.StartBackfillResponse:
        return self._unary(self._stub.StartBackfill, request)  # type: ignore[no-any-return]

    def get_backfill(self, request: pb.GetBackfillRequest) -> pb.GetBackfillResponse:
        return self._unary(self._stub.GetBackfill, request)  # type: ignore[no-any-return]

    def list_backfills(self, request: pb.ListBackfillsRequest) -> pb.ListBackfillsResponse:
        return self._unary(self._stub.ListBackfills, request)  # type: ignore[no-any-return]

    def list_notifications(self, request: pb.ListNotificationsRequest
                           ) -> pb.ListNotificationsResponse:
        return self._unary(self._stub.ListNotifications,  # type: ignore[no-any-return]
                           request)

    def get_run(self, request: pb.GetRunRequest) -> pb.GetRunResponse:
        return self._unary(self._stub.GetRun, request)  # type: ignore[no-any-return]

    def list_runs(self, request: pb.ListRunsRequest) -> pb.ListRunsResponse:
        return self._unary(self._stub.ListRuns, request)  # type: ignore[no-any-return]

    def cancel_run(self, request: pb.CancelRunRequest) -> pb.CancelRunResponse:
        return self._unary(self._stub.CancelRun, request)  # type: ignore[no-any-return]

    def cancel_backfill(self, request: pb.CancelBackfillRequest) -> pb.CancelBackfillResponse:
        return self._unary(self._stub.CancelBackfill, request)  # type: ignore[no-any-return]

    def resume_run(self, request: pb.ResumeRunRequest) -> pb.ResumeRunResponse:
        return self._unary(self._stub.ResumeRun, request)  # type: ignore[no-any-return]

    # -- streams --------------------------------------------------------------------------

    def watch_run(self, request: pb.WatchRunRequest) -> Iterator[pb.WatchRunResponse]:
        return self._stub.WatchRun(  # type: ignore[no-any-return]
            request, timeout=self.target.timeout, metadata=self._metadata)

    def get_node_log(self, request: pb.GetNodeLogRequest) -> Iterator[pb.GetNodeLogResponse]:
        return self._stub.GetNodeLog(  # type: ignore[no-any-return]
            request, timeout=self.target.timeout, metadata=self._metadata)

    def follow(self, open_stream: Callable[[], Iterable[T]], *,
               note: Callable[[str], None]) -> Iterator[T]:
        """The items of `open_stream()`, calling it again when the stream breaks with
        UNAVAILABLE after the daemon was reached (a restart, a dropped connection), with
        growing pauses, until a stream ends or RECONNECT_GIVE_UP_SECONDS pass without one
        answering. `open_stream` builds its request from what the caller has seen, so that
        the new stream continues where the broken one stopped."""
        delay = RECONNECT_FIRST_DELAY
        broken_since: float | None = None
        while True:
            try:
                for item in open_stream():
                    self._answered = True
                    if broken_since is not None:
                        note("reconnected")
                        broken_since, delay = None, RECONNECT_FIRST_DELAY
                    yield item
                return
            except grpc.RpcError as err:
                if err.code() is not grpc.StatusCode.UNAVAILABLE or not self._answered:
                    raise
                now = time.monotonic()
                if broken_since is None:
                    broken_since = now
                    note(f"lost the daemon (UNAVAILABLE: {err.details() or 'no details'});"
                         " retrying")
                elif now - broken_since > RECONNECT_GIVE_UP_SECONDS:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)

    def retry_unavailable(self, call: Callable[[], T], *, note: Callable[[str], None]) -> T:
        """`call()`, tried again like `follow` when it fails UNAVAILABLE after the daemon
        was reached: for polling that outlives a daemon restart."""
        return next(iter(self.follow(lambda: (call(),), note=note)))


# -- failures ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """A failed call as the user reads it."""

    code: grpc.StatusCode
    message: str
    violations: tuple[tuple[str, str], ...] = ()  # google.rpc.BadRequest (field, description)


def failure_of(err: grpc.RpcError) -> Failure:
    code = err.code()
    message = err.details() or ""
    violations: list[tuple[str, str]] = []
    try:
        status: status_pb2.Status | None = rpc_status.from_call(err)
    except (ValueError, AttributeError):  # details that contradict the status, or no call
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend((v.field, v.description) for v in bad.field_violations)
    return Failure(code=code, message=message, violations=tuple(violations))


def exit_code(failure: Failure, *, connected: bool) -> int:
    """3 when the daemon could not be reached, else 1."""
    if failure.code is grpc.StatusCode.UNAVAILABLE:
        return EXIT_UNREACHABLE
    if failure.code is grpc.StatusCode.DEADLINE_EXCEEDED and not connected:
        return EXIT_UNREACHABLE
    return EXIT_FAILED


def report(err: grpc.RpcError, client: Client, out: TextIO) -> int:
    """Print a failed call (`error: CODE: message`, each field violation, a hint) to `out`;
    returns the exit code."""
    failure = failure_of(err)
    code = exit_code(failure, connected=(failure.code is not grpc.StatusCode.DEADLINE_EXCEEDED
                                         or client.connected()))
    print(f"error: {failure.code.name}: {failure.message}", file=out)
    for field, description in failure.violations:
        print(f"  {field}: {description}", file=out)
    target = client.target
    if code == EXIT_UNREACHABLE:
        where = f"{target.address} ({'TLS' if target.tls else 'plaintext'})"
        print(f"hint: no answer from {where}; {UNREACHABLE_HINT}", file=out)
    elif failure.code is grpc.StatusCode.UNAUTHENTICATED:
        if target.token_file is None:
            print(f"hint: the daemon wants a bearer token: --token-file FILE or"
                  f" ${TOKEN_FILE_ENV}", file=out)
        else:
            print(f"hint: the daemon refused the token in {target.token_file}", file=out)
    elif failure.code is grpc.StatusCode.DEADLINE_EXCEEDED:
        print(f"hint: no answer within {target.unary_timeout:g}s; a longer --timeout may"
              " help", file=out)
    out.flush()
    return code
