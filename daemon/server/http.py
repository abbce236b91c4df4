"""The daemon's HTTP listener (`--http ADDR`): `GET /metrics` and the web console's pages
(daemon/server/console/), in the daemon's own process and event loop.

aiohttp serves it: a small, well-kept asyncio HTTP server (the same loop as grpc.aio, no
thread), with the routing, middlewares, static files, streaming responses and WebSockets that
a web console grows into. The stdlib's asyncio streams would do for one route but leave HTTP
parsing, keep-alive and limits to us.

The same exposure rules as gRPC (`ServeConfig.check`): a non-loopback address needs a token,
TLS or `--insecure`. With tokens, `/metrics` needs `Authorization: Bearer <token>` of any role
as gRPC calls do, and the console a login with a token (then a session cookie); with
`--tls-cert/--tls-key` it serves HTTPS (and with `--tls-client-ca`, asks for a client
certificate).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

from flowplan.daemon.server.config import ServeConfig, UsageError

if TYPE_CHECKING:
    from flowplan.daemon.server.console import Console

log = logging.getLogger("flowplan.daemon")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text format 0.0.4


class HttpServer:
    """`start()` binds and serves (UsageError when it cannot bind); `stop()` closes."""

    def __init__(self, config: ServeConfig, scrape: Callable[[], bytes], *,
                 caller: Callable[[bytes], object | None] | None = None,
                 console: Console | None = None) -> None:
        """`caller` judges a bearer token (None: no tokens configured, all open);
        `console` mounts the web console's routes."""
        assert config.http is not None
        self._config = config
        self._scrape = scrape
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        middlewares = [_bearer(caller)] if caller is not None else []
        self._app = web.Application(middlewares=middlewares)
        self._app.router.add_get("/metrics", self._metrics)
        self._console = console
        if console is not None:
            console.mount(self._app)

    @property
    def url(self) -> str:
        host = self._config.http.rsplit(":", 1)[0] if self._config.http else ""
        scheme = "https" if self._config.tls_cert else "http"
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        config = self._config
        assert config.http is not None
        host, _, port = config.http.rpartition(":")
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            sock = _bind(host.strip("[]"), int(port))
        except OSError as exc:
            await runner.cleanup()
            raise UsageError(f"cannot listen on --http {config.http}: {_why(exc)}") from exc
        site = web.SockSite(runner, sock, ssl_context=_tls(config), shutdown_timeout=1.0)
        await site.start()
        self._runner = runner
        self.port = sock.getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._console is not None:  # after the last request: its sessions' file
            self._console.close()

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            body = self._scrape()
        except Exception:  # e.g. the state database unreadable: this scrape fails, not us
            log.exception("GET /metrics failed")
            return web.Response(status=500, text="metrics failed: see the daemon's log\n")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _bearer(caller: Callable[[bytes], object | None]) -> Middleware:
    """`/metrics` needs a bearer token of any role (the console has its login)."""

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/metrics":
            return await handler(request)
        given = request.headers.get("Authorization", "")
        scheme, _, token = given.encode(errors="replace").partition(b" ")
        if scheme == b"Bearer" and caller(token) is not None:  # constant time (auth.py)
            return await handler(request)
        message = ("missing bearer token: send `Authorization: Bearer <token>`" if not given
                   else "invalid bearer token")
        return web.Response(status=401, text=message + "\n",
                            headers={"WWW-Authenticate": 'Bearer realm="flowplan"'})

    return require_token


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (no SO_REUSEPORT: a second daemon must not share it)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _why(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"not a host name or address this machine resolves ({exc})"
    if exc.errno == errno.EADDRINUSE:
        return "address in use: another program listens there; choose another --http"
    return f"{exc.strerror or exc}; choose an address of this host for --http"


def _tls(config: ServeConfig) -> ssl.SSLContext | None:
    """The server's TLS context from the certificate and key already read (held in memory
    files: the key is never written to disk)."""
    if not (config.tls_cert and config.tls_key):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert_fd = os.memfd_create("flowplan-tls-cert")
    key_fd = os.memfd_create("flowplan-tls-key")
    try:
        os.write(cert_fd, config.tls_cert)
        os.write(key_fd, config.tls_key)
        context.load_cert_chain(f"/proc/self/fd/{cert_fd}", f"/proc/self/fd/{key_fd}",
                                password=lambda: b"")
    finally:
        os.close(cert_fd)
        os.close(key_fd)
    if config.tls_client_ca:
        context.load_verify_locations(cadata=config.tls_client_ca.decode())
        context.verify_mode = ssl.CERT_REQUIRED
    return context
