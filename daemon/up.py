"""`flowplan up [REPO]`: the embedded default for trying flowplan out.

Compiles REPO (default: the current directory, or its `workflows/` folder) and publishes it
into `./.flowplan/store`, starts the daemon with its state in `./.flowplan/state` on
127.0.0.1:50051 (the web console on http://127.0.0.1:8080/, metrics under /metrics), and
republishes on every change of the repository (diagnostics printed; an invalid workflow
keeps its last good version). Ctrl-C stops it cleanly; node processes still running are
adopted by the next `flowplan up`. A `flowplan up` whose state folder another daemon holds, or
whose gRPC port another program listens on, is refused before it publishes anything.

The banner suggests `flowplan run` only for workflows that can run on this host (a node on a
Spark queue needs spark-submit: the Spark extra or SPARK_HOME); log lines of the start are
held back until the banner is out.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers
import re
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowplan.compiler.compile import CompileResult, compile_repo
from flowplan.compiler.plan import Plan, WorkflowPlan
from flowplan.compiler.repo import RepoError, find_root, read_repo
from flowplan.compiler.report import print_diagnostics, print_publish_report
from flowplan.compiler.store import PlanStore
from flowplan.daemon.engine import spark
from flowplan.daemon.notify.sender import NO_SMTP
from flowplan.daemon.scheduler.scheduler import SwitchState
from flowplan.daemon.scheduler.ticks import next_ticks
from flowplan.daemon.server.app import NO_HTTP, Daemon
from flowplan.daemon.server.config import DEFAULT_LISTEN, ServeConfig, UsageError
from flowplan.daemon.server.logging import setup_logging
from flowplan.daemon.state.store import StateError
from flowplan.daemon.watcher import watch_folder

log = logging.getLogger("flowplan.up")

HOME = Path(".flowplan")
DEFAULT_UP_HTTP = "127.0.0.1:8080"


def register(subparsers: Any) -> None:
    up = subparsers.add_parser(
        "up", help="compile, publish and serve a repository, republishing on change",
        description=__doc__.split("\n\n")[1] if __doc__ else None)
    up.add_argument("repo", nargs="?", type=Path, default=Path("."),
                    help="the repository (default: the current directory)")
    up.add_argument("--listen", default=DEFAULT_LISTEN,
                    help=f"host:port of the daemon (default {DEFAULT_LISTEN}; loopback only)")
    up.add_argument("--http", default=DEFAULT_UP_HTTP, metavar="HOST:PORT",
                    help=f"HTTP address of the console and /metrics (default"
                         f" {DEFAULT_UP_HTTP}; loopback only; a busy one is reported and gRPC"
                         " serves on)")
    up.add_argument("--home", type=Path, default=HOME,
                    help="where the store and state go (default ./.flowplan)")
    up.set_defaults(handler=cmd_up)


class HeldLogs(logging.handlers.MemoryHandler):
    """Takes the root logger's records and holds them until `write_out` writes them to the
    handler it replaced (those `drop` selects are left out)."""

    def __init__(self) -> None:
        root = logging.getLogger()
        super().__init__(capacity=10_000, flushLevel=logging.CRITICAL + 1,
                         target=root.handlers[0] if root.handlers else None)
        root.handlers[:] = [self]

    def write_out(self, drop: Callable[[logging.LogRecord], bool] = lambda _: False) -> None:
        root = logging.getLogger()
        if self in root.handlers:
            root.handlers[:] = [self.target] if self.target is not None else []
        self.acquire()
        try:
            held, self.buffer = self.buffer, []
        finally:
            self.release()
        for record in held:
            if self.target is not None and not drop(record):
                self.target.handle(record)


def cmd_up(args: argparse.Namespace) -> int:
    setup_logging("text", "WARNING")
    try:
        root = find_root(args.repo)
    except RepoError as exc:
        print(f"flowplan up: {exc}", file=sys.stderr)
        return 2
    home = args.home.resolve()
    config = ServeConfig(store=home / "store", state=home / "state", listen=args.listen,
                         http=args.http, http_required=False)
    try:
        config.check()
        if not all(address.startswith(("127.", "localhost", "[::1]"))
                   for address in (config.listen, args.http)):
            raise UsageError("flowplan up listens on loopback only; use flowplan serve")
        return asyncio.run(_up(root.resolve(), config))
    except UsageError as exc:
        print(f"flowplan up: {_up_words(exc)}", file=sys.stderr)
        return 2
    except StateError as exc:
        print(f"flowplan up: {_up_words(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:  # the first publish: a FIFO as the store's .lock, a full disk
        print(f"flowplan up: cannot publish to {config.store}: {exc.filename}:"
              f" {exc.strerror or exc}", file=sys.stderr)
        return 1


def _up_words(error: Exception) -> str:
    """The daemon's refusals name `serve`'s --state and --store; `up` keeps both in --home."""
    text = str(error).replace("another --state", "another --home")
    return re.sub(r"--(state|store) (\S+)", r"\2 (the \1 in --home)", text)


def publish(root: Path, store: PlanStore, *, remarks: str, quiet_if_same: tuple[str, ...] = (),
            headline: str = "") -> CompileResult:
    """Compile the working tree and publish what is valid; print what happened (with
    `quiet_if_same`, the last diagnostics: nothing when nothing changed)."""
    result = compile_repo(read_repo(root))
    report = store.publish(result.plans, keep=result.failed,
                           remove_missing=not result.uncertain_files, remarks=remarks)
    if report.written or tuple(map(str, result.diagnostics)) != quiet_if_same:
        headline = headline or ("changed, republished" if report.written
                                else "changed, nothing new published")
        print(f"\nflowplan up: {root} {headline}")
        print_diagnostics(result)
        print_publish_report(report)
    sys.stdout.flush()
    return result


async def _up(root: Path, config: ServeConfig) -> int:
    daemon = Daemon(config)
    daemon.claim()  # refused before publishing: the store may be the one another daemon serves
    store = PlanStore(config.store)
    result = publish(root, store, remarks="flowplan up", quiet_if_same=("-",),
                     headline="compiled and published")
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.shutdown)
    held = HeldLogs()
    try:
        running = asyncio.ensure_future(daemon.run())
        ready = asyncio.ensure_future(daemon.ready.wait())
        await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            return running.result()
        http = (f"console at {daemon.http_url}/, metrics at {daemon.http_url}/metrics"
                if daemon.http_url
                else f"{NO_HTTP}{daemon.http_problem}")
        _banner(config, daemon.port, result.plans, http=http,
                switch=daemon.scheduler.switch_state if daemon.scheduler else None)
    finally:  # the banner says these: no log line for them too
        held.write_out(drop=lambda record: record.getMessage().startswith(NO_HTTP) or (
            config.smtp is None and record.getMessage().startswith(NO_SMTP)))
    stop = asyncio.Event()
    watcher = asyncio.ensure_future(_republish(root, config, store, stop,
                                               tuple(map(str, result.diagnostics))))
    try:
        return await running
    finally:
        stop.set()
        await asyncio.gather(watcher, return_exceptions=True)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        print("flowplan up: stopped")


IGNORED_PARTS = frozenset({".git", ".flowplan", "__pycache__", ".pytest_cache", ".mypy_cache",
                           ".ruff_cache", ".hypothesis", "node_modules"})


async def _republish(root: Path, config: ServeConfig, store: PlanStore,
                     stop: asyncio.Event, last: tuple[str, ...]) -> None:
    home = config.store.parent

    def relevant(_: object, path: str) -> bool:
        changed = Path(path)
        return home not in changed.parents and not IGNORED_PARTS.intersection(changed.parts) \
            and not changed.name.endswith(("~", ".swp", ".tmp", ".pyc"))

    async for _ in watch_folder(root, stop, f"the repository {root}", watch_filter=relevant,
                                debounce=400):
        try:
            result = await asyncio.to_thread(publish, root, store,
                                             remarks="flowplan up (change)", quiet_if_same=last)
            last = tuple(map(str, result.diagnostics))
        except Exception as exc:  # a file removed mid-read: the next change retries
            print(f"flowplan up: republish failed: {exc}", file=sys.stderr)


def _banner(config: ServeConfig, port: int | None, plans: tuple[Plan, ...] | list[Plan], *,
            http: str, switch: Callable[[str], SwitchState] | None = None) -> None:
    """What runs when, and how to look; `switch` says the scheduling switch in force (a
    pause set at run time outlives a restart)."""
    host = config.listen.rsplit(":", 1)[0]
    address = f"{host}:{port}"
    flag = "" if address == DEFAULT_LISTEN else f" --address {address}"
    print(f"\ndaemon listening on {address}  (store {config.store}, state {config.state})")
    print(http)
    now = datetime.now(UTC)
    manual = []
    has_spark = spark.locate() is not None
    missing = {p.workflow: cannot_run_here(p.content, has_spark=has_spark)
               for p in plans if p.content is not None}
    for plan in sorted(plans, key=lambda p: p.workflow):
        content = plan.content
        if content is None:
            continue
        if content.schedule is None:
            manual.append(plan.workflow)
            continue
        state = switch(plan.workflow) if switch is not None else None
        if state is not None and state.enabled_in_git and not state.enabled:
            print(f"  scheduled  {plan.workflow:<24} paused (flowplan unpause{flag}"
                  f" {plan.workflow})")
        else:
            upcoming = next_ticks(content.schedule, now, 1)
            when = (upcoming[0].astimezone().strftime("%Y-%m-%d %H:%M %Z") if upcoming
                    else "never")
            paused = "" if content.schedule.enabled else " (paused in git)"
            print(f"  scheduled  {plan.workflow:<24} next run {when}{paused}")
        if missing.get(plan.workflow):
            print(f"  {'':<10} {'':<24} {missing[plan.workflow]}")
    for name in manual:
        print(f"  manual     {name:<24}"
              f" {missing.get(name) or f'start it: flowplan run{flag} {name}'}")
    if config.smtp is None:
        print(f"\nnotifications: {NO_SMTP}; e-mails are recorded, not sent:"
              f" flowplan notifications{flag}")
    print(f"\nlook: flowplan runs{flag}   flowplan status{flag} RUN_ID   flowplan watch{flag}"
          " RUN_ID\nedit the repository to republish; Ctrl-C stops (running nodes are adopted"
          " by the next start)\n")
    sys.stdout.flush()


def cannot_run_here(content: WorkflowPlan, *, has_spark: bool) -> str | None:
    """Why the workflow's runs would fail on this host, in one line; None if they can run."""
    queues = sorted({n.queue for n in content.nodes
                     if content.queues.get(n.queue) is not None
                     and content.queues[n.queue].executor == "spark"})
    if not queues or has_spark:
        return None
    which = f"queues {', '.join(queues)} need" if len(queues) > 1 else f"queue {queues[0]} needs"
    return (f"cannot run here: {which} the Spark extra ({spark_install()}, Java 17+) or"
            " SPARK_HOME")


def spark_install() -> str:
    """How to add the Spark extra to this flowplan: from its clone when it was installed from
    one (README's `pip install -e .`; 'flowplan[spark]' would fetch another flowplan)."""
    clone = Path(__file__).resolve().parents[1]  # daemon/up.py in a clone; else site-packages
    if not (clone / "pyproject.toml").is_file():
        return "pip install 'flowplan[spark]'"
    where = "." if clone == Path.cwd().resolve() else str(clone)
    return f"pip install -e '{where}[spark]'"
