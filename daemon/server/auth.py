"""Who may call what, in one place: every WorkflowService call must carry
`authorization: Bearer <token>` of a known token (else UNAUTHENTICATED), and the token's role
must be at least the method's in `METHOD_ROLES` (else PERMISSION_DENIED naming the role
needed). Health checks and reflection stay open, so load balancers and `grpcurl list` work
without a token.

A dry run (`dry_run` set on StartBackfill or ResumeRun) changes nothing: a viewer may ask
it. tests/test_roles.py checks that every RPC of the proto has its entry here, and
docs/api.md's table against it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, TypeAlias, cast

import grpc

from flowplan.daemon.server.errors import MalformedRequest
from flowplan.daemon.server.roles import Grant, Role

log = logging.getLogger("flowplan.daemon.auth")

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
SERVICE_PREFIX: Final = "/flowplan.v1.WorkflowService/"

# The least role each RPC needs. A method missing here (a new RPC) needs ADMIN, and
# tests/test_roles.py fails until it is added.
METHOD_ROLES: Final[Mapping[str, Role]] = {
    "ListWorkflows": Role.VIEWER,
    "GetWorkflow": Role.VIEWER,
    "ListPlanVersions": Role.VIEWER,
    "SetSchedulingStatus": Role.OPERATOR,  # pause / unpause
    "StartRun": Role.OPERATOR,
    "StartBackfill": Role.OPERATOR,  # VIEWER with dry_run
    "GetBackfill": Role.VIEWER,
    "ListBackfills": Role.VIEWER,
    "GetRun": Role.VIEWER,
    "ListRuns": Role.VIEWER,
    "CancelRun": Role.OPERATOR,
    "CancelBackfill": Role.OPERATOR,
    "ResumeRun": Role.OPERATOR,  # VIEWER with dry_run
    "WatchRun": Role.VIEWER,
    "GetNodeLog": Role.VIEWER,
    "ListNotifications": Role.VIEWER,
}
# Methods whose request has a `dry_run` field: with it set they only read (VIEWER).
DRY_RUN_METHODS: Final = frozenset({"StartBackfill", "ResumeRun"})

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the stubs


def least_role(method: str) -> Role:
    """The role the RPC `method` (its short name) needs: ADMIN if it has no entry."""
    return METHOD_ROLES.get(method, Role.ADMIN)


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()  # same length for all: no length leaks


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates a call by its bearer token and authorizes it by the token's role."""

    def __init__(self, grants: Iterable[Grant]) -> None:
        self._grants: tuple[tuple[bytes, Grant], ...] = ()
        self._current: tuple[Grant, ...] = ()
        self.replace(grants)

    def replace(self, grants: Iterable[Grant]) -> None:
        """Judge the calls from now on by `grants` (a reload); at least one."""
        current = tuple(grants)
        replaced = tuple((_digest(g.token.encode()), g) for g in current)
        if not replaced:
            raise ValueError("a TokenInterceptor needs at least one token")
        self._grants = replaced  # one assignment: a call sees the old tuple or the new
        self._current = current

    @property
    def grants(self) -> tuple[Grant, ...]:
        """The grants of now: the same tuple until the next `replace` (the console's
        sessions judge their tokens again when it changes)."""
        return self._current

    def caller(self, given: bytes) -> Grant | None:
        """The grant whose token `given` is, compared in constant time: every token is
        compared, whichever matches."""
        digest = _digest(given)
        found: Grant | None = None
        for expected, grant in self._grants:
            if hmac.compare_digest(digest, expected) and found is None:
                found = grant
        return found

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
            details: grpc.HandlerCallDetails) -> Handler | None:
        method: str = details.method
        if method.startswith(OPEN_SERVICES):
            return await continuation(details)
        metadata = dict(details.invocation_metadata or ())
        given = metadata.get("authorization", "")
        given_bytes = given.encode() if isinstance(given, str) else bytes(given)
        handler = await continuation(details)
        scheme, _, token = given_bytes.partition(b" ")
        grant = self.caller(token) if scheme == b"Bearer" else None
        if grant is None:
            message = ("missing bearer token: send `authorization: Bearer <token>` metadata"
                       if not given else "invalid bearer token")
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, message)
        short = method.removeprefix(SERVICE_PREFIX)
        needed = least_role(short)
        if grant.role >= needed:
            return handler
        if short in DRY_RUN_METHODS and grant.role >= Role.VIEWER and handler is not None:
            return _dry_run_only(handler, short, grant)
        return _refusal(handler, grpc.StatusCode.PERMISSION_DENIED,
                        _denied(short, needed, grant))


def _denied(method: str, needed: Role, grant: Grant) -> str:
    log.warning("permission denied", extra={"fields": {
        "method": method, "token": grant.name, "role": grant.role.label,
        "needed": needed.label}})
    return (f"{method} needs the role {needed.label} (or higher); the token {grant.name}"
            f" has the role {grant.role.label}")


def _dry_run_only(handler: Handler, method: str, grant: Grant) -> Handler:
    """`handler` for a request with `dry_run` set; PERMISSION_DENIED for one without (a
    body that does not decode is INVALID_ARGUMENT, as for every role)."""
    # the aio server's handlers are coroutines (the stubs type them as the sync server's)
    behaviour = cast("Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]] | None",
                     handler.unary_unary)
    if behaviour is None:  # pragma: no cover - both dry-run methods are unary
        return _refusal(handler, grpc.StatusCode.PERMISSION_DENIED,
                        _denied(method, least_role(method), grant))

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        # a body that does not decode has no dry_run: `behaviour` refuses it as for any role
        if not isinstance(request, MalformedRequest) and not request.dry_run:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                _denied(method, least_role(method), grant)
                                + "; with dry_run set, a viewer may ask it")
        return await behaviour(request, context)

    return grpc.unary_unary_rpc_method_handler(
        unary, request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer)


def _refusal(handler: Handler | None, code: grpc.StatusCode, message: str) -> Handler:
    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    if handler is not None and handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(
            streaming, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
    return grpc.unary_unary_rpc_method_handler(
        unary, request_deserializer=handler.request_deserializer if handler else None,
        response_serializer=handler.response_serializer if handler else None)
