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

Without tokens, a loopback listener answers only requests addressed to an address or a
loopback name (`localhost`): a guard against DNS rebinding, where a web page whose own name
resolves to 127.0.0.1 would otherwise be same-origin with the console.

The same connection limits as gRPC, so that clients that connect and send nothing (or send
slowly) cannot hold the daemon's file descriptors: the listener accepts connections itself
(not aiohttp's site) to count them, and closes one beyond `--http-max-connections` at once;
a connection must finish its TLS handshake and its first request's headers within
`--handshake-timeout` of opening, and each request's body within it of its headers; between
requests a connection may stay open `--idle-timeout` (aiohttp's keep-alive timeout, which
never cuts a response being written: the console's event streams stay open).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

from flowplan.daemon.server.config import ServeConfig, UsageError, is_loopback

if TYPE_CHECKING:
    from flowplan.daemon.server.console import Console

log = logging.getLogger("flowplan.daemon")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text format 0.0.4
# after an answer sent before its request's body was read (408, 413), the rest of the body is
# read and dropped this long (so that the client can read the answer), then the connection
# is closed
LINGER_SECONDS = 2.0
SHUTDOWN_SECONDS = 1.0  # for requests in flight when the listener closes
ACCEPT_PAUSE_SECONDS = 0.1  # after accept() fails for want of file descriptors
_OUT_OF_FILES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_FORMS = {"application/x-www-form-urlencoded", "multipart/form-data"}


class HttpServer:
    """`start()` binds and serves (UsageError when it cannot bind); `stop()` closes."""

    def __init__(self, config: ServeConfig, scrape: Callable[[], bytes], *,
                 caller: Callable[[bytes], object | None] | None = None,
                 console: Console | None = None, max_connections: int | None = None) -> None:
        """`caller` judges a bearer token (None: no tokens configured, all open);
        `console` mounts the web console's routes; `max_connections` (default
        `config.http_max_connections`) caps the connections open at once."""
        assert config.http is not None
        self._config = config
        self._scrape = scrape
        self._runner: web.AppRunner | None = None
        self._listener: _Listener | None = None
        self.port: int | None = None
        self.max_connections = max_connections or config.http_max_connections
        middlewares: list[Middleware] = [self._read_in_time]
        if caller is not None:
            middlewares.append(_bearer(caller))
        elif is_loopback(config.http):
            middlewares.append(_loopback_names_only)
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
        runner = web.AppRunner(self._app, access_log=None, handle_signals=False,
                               shutdown_timeout=SHUTDOWN_SECONDS,
                               keepalive_timeout=config.idle_timeout_seconds,
                               lingering_time=LINGER_SECONDS)
        await runner.setup()
        try:
            sock = _bind(host.strip("[]"), int(port))
        except OSError as exc:
            await runner.cleanup()
            raise UsageError(f"cannot listen on --http {config.http}: {_why(exc)}") from exc
        assert runner.server is not None
        self._listener = _Listener(sock, runner.server, tls=_tls(config),
                                   max_connections=self.max_connections,
                                   handshake_seconds=config.handshake_timeout_seconds)
        self._runner = runner
        self.port = sock.getsockname()[1]

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._console is not None:  # after the last request: its sessions' file
            self._console.close()

    @web.middleware
    async def _read_in_time(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Outermost: the request's headers are in (its connection is no longer waiting for
        its first request); its body must arrive within `--handshake-timeout`."""
        if self._listener is not None:
            self._listener.request_began(request.protocol)
        if request.can_read_body:
            reading = (request.post() if request.method == "POST" and
                       request.content_type in _FORMS else request.read())  # kept for later
            try:
                async with asyncio.timeout(self._config.handshake_timeout_seconds):
                    await reading
                if request.method == "POST":
                    await request.post()  # parsed once, here (kept): the console reads it
            except TimeoutError:
                return web.Response(
                    status=408, headers={"Connection": "close"},
                    text=f"the request's body did not arrive within"
                         f" {self._config.handshake_timeout_seconds:g}s (--handshake-timeout)\n")
            except (ValueError, LookupError) as exc:  # not UTF-8, an unknown charset, ...
                return web.Response(
                    status=400, text=f"the request's body is not a form this server can read"
                    f" ({exc}): send application/x-www-form-urlencoded in UTF-8, as the"
                    " console's pages do\n")
        return await handler(request)

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            body = self._scrape()
        except Exception:  # e.g. the state database unreadable: this scrape fails, not us
            log.exception("GET /metrics failed")
            return web.Response(status=500, text="metrics failed: see the daemon's log\n")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


class _Listener:
    """Accepts connections on `sock` for `server` (aiohttp's protocol factory): at most
    `max_connections` open at once, each made to finish its TLS handshake and send its
    first request's headers within `handshake_seconds`."""

    def __init__(self, sock: socket.socket, server: web.Server, *, tls: ssl.SSLContext | None,
                 max_connections: int, handshake_seconds: float) -> None:
        self._sock = sock
        self._server = server
        self._tls = tls
        self._max = max_connections
        self._handshake = handshake_seconds
        self._open: set[socket.socket] = set()  # accepted; closed ones are swept at the cap
        self._connecting: set[asyncio.Task[None]] = set()
        self._waiting: dict[object, asyncio.TimerHandle] = {}  # protocol: its deadline
        self._accepting = asyncio.ensure_future(self._accept())

    def open_connections(self) -> int:
        self._open = {s for s in self._open if s.fileno() != -1}  # a closed transport's
        return len(self._open)

    def request_began(self, protocol: object) -> None:
        timer = self._waiting.pop(protocol, None)
        if timer is not None:
            timer.cancel()

    async def close(self) -> None:
        self._accepting.cancel()
        for task in list(self._connecting):
            task.cancel()
        await asyncio.gather(self._accepting, *self._connecting, return_exceptions=True)
        for timer in self._waiting.values():
            timer.cancel()
        self._waiting.clear()
        self._sock.close()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except ConnectionAbortedError:  # that client gave up before it was accepted
                continue
            except OSError as exc:
                if exc.errno not in _OUT_OF_FILES:
                    log.exception("HTTP: the listener stopped accepting connections")
                    raise
                log.warning("HTTP: cannot accept a connection: %s", exc.strerror)
                await asyncio.sleep(ACCEPT_PAUSE_SECONDS)  # the open connections go on
                continue
            if len(self._open) >= self._max and self.open_connections() >= self._max:
                conn.close()  # beyond the cap: its file descriptor is free again at once
                continue
            self._open.add(conn)
            task = asyncio.ensure_future(self._connect(conn, loop.time()))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _connect(self, conn: socket.socket, opened: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.connect_accepted_socket(
                self._server, conn, ssl=self._tls,
                ssl_handshake_timeout=self._handshake if self._tls else None)
        except OSError:  # a TLS handshake that failed or took too long
            conn.close()
            return
        self._waiting[protocol] = loop.call_at(opened + self._handshake, self._no_request,
                                               protocol, transport)

    def _no_request(self, protocol: object, transport: asyncio.Transport) -> None:
        """The deadline for the first request's headers passed without them."""
        if self._waiting.pop(protocol, None) is not None:
            transport.abort()


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


@web.middleware
async def _loopback_names_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Without tokens, a loopback listener answers requests addressed to it by an address
    or a loopback name only: a web page whose own name an attacker's DNS turns into
    127.0.0.1 (DNS rebinding) would otherwise read and drive the console as its admin."""
    name = _host_name(request.host).rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost") or _is_address(name):
        return await handler(request)
    return web.Response(status=403, text=(
        "this daemon has no tokens, so it answers only requests addressed to a loopback"
        " name or an address (http://127.0.0.1:PORT/, http://localhost:PORT/), not to"
        f" '{request.host[:100]}': a guard against DNS rebinding. To serve it under another"
        " name (behind a reverse proxy), give the daemon tokens\n"))


def _host_name(host: str) -> str:
    """The Host header's name or address, without its port (and an IPv6 one's brackets)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.partition(":")[0]


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


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
