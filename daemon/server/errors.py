"""Errors for gRPC clients: a refused request becomes a status code with a
`google.rpc.BadRequest` naming the field; a change the state database cannot record (a full
disk) becomes UNAVAILABLE; anything unexpected becomes INTERNAL, logged, and never takes the
daemon down."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError
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
    (`serve_tolerant`) refuses it with INVALID_ARGUMENT instead of gRPC's UNKNOWN."""

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


SHUTTING_DOWN = "SHUTTING_DOWN"  # ErrorInfo.reason of a stream the daemon ends as it stops
STREAM_OPENED = (("flowplan-stream", "open"),)  # a stream's headers, once the daemon took it


async def opened(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Send a stream's response headers now, before its first message (a log still empty, a
    run that waits may send none for long): a client then knows that the daemon took the
    request, and follows again after losing it, even to a daemon that was killed."""
    await context.send_initial_metadata(STREAM_OPENED)


async def shutting_down(context: grpc.aio.ServicerContext[Any, Any], message: str
                        ) -> NoReturn:
    """End a stream as the daemon stops: UNAVAILABLE, with an ErrorInfo (domain flowplan,
    reason SHUTTING_DOWN) that tells a client the daemon itself answered, so it follows
    again after the restart even when nothing came on the stream before."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=SHUTTING_DOWN, domain="flowplan"))
    await context.abort_with_status(rpc_status.to_status(status_pb2.Status(
        code=code_pb2.UNAVAILABLE, message=message, details=[detail])))
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


Handlers = dict[str, "grpc.RpcMethodHandler[Any, Any]"]


def handlers_of(add_to_server: Callable[[Any, Any], None], servicer: object) -> Handlers:
    """The handlers a generated `add_XServicer_to_server(servicer, server)` would register,
    by method name, without registering them."""
    handlers: Handlers = {}

    class Collect:
        def add_generic_rpc_handlers(self, generic: object) -> None:
            pass

        def add_registered_method_handlers(self, name: str, methods: Handlers) -> None:
            handlers.update(methods)

    add_to_server(servicer, Collect())
    return handlers


def serve_tolerant(server: grpc.aio.Server, service: ServiceDescriptor,
                   handlers: Handlers) -> None:
    """Serve `handlers` (of `service`) on `server`, each refusing a request body that does
    not decode with INVALID_ARGUMENT and a BadRequest, as every other refusal: gRPC itself
    would answer UNKNOWN. Also for servicers not ours (health, reflection)."""
    methods = service.methods_by_name
    tolerant = {name: _tolerant(handler, methods[name].input_type.full_name)
                for name, handler in handlers.items()}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, tolerant),))
    server.add_registered_method_handlers(service.full_name, tolerant)


def _tolerant(handler: grpc.RpcMethodHandler[Any, Any], message_name: str
              ) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with a body that does not decode turned into a MalformedRequest, which its
    behaviour refuses before the method sees it."""
    parse = handler.request_deserializer
    assert parse is not None

    def tolerant(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return MalformedRequest(message_name, str(exc) or "it does not decode")

    kinds = {"unary_unary": grpc.unary_unary_rpc_method_handler,
             "unary_stream": grpc.unary_stream_rpc_method_handler,
             "stream_unary": grpc.stream_unary_rpc_method_handler,
             "stream_stream": grpc.stream_stream_rpc_method_handler}
    for kind, make in kinds.items():
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            refusing = (_refusing_streams if handler.request_streaming else _refusing)(behaviour)
            return make(refusing, request_deserializer=tolerant,
                        response_serializer=handler.response_serializer)
    raise AssertionError(f"a handler for {message_name} without a behaviour")


def _refusing(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """A one-request behaviour that aborts on a MalformedRequest: a coroutine or an async
    generator as `behaviour` is (gRPC calls them differently)."""
    if inspect.isasyncgenfunction(behaviour):
        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            if isinstance(request, MalformedRequest):
                await abort(context, request.error())
            async for item in behaviour(request, context):
                yield item

        return stream

    async def call(request: Any, context: Any) -> Any:
        if isinstance(request, MalformedRequest):
            await abort(context, request.error())
        return await behaviour(request, context)

    return call


def _refusing_streams(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    """A streaming-request behaviour whose requests abort the call at the first
    MalformedRequest."""

    async def checked(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, MalformedRequest):
                await abort(context, request.error())
            yield request

    if inspect.isasyncgenfunction(behaviour):
        async def stream(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            async for item in behaviour(checked(requests, context), context):
                yield item

        return stream

    async def call(requests: AsyncIterator[Any], context: Any) -> Any:
        return await behaviour(checked(requests, context), context)

    return call
