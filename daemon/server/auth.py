"""Bearer-token authentication: every WorkflowService call must carry
`authorization: Bearer <token>`; health checks and reflection stay open, so load balancers
and `grpcurl list` work without it."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class TokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails],
                                         Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
            details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = details.method
        if method.startswith(OPEN_SERVICES):
            return await continuation(details)
        metadata = dict(details.invocation_metadata or ())
        given = metadata.get("authorization", "")
        given_bytes = given.encode() if isinstance(given, str) else bytes(given)
        handler = await continuation(details)
        if hmac.compare_digest(given_bytes, self._expected):  # constant time
            return handler
        message = ("missing bearer token: send `authorization: Bearer <token>` metadata"
                   if not given else "invalid bearer token")
        return _refusal(handler, message)


def _refusal(handler: grpc.RpcMethodHandler[Any, Any] | None, message: str
             ) -> grpc.RpcMethodHandler[Any, Any]:
    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator

    if handler is not None and handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(
            streaming, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
    return grpc.unary_unary_rpc_method_handler(
        unary, request_deserializer=handler.request_deserializer if handler else None,
        response_serializer=handler.response_serializer if handler else None)
