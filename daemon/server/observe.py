"""Observing each gRPC call from an interceptor: a hook as it begins, one as it ends with
its status code. Metrics (daemon/server/metrics.py) and traces (daemon/server/otel.py) are
built on it; only grpc is imported here, so the tracing code stays out until it is on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio

Context = grpc.aio.ServicerContext[Any, Any]
Begun = TypeVar("Begun")


def status_code(context: Context, failed: BaseException | None) -> grpc.StatusCode:
    """The code a call ended with: what the handler set, CANCELLED when the client left,
    UNKNOWN for an exception that set none."""
    if isinstance(failed, asyncio.CancelledError | GeneratorExit):  # the client went away
        return grpc.StatusCode.CANCELLED
    code: Any = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # the cython context may give the number
        for member in grpc.StatusCode:
            if member.value[0] == code:
                return member
    return grpc.StatusCode.UNKNOWN if failed is not None else grpc.StatusCode.OK


def observed(handler: grpc.RpcMethodHandler[Any, Any], begin: Callable[[], Begun],
             end: Callable[[Begun, Context, BaseException | None], None]
             ) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with `begin()` called as each call starts and `end(begun, context, failed)`
    as it ends, however it ends (a stream when its client leaves too)."""

    def unary_response(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        async def call(request: Any, context: Context) -> Any:
            begun, failed = begin(), None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                failed = exc
                raise
            finally:
                end(begun, context, failed)
        return call

    def stream_response(behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def call(request: Any, context: Context) -> AsyncIterator[Any]:
            begun, failed = begin(), None
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as exc:
                failed = exc
                raise
            finally:
                end(begun, context, failed)
        return call

    options = {"request_deserializer": handler.request_deserializer,
               "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary_response(handler.unary_unary),
                                                   **options)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream_response(handler.unary_stream),
                                                    **options)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary_response(handler.stream_unary),
                                                    **options)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(stream_response(handler.stream_stream),
                                                     **options)
    return handler
