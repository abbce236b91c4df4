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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

import grpc

from flowplan.compiler.console import printable

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

class UsageError(ValueError):
    """An option that parsed but cannot be used (an unreadable token file...): exit 2 in
    the CLI; raised by the Python client's constructor, and by its calls given a time the
    daemon cannot take."""


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
    host, colon, port = address.rpartition(":")
    if not colon or not host or not (port.isascii() and port.isdigit()) or not (
            0 < int(port) < 65536):
        # gRPC would wrap a port past 65535 (99999 -> 34463) and call whatever listens there
        raise UsageError(f"address {address!r}: give HOST:PORT with a port from 1 to 65535,"
                         f" such as {DEFAULT_ADDRESS} (--address or ${ADDRESS_ENV})")
    if token_file is None and environ.get(TOKEN_FILE_ENV):
        token_file = Path(environ[TOKEN_FILE_ENV])
    token = None
    if token_file is not None:
        token = _read(token_file, "token file").decode("utf-8", errors="replace").strip()
        if not token:
            raise UsageError(f"token file {token_file} is empty")
        if not token.isascii() or any(c.isspace() or not c.isprintable() for c in token):
            # gRPC refuses any other byte in a header, on every call (INTERNAL)
            raise UsageError(f"token file {token_file}: the token must be one line of ASCII"
                             " characters without spaces")
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together (mutual TLS)")
    tls = None
    if tls_ca is not None or tls_cert is not None:
        tls = Tls(root_certificates=_pem(tls_ca, "--tls-ca", b"CERTIFICATE") if tls_ca else None,
                  certificate_chain=(_pem(tls_cert, "--tls-cert", b"CERTIFICATE") if tls_cert
                                     else None),
                  private_key=_pem(tls_key, "--tls-key", b"PRIVATE KEY") if tls_key else None)
    return Target(address=address, token=token, token_file=token_file, tls=tls,
                  timeout=timeout)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from None


# -- failures ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class FieldViolation:
    """One `google.rpc.BadRequest` field violation: the request field and what is wrong."""

    field: str
    description: str


class ClientError(Exception):
    """A call the daemon (or the channel) refused: the gRPC `code`, the daemon's `message`
    and, for INVALID_ARGUMENT, the request fields at fault (`violations`)."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 violations: tuple[FieldViolation, ...] = (), *, reached: bool = False) -> None:
        super().__init__(f"{code.name}: {message}" + "".join(
            f"; {v.field}: {v.description}" for v in _beyond(message, violations)))
        self.code = code
        self.message = message
        self.violations = violations
        self.reached = reached  # the status carries the daemon's own details: it answered


def opened(metadata: Sequence[tuple[str, Any]] | None) -> bool:
    """True when a stream's response headers say that the daemon took it (`flowplan-stream:
    open`, docs/api.md): it was reached, though nothing may have come on the stream yet."""
    return any(key == "flowplan-stream" and value == "open" for key, value in metadata or ())


def stopped(err: grpc.RpcError) -> bool:
    """True when the daemon itself ended the stream as it stopped (UNAVAILABLE with its
    ErrorInfo SHUTTING_DOWN): it was reached, so the stream is followed again after the
    restart even when nothing came on it before (a log still empty)."""
    from google.rpc import error_details_pb2  # type: ignore[import-untyped,unused-ignore]
    from grpc_status import rpc_status  # type: ignore[import-untyped,unused-ignore]

    if err.code() is not grpc.StatusCode.UNAVAILABLE:
        return False
    try:
        status = rpc_status.from_call(err)
    except (ValueError, AttributeError):
        return False
    info = error_details_pb2.ErrorInfo()
    return status is not None and any(
        detail.Unpack(info) and info.domain == "flowplan" and info.reason == "SHUTTING_DOWN"
        for detail in status.details)


def error_of(err: grpc.RpcError) -> ClientError:
    """The ClientError a failed gRPC call means (its status details read for violations)."""
    # imported here: only a failed call pays for them
    from google.rpc import error_details_pb2  # type: ignore[import-untyped,unused-ignore]
    from grpc_status import rpc_status  # type: ignore[import-untyped,unused-ignore]

    code = err.code()
    message = err.details() or ""
    violations: list[FieldViolation] = []
    try:
        status = rpc_status.from_call(err)
    except (ValueError, AttributeError):  # details that contradict the status, or no call
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(FieldViolation(v.field, v.description)
                              for v in bad.field_violations)
    return ClientError(code, message, tuple(violations),
                       reached=status is not None and len(status.details) > 0)


def exit_code(failure: ClientError, *, connected: bool) -> int:
    """3 when the daemon could not be reached, else 1 (a daemon that answered UNAVAILABLE
    itself, its state database full, was reached)."""
    if failure.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and (
            not connected):
        return EXIT_UNREACHABLE
    return EXIT_FAILED


class Reachable(Protocol):
    """What `report` asks of a client: where it calls, and whether it got through."""

    @property
    def target(self) -> Target: ...

    def connected(self, *, now: bool = False) -> bool: ...


def _beyond(message: str, violations: tuple[FieldViolation, ...]
            ) -> tuple[FieldViolation, ...]:
    """The violations that say more than the message (the daemon's message for one bad field
    is that field's description)."""
    return tuple(v for v in violations if v.description != message)


def _pem(path: Path, option: str, kind: bytes) -> bytes:
    """The PEM file `path` holding a `kind` block: gRPC would take another for a daemon it
    cannot reach (exit 3, 'is the daemon running?')."""
    data = _read(path, option)
    if b"-----BEGIN " not in data or kind + b"-----" not in data:
        raise UsageError(f"{option} {path}: not a PEM file with a {kind.decode().lower()}"
                         f" ('-----BEGIN ...{kind.decode()}-----'); give one in PEM")
    if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data:
        raise UsageError(f"{option} {path}: the key is encrypted, and gRPC takes no passphrase;"
                         " give it decrypted (openssl pkey -in KEY -out PLAIN)")
    return data


def report(failure: ClientError, client: Reachable, out: TextIO) -> int:
    """Print a failed call (`error: CODE: message`, each field violation, a hint) to `out`;
    returns the exit code."""
    if failure.code is grpc.StatusCode.UNAVAILABLE:
        # the daemon's own UNAVAILABLE (with its details: it stops), else whether the
        # channel is connected now (a full disk: the daemon is there); having answered
        # before, a daemon that went away for good is not reached
        connected = failure.reached or client.connected(now=True)
    else:
        connected = failure.code is not grpc.StatusCode.DEADLINE_EXCEEDED or client.connected()
    code = exit_code(failure, connected=connected)
    print(printable(f"error: {failure.code.name}: {failure.message}", colors=False), file=out)
    for violation in _beyond(failure.message, failure.violations):
        print(printable(f"  {violation.field}: {violation.description}", colors=False),
              file=out)
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
    elif failure.code is grpc.StatusCode.PERMISSION_DENIED:
        whose = f"the token in {target.token_file}" if target.token_file else "this token"
        print(f"hint: the daemon knows {whose}, but its role may not do this; use a token"
              " with the role named above (the daemon's --roles-file)", file=out)
    elif failure.code is grpc.StatusCode.UNAVAILABLE:
        print("hint: the daemon answered but cannot take this call now (its message says"
              " why); try again later", file=out)
    elif failure.code is grpc.StatusCode.DEADLINE_EXCEEDED:
        print(f"hint: no answer within {target.unary_timeout:g}s; a longer --timeout may"
              " help", file=out)
    out.flush()
    return code
