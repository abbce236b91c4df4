"""The daemon: one asyncio process with the state store, the plan watcher, the engine,
the scheduler, backfills, notifications and the gRPC server.

With `--http`, an HTTP listener (daemon/server/http.py: `GET /metrics` and the web console,
daemon/server/console/) starts once the gRPC port is bound, before the engine starts.

Shutdown (SIGTERM, SIGINT or `Daemon.shutdown()`), in order: health NOT_SERVING; streams
end cleanly; the server stops accepting and gives in-flight calls a grace period; the HTTP
listener closes; the scheduler and watcher stop; the engine stops driving runs and leaves
node processes running (the next start adopts them); pending e-mails stay in the outbox; exit 0.
A loop that must run as long as the daemon (the scheduler, the plan watcher, ...) and ends
first, a defect, stops it the same way, and it exits 1 (`Daemon._supervised`).

SIGHUP reads the token and roles files again (`Daemon.reload()`); who may call what:
daemon/server/auth.py. Its settings: daemon/server/settings.py (the command:
daemon/server/command.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import signal
import socket
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from flowplan.compiler.store import PlanStore
from flowplan.daemon.engine.clock import SystemClock
from flowplan.daemon.engine.engine import Engine, EngineSettings
from flowplan.daemon.engine.launcher import LocalLauncher
from flowplan.daemon.notify import Notifier, Outbox, OutboxSender
from flowplan.daemon.scheduler.backfills import Backfills
from flowplan.daemon.scheduler.scheduler import Scheduler
from flowplan.daemon.server.auth import TokenInterceptor
from flowplan.daemon.server.config import ServeConfig, UsageError, open_to_all
from flowplan.daemon.server.errors import handlers_of, serve_tolerant
from flowplan.daemon.server.roles import Grant
from flowplan.daemon.server.service import SERVICE_NAME, Parts, WorkflowService, register
from flowplan.daemon.server.systemd import notify
from flowplan.daemon.server.tracing import enabled as tracing_enabled
from flowplan.daemon.server.tracing import traceparent
from flowplan.daemon.state.lock import StateInUseError, lock_state
from flowplan.daemon.state.store import StateError, StateStore, StateWriteError, damaged
from flowplan.daemon.watcher import PlanCatalog, watch_plans

if TYPE_CHECKING:  # imported with --http only: aiohttp and prometheus_client cost start-up
    from flowplan.compiler.files import FileLock
    from flowplan.compiler.plan import Plan
    from flowplan.daemon.server.console import Console
    from flowplan.daemon.server.http import HttpServer
    from flowplan.daemon.server.metrics import Metrics
    from flowplan.daemon.server.otel import Tracing

log = logging.getLogger("flowplan.daemon")

NO_HTTP = "no HTTP listener (web console and metrics), serving gRPC only: "
STOP_GRACE_SECONDS = 5.0
CHECKPOINT_SECONDS = 1.0  # WAL checkpoints off the event loop (daemon/state/store.py)
RESERVED_FDS = 128  # for the daemon's own files: SQLite, logs, the shim, plan reads, git
MAX_STREAMS_PER_CONNECTION = 100
WRITE_WATCH_SECONDS = 0.5  # how often health looks at (and probes) a failing database


Reread = Callable[[], tuple[Grant, ...]]


class Daemon:
    def __init__(self, config: ServeConfig, *, reread_access: Reread | None = None) -> None:
        """`reread_access` reads the token files again, for `reload()` (SIGHUP)."""
        config.check()
        self.config = config
        self._reread_access = reread_access
        self._interceptor: TokenInterceptor | None = None
        self.port: int | None = None
        self.http_url: str | None = None  # the HTTP listener's, once it listens
        self.http_problem: str | None = None  # why it does not, when not `http_required`
        self.metrics: Metrics | None = None  # with --http
        self.scheduler: Scheduler | None = None  # once running
        self.console: Console | None = None  # with --http, once it listens
        self.max_connections = config.max_connections  # lowered to fit the fd limit at run()
        self.http_max_connections = config.http_max_connections  # likewise, with --http
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()
        self._claimed: FileLock | None = None  # the state directory, taken by claim()
        self.failed: str | None = None  # the loop whose end stopped the daemon (exit 1)
        self._reported: set[asyncio.Task[None]] = set()  # loops whose error was logged

    def shutdown(self) -> None:
        """Begin a clean shutdown; safe to call more than once."""
        self._stop.set()

    def reload(self) -> None:
        """SIGHUP: read the roles file and the token file again; calls from then on are
        judged by them. A file that cannot be used is logged, naming its line, and the
        tokens stay as they were. Authentication stays on or off as the daemon started."""
        if self._interceptor is None or self._reread_access is None:
            log.warning("SIGHUP: no tokens to reload: this daemon started without"
                        " --token-file or --roles-file (restart it with one)")
            return
        try:
            grants = self._reread_access()
        except UsageError as exc:  # names the file and line, never a token
            log.error("SIGHUP: the tokens stay as they were: %s", exc)
            return
        self._interceptor.replace(grants)
        log.info("tokens reloaded", extra={"fields": {"roles": role_counts(grants)}})

    def claim(self) -> None:
        """Take the state directory for this daemon now (`run` keeps it), and make sure no
        other program listens on the gRPC address: UsageError for what `run` would refuse
        before anything else. `flowplan up` claims before it publishes, so it never
        publishes into a store that another daemon of its folder serves."""
        lock = self._lock()
        if _bind_problem(self.config.listen, in_use_only=True):
            lock.release()
            raise UsageError(f"cannot listen on {self.config.listen}: {IN_USE}")
        self._claimed = lock

    def _lock(self) -> FileLock:
        try:
            return lock_state(self.config.state, holder=f"--listen {self.config.listen}")
        except StateInUseError as exc:
            raise UsageError(str(exc)) from exc
        except OSError as exc:  # a file in its place, no permission, no locks on its disk
            raise UsageError(f"cannot use {self.config.state} as the state directory:"
                             f" {exc.strerror or exc}") from exc

    async def run(self) -> int:
        """Serve until `shutdown()`; UsageError if the state directory is another daemon's
        or the address cannot be listened on."""
        lock, self._claimed = self._claimed or self._lock(), None
        with lock:
            fd_limit = raise_fd_limit()
            wanted = (self.config.max_connections,
                      self.config.http_max_connections if self.config.http else 0)
            self.max_connections, self.http_max_connections = connection_caps(fd_limit,
                                                                               *wanted)
            if (self.max_connections, self.http_max_connections) != wanted:
                log.warning("the open-file limit (ulimit -n %d) allows %d connections, not"
                            " --max-connections %d%s: raise the limit to allow more",
                            fd_limit, self.max_connections + self.http_max_connections,
                            wanted[0], f" and --http-max-connections {wanted[1]}"
                            if wanted[1] else "")
            return await self._run()

    async def _run(self) -> int:
        config = self.config
        clock = SystemClock()
        tracing: Tracing | None = None
        if tracing_enabled(os.environ):  # off: OpenTelemetry is never imported
            from flowplan.daemon.server.otel import Tracing

            tracing = Tracing.from_environment(os.environ)  # UsageError: a bad OTEL_ value
        store = StateStore(config.state, synchronous=config.synchronous,
                           checkpoint_every=CHECKPOINT_SECONDS)
        catalog = PlanCatalog(PlanStore(config.store))
        engine = Engine(store=store, plans=catalog, launcher=LocalLauncher(), clock=clock,
                        settings=EngineSettings(
                            state_dir=config.state, kill_grace_seconds=config.kill_grace_seconds,
                            traceparent=traceparent if tracing is not None else None))
        if tracing is not None:  # spans are built after the engine's handoff, not in it
            tracing.follow(engine, store)
        outbox = Outbox(store)
        metrics: Metrics | None = None
        if config.http:
            from flowplan.daemon.server.metrics import Metrics, Sources

            metrics = self.metrics = Metrics(Sources(
                engine=engine, store=store, outbox=outbox, catalog=catalog, clock=clock))
        if metrics is not None:  # counters only: nothing on the engine's path waits
            engine.subscribe(metrics.on_event)
        scheduler = self.scheduler = Scheduler(
            engine=engine, store=store, catalog=catalog, clock=clock,
            on_created=metrics.on_tick_created if metrics else None)
        backfills = Backfills(engine=engine, store=store, catalog=catalog, clock=clock)
        sender = OutboxSender(outbox, config.smtp, clock=clock,
                              on_attempt=metrics.on_email_attempt if metrics else None)
        notifier = Notifier(store=store, plans=catalog, sender=sender)
        engine.subscribe(notifier.on_event, durable=True)
        backfills.on_finished(lambda b: notifier.backfill_finished(b.backfill_id))
        closing = asyncio.Event()

        server = self._server(metrics, tracing)
        health_service = health.aio.HealthServicer()
        service = register(server, Parts(engine=engine, store=store, catalog=catalog,
                               scheduler=scheduler, backfills=backfills, clock=clock,
                               closing=closing))
        # health and reflection as the generated functions would add them, except that a
        # body that does not decode is INVALID_ARGUMENT as for WorkflowService
        serve_tolerant(server, health_pb2.DESCRIPTOR.services_by_name["Health"],
                       handlers_of(health_pb2_grpc.add_HealthServicer_to_server,
                                   health_service))
        serve_tolerant(server, reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
                       handlers_of(reflection_pb2_grpc.add_ServerReflectionServicer_to_server,
                                   reflection.aio.ReflectionServicer(
                                       (SERVICE_NAME, health.SERVICE_NAME,
                                        reflection.SERVICE_NAME))))
        # Bound before anything runs: an address in use stops start-up before the engine
        # adopts or starts a node.
        try:
            self.port = self._bind(server)
            http = await self._start_http(metrics, service)
        except UsageError:
            store.close()
            raise

        try:
            await sender.start()
            await engine.start()
            scheduler.recover()
            backfills.recover()
        except (sqlite3.DatabaseError, StateWriteError) as exc:
            if http is not None:
                await http.stop()
            await engine.stop()
            await sender.stop(grace_seconds=0)
            store.close()
            if isinstance(exc, StateWriteError):  # a full disk: recovery cannot record
                raise StateError(f"{exc}: free disk space under {config.state}") from exc
            raise damaged(store.path, exc) from exc  # damage quick_check does not see
        await server.start()
        for name in ("", SERVICE_NAME):
            await health_service.set(name, health_pb2.HealthCheckResponse.SERVING)

        stop_watch = asyncio.Event()
        tasks = [self._supervised("scheduler", scheduler.run()),
                 self._supervised("plan watcher", watch_plans(
                     catalog, self._plans_loaded(scheduler), stop_watch)),
                 self._supervised("state write watch", watch_writes(
                     store, health_service, scheduler, stop_watch))]
        if metrics is not None:
            tasks.append(self._supervised("metrics loop", metrics.watch_loop(stop_watch)))
        if config.git_url:
            tasks.append(self._supervised("git sync", self._sync_git(catalog, scheduler,
                                                                      stop_watch)))
        if self.console is not None:
            self.console.start()
        log.info("listening", extra={"fields": {
            "address": self.config.listen.rsplit(":", 1)[0] + f":{self.port}",
            "store": str(config.store), "state": str(config.state),
            "workflows": len(catalog.workflows()), "tls": bool(config.tls_cert),
            "token": bool(config.token), "roles": role_counts(config.access()),
            "http": self.http_url,
            "max_connections": self.max_connections,
            **({"http_max_connections": self.http_max_connections} if self.http_url else {}),
            "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}})
        for address in open_to_all(config):
            log.warning("anyone who reaches %s acts as an admin: no token, and no client"
                        " certificate is asked for; give --token-file or --roles-file, or"
                        " --tls-client-ca", address)
        self.ready.set()
        notify(f"READY=1\nSTATUS=serving on {config.listen.rsplit(':', 1)[0]}:{self.port}"
               f"\nMAINPID={os.getpid()}")
        try:
            await self._stop.wait()
        finally:
            self._stop.set()  # run() cancelled too: the loops' ends are no defect now
            log.info("shutting down")
            notify("STOPPING=1")
            await health_service.enter_graceful_shutdown()
            closing.set()
            await server.stop(STOP_GRACE_SECONDS)
            if http is not None:
                await http.stop()
            scheduler.stop()
            stop_watch.set()
            for task, ended in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True),
                                   strict=True):
                if isinstance(ended, Exception) and task not in self._reported:
                    log.error("%s failed as the daemon stopped", task.get_name(),
                              exc_info=ended)
            await engine.stop()
            await sender.stop()
            if tracing is not None:
                await tracing.shutdown()
            store.close()
            log.info("stopped")
        return 1 if self.failed else 0

    def _supervised(self, name: str, loop: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """`loop` as a task that must run as long as the daemon serves. One that ends before
        the shutdown (a defect: each loop handles the failures it expects) is logged with its
        traceback and stops the daemon, which exits 1 for its supervisor (systemd's
        Restart=on-failure) to start it again, rather than serving on without it."""
        task = asyncio.get_running_loop().create_task(loop, name=f"the {name}")

        def ended(done: asyncio.Task[None]) -> None:
            if self._stop.is_set() or done.cancelled():
                return  # its error, if any, is logged as the daemon stops
            error = done.exception()
            log.critical("the %s stopped%s: stopping the daemon (exit 1) so that it is started"
                         " again", name, f" ({error!r})" if error else "", exc_info=error)
            self.failed = name
            self._stop.set()
            if error is not None:
                self._reported.add(done)

        task.add_done_callback(ended)
        return task

    async def _start_http(self, metrics: Metrics | None, service: WorkflowService
                          ) -> HttpServer | None:
        """The HTTP listener, serving; None without --http, or when its address cannot be
        listened on and `http_required` is off (`flowplan up`: said in one line)."""
        if metrics is None:
            return None
        from flowplan.daemon.server.console import Console
        from flowplan.daemon.server.console.layouter import computer_for
        from flowplan.daemon.server.http import HttpServer

        caller = self._interceptor.caller if self._interceptor is not None else None
        computer = computer_for(self.config.console_layouts)
        console = Console(service, self._interceptor, https=bool(self.config.tls_cert),
                          state=self.config.state, computer=computer)
        http = HttpServer(self.config, metrics.scrape, caller=caller, console=console,
                          max_connections=self.http_max_connections)
        try:
            await http.start()
        except UsageError as exc:
            console.close()
            if self.config.http_required:
                raise
            self.http_problem = str(exc)
            log.warning("%s%s", NO_HTTP, exc)
            return None
        self.http_url = http.url
        self.console = console
        return http

    def _plans_loaded(self, scheduler: Scheduler) -> Callable[[list[Plan]], None]:
        """What the daemon does when it loads new plan versions: the scheduler looks at
        them, and the console lays out their large graphs."""
        def loaded(plans: list[Plan]) -> None:
            scheduler.wake()
            if self.console is not None:
                self.console.plans_loaded((plan.workflow, plan.version or 0) for plan in plans
                                          if not plan.tombstone)
        return loaded

    def _server(self, metrics: Metrics | None, tracing: Tracing | None) -> grpc.aio.Server:
        interceptors: list[grpc.aio.ServerInterceptor] = (
            [metrics.interceptor()] if metrics is not None else [])  # outermost: counts all
        if tracing is not None:  # a span for refused calls too
            interceptors.append(tracing.interceptor())
        config = self.config
        grants = config.access()
        self._interceptor = TokenInterceptor(grants) if grants else None
        if self._interceptor is not None:
            interceptors.append(self._interceptor)
        return grpc.aio.server(interceptors=interceptors, options=[
            # gRPC sets SO_REUSEPORT by default on Linux: a second daemon on the same
            # address would then also "listen" and take half of the calls at random.
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            # beyond the cap a new connection is closed at once: the fds stay for the daemon
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            # closes a connection that never sends the HTTP/2 preface (an idle TCP socket)
            ("grpc.server_handshake_timeout_ms", _millis(config.handshake_timeout_seconds)),
            # closes a connection without a call in flight (GOAWAY: clients reconnect)
            ("grpc.max_connection_idle_ms", _millis(config.idle_timeout_seconds)),
            ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION)])

    def _bind(self, server: grpc.aio.Server) -> int:
        config = self.config
        # asked first: gRPC's core would print its own non-JSON line to stderr on the way
        if _bind_problem(config.listen, in_use_only=True):
            raise UsageError(f"cannot listen on {config.listen}: {IN_USE}")
        try:
            if config.tls_cert and config.tls_key:
                credentials = grpc.ssl_server_credentials(
                    [(config.tls_key, config.tls_cert)], root_certificates=config.tls_client_ca,
                    require_client_auth=config.tls_client_ca is not None)
                port = server.add_secure_port(config.listen, credentials)
            else:
                port = server.add_insecure_port(config.listen)
        except RuntimeError:
            port = 0
        if not port:  # gRPC only says "failed to bind": find out why, to say so
            raise UsageError(f"cannot listen on {config.listen}: {_bind_problem(config.listen)}")
        return port

    async def _sync_git(self, catalog: PlanCatalog, scheduler: Scheduler,
                        stop: asyncio.Event) -> None:
        from flowplan.compiler.git import publish_from_git  # the pull alternative to git hooks

        assert self.config.git_url is not None
        reported: str | None = None  # the commit whose invalid workflows were logged
        halt = threading.Event()  # the fetch's own stop: a thread cannot be cancelled
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(lambda _: halt.set())
        while not stop.is_set():
            try:
                report = await asyncio.to_thread(publish_from_git, self.config.git_url,
                                                 self.config.git_branch, self.config.store,
                                                 stop=halt)
                if report.compiled.diagnostics and report.commit != reported:
                    reported = report.commit  # once per commit, not on every interval
                    for diagnostic in report.compiled.diagnostics:
                        log.warning("from git: %s", diagnostic,
                                    extra={"fields": {"commit": report.commit}})
                if report.written:
                    log.info("published from git", extra={"fields": {
                        "commit": report.commit, "versions": len(report.written)}})
                    if changed := catalog.rescan():
                        self._plans_loaded(scheduler)(changed)
            except Exception as exc:  # a git server that is down must not stop the daemon
                if not stop.is_set():
                    log.error("git sync failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.sync_interval_seconds)
        stopping.cancel()


def raise_fd_limit() -> int:
    """Raise the soft open-file limit to the hard one; the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft if soft != resource.RLIM_INFINITY else wanted
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit above fs.nr_open
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, wanted, exc)
        return soft
    return wanted


def role_counts(grants: tuple[Grant, ...]) -> dict[str, int]:
    """How many tokens have each role (the tokens and their names stay out of the log)."""
    counts: dict[str, int] = {}
    for grant in grants:
        counts[grant.role.label] = counts.get(grant.role.label, 0) + 1
    return counts


def _millis(seconds: float) -> int:
    """Seconds as a gRPC channel argument: whole milliseconds, at least 1, in an int32."""
    return min(2**31 - 1, max(1, round(seconds * 1000)))


def connection_caps(fd_limit: int, grpc_wanted: int, http_wanted: int) -> tuple[int, int]:
    """The gRPC and HTTP connection caps: as wanted (`http_wanted` 0: no HTTP listener) when
    both together leave RESERVED_FDS of the open-file limit (or half of a small limit) for
    the daemon's own files; else that budget shared in proportion, at least 1 each."""
    budget = max(fd_limit - RESERVED_FDS, fd_limit // 2)
    if grpc_wanted + http_wanted <= budget:
        return grpc_wanted, http_wanted
    http = min(http_wanted, max(1, budget * http_wanted // (grpc_wanted + http_wanted)))
    return max(1, budget - http), http


async def watch_writes(store: StateStore, health_service: health.aio.HealthServicer,
                       scheduler: Scheduler, stop: asyncio.Event) -> None:
    """Health NOT_SERVING while the state database cannot be written (a full disk): probe it
    meanwhile, and when it can be written again, SERVING and wake the scheduler (a tick it
    could not record is due again)."""
    failing = False
    while not stop.is_set():
        if store.write_error is not None:
            with contextlib.suppress(StateWriteError):
                store.probe_write()
        if (store.write_error is not None) != failing:
            failing = not failing
            status = (health_pb2.HealthCheckResponse.NOT_SERVING if failing
                      else health_pb2.HealthCheckResponse.SERVING)
            for name in ("", SERVICE_NAME):
                await health_service.set(name, status)
            if not failing:
                scheduler.wake()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WRITE_WATCH_SECONDS)


IN_USE = ("address in use: another program (perhaps another flowplan daemon) listens there;"
          " stop it or choose another --listen")


def _bind_problem(listen: str, *, in_use_only: bool = False) -> str:
    """Why `listen` cannot be bound, in words, found by binding it once more ourselves;
    with `in_use_only`, only whether another program listens there ("" if not)."""
    host, _, port = listen.rpartition(":")
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (OSError, ValueError) as exc:
        return "" if in_use_only else (
            f"{host!r} is not a host name or address this machine resolves ({exc})")
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return IN_USE
                if not in_use_only:
                    return f"{exc.strerror or exc}; choose an address of this host for --listen"
    return "" if in_use_only else "gRPC could not bind it; choose another --listen"


async def serve(config: ServeConfig, *, reread_access: Reread | None = None) -> int:
    daemon = Daemon(config, reread_access=reread_access)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.shutdown)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    try:
        return await daemon.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
