"""Errors for gRPC clients: a refused request becomes a status code with a
`google.rpc.BadRequest` naming the field; a change the state database cannot record (a full
disk) becomes UNAVAILABLE; anything unexpected becomes INTERNAL, logged, and never takes the
daemon down."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from flowplan.daemon.engine.engine import RunError
from flowplan.daemon.state.store import StateWriteError

log = logging.getLogger("flowplan.server")

MAX_SHOWN_CHARS = 128  # of a client's value echoed in a message (names and ids are shorter)
MAX_MESSAGE_CHARS = 1024  # of a status message: it travels in the trailers

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")

_CODES = {grpc.StatusCode.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
          grpc.StatusCode.NOT_FOUND: code_pb2.NOT_FOUND,
          grpc.StatusCode.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION}


class RequestError(Exception):
    """A request the service refuses before it reaches the engine."""

    def __init__(self, message: str, *, field: str,
                 code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> None:
        super().__init__(message)
        self.field = field
        self.code = code


class MalformedRequest:
    """What a request body that is not a valid protobuf message decodes to: the handler
    refuses it with INVALID_ARGUMENT instead of gRPC's UNKNOWN."""

    def __init__(self, message_name: str, reason: str) -> None:
        self.message_name = message_name
        self.reason = reason

    def error(self) -> RequestError:
        return RequestError(f"the request body is not a valid {self.message_name} protobuf"
                            f" message ({self.reason}): send a serialized {self.message_name}",
                            field="")


def shown(value: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """A client's value as a message shows it: at most `limit` characters, then '…'."""
    return value if len(value) <= limit else value[:limit] + "…"


def status_of(error: RunError | RequestError) -> tuple[grpc.StatusCode, str]:
    if isinstance(error, RequestError):
        return error.code, str(error)
    if error.not_found:
        return grpc.StatusCode.NOT_FOUND, str(error)
    if error.precondition:
        return grpc.StatusCode.FAILED_PRECONDITION, str(error)
    return grpc.StatusCode.INVALID_ARGUMENT, str(error)


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: RunError | RequestError
                ) -> NoReturn:
    code, message = status_of(error)
    message = shown(message, MAX_MESSAGE_CHARS)
    detail = any_pb2.Any()
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        detail.Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=error.field,
                                                        description=message)]))
    else:
        detail.Pack(error_details_pb2.ErrorInfo(reason=code.name, domain="flowplan",
                                                metadata={"field": error.field}))
    status = status_pb2.Status(code=_CODES[code], message=message, details=[detail])
    await context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("unreachable")  # abort raises


def unwritable(error: StateWriteError) -> str:
    """UNAVAILABLE's message: the call changed nothing and can be repeated."""
    return (f"{error}: nothing was changed; call again once the daemon's disk has room"
            " (health is NOT_SERVING until then)")


def unary(method: Callable[[Any, _Request, Any], Awaitable[_Response]]
          ) -> Callable[[Any, _Request, Any], Awaitable[_Response]]:
    """Turn refusals into statuses, and a bug into INTERNAL instead of a dead daemon."""

    @wraps(method)
    async def wrapper(self: Any, request: _Request, context: Any) -> _Response:
        try:
            if isinstance(request, MalformedRequest):
                raise request.error()
            return await method(self, request, context)
        except (RunError, RequestError) as exc:
            await abort(context, exc)
        except grpc.aio.AbortError:
            raise
        except StateWriteError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, unwritable(exc))
            raise
        except Exception as exc:
            log.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {exc}")
            raise

    return wrapper


def stream(method: Callable[[Any, _Request, Any], AsyncIterator[_Response]]
           ) -> Callable[[Any, _Request, Any], AsyncIterator[_Response]]:
    @wraps(method)
    async def wrapper(self: Any, request: _Request, context: Any) -> AsyncIterator[_Response]:
        try:
            if isinstance(request, MalformedRequest):
                raise request.error()
            async for item in method(self, request, context):
                yield item
        except (RunError, RequestError) as exc:
            await abort(context, exc)
        except grpc.aio.AbortError:
            raise
        except StateWriteError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, unwritable(exc))
        except Exception as exc:
            log.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {exc}")

    return wrapper
