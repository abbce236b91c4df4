"""`flowplan debug [REPO] WORKFLOW`: run a workflow of the working tree, unpublished, in this
process, and show its node statuses live.

The working tree is compiled in memory; a valid workflow runs on an `Engine` with its own
state directory (a new temporary folder, removed at the end unless `--keep` keeps it and its
logs), on the queue `--queue` names, else on the `dev` queue when the repository defines
one. On a terminal the statuses are a table
redrawn in place, coloured like the EMR console; otherwise (CI, a pipe) one line per status
change. The end shows the run's status and, for each failed node, the tail of its last
attempt's log. Exit 0 when the run succeeded, 1 otherwise, 130 after Ctrl-C (which cancels
the run: its running nodes are terminated).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import os
import select
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast
from zoneinfo import ZoneInfo

from flowplan.compiler import cli as compiler_cli
from flowplan.compiler import console, report
from flowplan.compiler.compile import compile_repo
from flowplan.compiler.grammars import ParamValue
from flowplan.compiler.grammars import param_option as _param
from flowplan.compiler.plan import Plan
from flowplan.compiler.repo import RepoError, find_root, read_repo
from flowplan.daemon.client.render import duration
from flowplan.daemon.domain import NodeStatus, Run, RunStatus, RunTrigger
from flowplan.daemon.engine.clock import SystemClock
from flowplan.daemon.engine.commands import mask_end, masked_params
from flowplan.daemon.engine.engine import Engine, EngineSettings, RunError, StatusEvent
from flowplan.daemon.engine.launcher import LocalLauncher
from flowplan.daemon.engine.plans import MemoryPlans
from flowplan.daemon.state.store import StateStore

if TYPE_CHECKING:
    from rich.text import Text

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEBUG_QUEUE = "dev"
LOG_TAIL_LINES = 20
KILL_GRACE_SECONDS = 5.0  # after Ctrl-C: SIGTERM, then SIGKILL this much later
REDRAW_SECONDS = 0.1  # the live table is redrawn at most this often (and this often)
READER_CHECK_SECONDS = 0.2  # how often a quiet run looks whether its reader left

_ACTIVE = frozenset({"RUNNING", "RETRYING", "FAILED"})


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `flowplan debug` to the `flowplan` parser."""
    debug = subparsers.add_parser(
        "debug", help="run a workflow of the working tree without a daemon",
        description="Compile the working tree in memory and run WORKFLOW in this process, on"
                    " --queue or else on the 'dev' queue when the repository defines one,"
                    " showing live node statuses. Its state and logs go to a temporary"
                    " folder, removed at the end unless --keep. Exit 0 if the run succeeded,"
                    " 1 if not, 130 on Ctrl-C.")
    compiler_cli.add_repo_and_workflow(debug)
    debug.add_argument("--queue", metavar="QUEUE",
                       help=f"run the nodes on this queue of flowplan.yaml (default:"
                            f" '{DEBUG_QUEUE}' when defined); nodes whose YAML sets a queue"
                            " keep it")
    debug.add_argument("--keep", action="store_true",
                       help="keep the state folder with the nodes' logs, and print its path")
    debug.add_argument("--param", action="append", default=[], type=_param, metavar="K=V",
                       help="a run parameter; V is read as a JSON scalar when it is one (as for"
                            " `flowplan run`); repeat for more")
    debug.add_argument("--ds", type=_ds, default=None, metavar="YYYY-MM-DD",
                       help="logical date: 00:00 of that day in the workflow's timezone"
                            " (default: now)")
    debug.set_defaults(handler=cmd_debug)




def _ds(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got '{text}'") from None


def cmd_debug(args: argparse.Namespace) -> int:
    workflow: str = args.workflow
    try:
        root = find_root(args.repo)
    except RepoError as exc:
        print(f"flowplan debug: {exc}", file=sys.stderr)
        return EXIT_USAGE
    result = compile_repo(read_repo(root))
    plan = report.plan_or_report(result, workflow, command="debug")
    if plan is None or plan.content is None:
        return EXIT_FAILED
    # the run goes ahead: show only what concerns its own file (warnings)
    report.print_diagnostics(dataclasses.replace(result, diagnostics=tuple(
        d for d in result.diagnostics if d.file == plan.content.file)))

    queue: str | None = args.queue
    if queue is not None and queue not in plan.content.queues:
        known = ", ".join(sorted(plan.content.queues))
        print(f"flowplan debug: error: --queue {queue}: flowplan.yaml defines no such queue"
              f" (queues: {known})", file=sys.stderr)
        return EXIT_USAGE
    params = dict(args.param)
    unknown = sorted(set(params) - set(plan.content.params))
    if unknown:
        declared = ", ".join(sorted(plan.content.params)) or "none"
        print(f"flowplan debug: note: {', '.join(unknown)} not among the workflow's params"
              f" ({declared})", file=sys.stderr)
    if args.ds is not None:
        zone = ZoneInfo(plan.content.timezone)
        logical_time = datetime(args.ds.year, args.ds.month, args.ds.day, tzinfo=zone)
    else:
        logical_time = datetime.now(UTC)
    state_dir = Path(tempfile.mkdtemp(prefix="flowplan-debug-"))
    return asyncio.run(debug_run(plan, state_dir=state_dir, logical_time=logical_time,
                                 params=params, out=sys.stdout, queue=queue, keep=args.keep))


async def debug_run(plan: Plan, *, state_dir: Path, logical_time: datetime,
                    params: dict[str, ParamValue], out: TextIO, queue: str | None = None,
                    keep: bool = True) -> int:
    """Run `plan` to its end on an engine of its own, on `queue` (default: the `dev` queue
    when defined); returns the exit code. Without `keep`, `state_dir` is removed at the end
    (not when Ctrl-C left with nodes still running)."""
    assert plan.content is not None
    if queue is None and DEBUG_QUEUE in plan.content.queues:
        queue = DEBUG_QUEUE
    plans = MemoryPlans([plan])
    store = StateStore(state_dir)
    engine = Engine(store=store, plans=plans, launcher=LocalLauncher(), clock=SystemClock(),
                    settings=EngineSettings(state_dir=state_dir,
                                            kill_grace_seconds=KILL_GRACE_SECONDS))
    reader = _Reader(out)
    view: _View = (_Table(plan, reader.stream, paint=console.Paint.for_stream(out))
                   if console.is_terminal(out) else _Lines(reader.stream))
    out = reader.stream  # from here on a reader who leaves (`| head`) breaks nothing
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    interrupts = 0
    run: Run | None = None

    def interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1 or run is None:
            if main is not None:
                main.cancel()
            return
        view.note("cancelling the run (Ctrl-C again to leave at once)")
        with contextlib.suppress(RunError):  # it may have just finished
            engine.cancel_run(run.run_id)

    unsubscribe = engine.subscribe(view.event)
    loop.add_signal_handler(signal.SIGINT, interrupt)
    ticker: asyncio.Task[None] | None = None
    try:
        await engine.start()
        latest = plans.latest(plan.workflow)
        assert latest is not None
        run = engine.create_run(latest, trigger=RunTrigger.DEBUG, logical_time=logical_time,
                                params=params, queue=queue,
                                remarks="flowplan debug (working tree)")
        started = run

        def nobody_reads() -> None:  # nobody watches any more: the run ends, then cleanup
            with contextlib.suppress(RunError):
                engine.cancel_run(started.run_id)

        reader.on_gone = lambda: loop.call_soon(nobody_reads)
        if reader.gone:
            nobody_reads()
        view.begin(run)
        ticker = loop.create_task(_both(view.tick(), reader.watch()))
        final = await engine.wait_run(run.run_id)
        ticker.cancel()
        view.end()
        _summary(engine, final, out, paint=view.paint)
    except asyncio.CancelledError:
        view.end()
        print(f"\nleft without waiting; nodes may still be running. State and logs:"
              f" {state_dir}", file=out, flush=True)
        return EXIT_INTERRUPTED
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if ticker is not None:
            ticker.cancel()
        unsubscribe()
        await engine.stop()
        store.close()
    if keep:
        print(f"state and logs: {state_dir}", file=out, flush=True)
    else:
        shutil.rmtree(state_dir, ignore_errors=True)
        print("state and logs removed (--keep keeps them)", file=out, flush=True)
    if interrupts:
        return EXIT_INTERRUPTED
    return EXIT_OK if final.status is RunStatus.SUCCEEDED else EXIT_FAILED


async def _both(first: Coroutine[Any, Any, None], second: Coroutine[Any, Any, None]
                ) -> None:
    """Run two coroutines until both end (or this is cancelled, which cancels both)."""
    await asyncio.gather(first, second)


class _Reader:
    """`out` for a reader who may leave (`flowplan debug | head`): past a broken pipe, what
    is written is dropped, `gone` says so and `on_gone` is called, once. Anything else (is
    it a terminal, its encoding) is the real stream's."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.gone = False
        self.on_gone: Callable[[], object] | None = None

    @property
    def stream(self) -> TextIO:
        return cast("TextIO", self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self._out.write(text)
            except BrokenPipeError:
                self._left()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._out.flush()
            except BrokenPipeError:
                self._left()

    async def watch(self) -> None:
        """Notice a reader who left while nothing is written (a node that runs quietly for
        long after `| head` took its line): a pipe whose reading end closed reports POLLERR
        to its writer, looked at every READER_CHECK_SECONDS."""
        try:
            fd = self._out.fileno()
        except (OSError, ValueError, io.UnsupportedOperation):
            return  # not a file (a test's StringIO): its writes say it all
        poller = select.poll()
        poller.register(fd, 0)  # POLLERR and POLLHUP are reported whatever is asked
        while not self.gone:
            await asyncio.sleep(READER_CHECK_SECONDS)
            if any(events & select.POLLERR for _, events in poller.poll(0)):
                self._left()

    def _left(self) -> None:
        self.gone = True
        # what stays in the stream's buffer would fail again at exit: let it go nowhere
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._out.fileno())
        if self.on_gone is not None:
            self.on_gone()


def _summary(engine: Engine, run: Run, out: TextIO, *, paint: console.Paint) -> None:
    counts: dict[str, int] = {}
    for node in run.nodes:
        counts[node.status.value] = counts.get(node.status.value, 0) + 1
    took = (f" in {duration((run.finished_at - run.started_at).total_seconds())}"
            if run.finished_at and run.started_at else "")
    detail = ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
    status = paint(f"{console.BOLD} {console.STATUS_STYLES.get(run.status.value, '')}",
                   run.status.value)
    print(f"\nrun {run.run_id} {status}{took} ({detail})", file=out)
    for node in run.nodes:
        if node.status is not NodeStatus.FAILED or not node.attempts:
            continue
        attempt = node.attempts[-1]
        reason = f": {attempt.error}" if attempt.error else ""
        print("\n" + paint(console.BOLD, f"--- {node.name}, attempt {attempt.number}{reason}"),
              file=out)
        lines = (tail(Path(attempt.log_path), LOG_TAIL_LINES, secrets=engine.secrets(run.run_id))
                 if attempt.log_path else None)
        if lines is None:
            print("(no log)", file=out)
        elif not lines:
            print("(empty log)", file=out)
        else:
            if attempt.log_path:
                print(paint(console.DIM, f"last {len(lines)} lines of {attempt.log_path}"),
                      file=out)
            print("\n".join(lines), file=out)
    out.flush()


def tail(path: Path, count: int, *, secrets: Sequence[str] = (), block: int = 8192
         ) -> list[str] | None:
    """The last `count` lines of a file (None if it does not exist), reading from its end,
    with `secrets` masked: it reads the longest secret's length more, so that a secret that
    began before those lines is masked or left out, never shown in part."""
    margin = max((len(s.encode("utf-8")) for s in secrets), default=0)
    try:
        with open(path, "rb") as handle:
            position = handle.seek(0, os.SEEK_END)
            data = b""
            while True:  # lines are counted once masked: a secret may span several
                if position == 0 or data.count(b"\n", margin) > count:
                    lines = mask_end(data.decode("utf-8", errors="replace"), list(secrets),
                                     cut=position > 0).splitlines()
                    if position == 0 or len(lines) >= count:
                        return lines[-count:]
                step = min(block, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
    except FileNotFoundError:
        return None


class _View:
    """How the live statuses are shown. Events that come before `begin` (the run's own, as
    it is created) are held back until the header is out."""

    paint = console.Paint(False)

    def __init__(self) -> None:
        self._held: list[StatusEvent] = []
        self._begun = False

    def event(self, event: StatusEvent) -> None:
        if self._begun:
            self.show(event)
        else:
            self._held.append(event)

    def begin(self, run: Run) -> None:
        self._begun = True
        self.header(run)
        for event in self._held:
            self.show(event)
        self._held.clear()

    def header(self, run: Run) -> None: ...

    def show(self, event: StatusEvent) -> None: ...

    def note(self, text: str) -> None: ...

    async def tick(self) -> None: ...

    def end(self) -> None: ...


def _header(run: Run) -> str:
    local = run.logical_time.isoformat(timespec="seconds")
    queue = run.queue_override or f"as the workflow sets (no {DEBUG_QUEUE} queue)"
    params = " ".join(f"{k}={v}" for k, v in sorted(masked_params(run.params).items()))
    return (f"debug run {run.run_id} of {run.workflow}: logical time {local}, queue {queue}"
            + (f", params {params}" if params else ""))


class _Lines(_View):
    """One line per status change, for logs and CI: `HH:MM:SS node STATUS attempt N`."""

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self._out = out

    def header(self, run: Run) -> None:
        print(_header(run), file=self._out, flush=True)

    def show(self, event: StatusEvent) -> None:
        clock = event.at.astimezone().strftime("%H:%M:%S")
        if event.node is None:
            line = f"{clock} run {event.status}"
        else:
            attempt = f" attempt {event.attempt}" if event.attempt is not None else ""
            line = f"{clock} {event.node} {event.status}{attempt}"
        print(line, file=self._out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self._out, flush=True)


@dataclasses.dataclass(slots=True)
class _Row:
    name: str
    status: str = "PENDING"
    attempt: int = 0
    started: float | None = None  # monotonic, first attempt's start
    ended: float | None = None


class _Table(_View):
    """A compact table redrawn in place (a rich `Live`, at most every REDRAW_SECONDS)."""

    def __init__(self, plan: Plan, out: TextIO, *, paint: console.Paint) -> None:
        from rich.live import Live

        assert plan.content is not None
        super().__init__()
        self._out = out
        self.paint = paint
        self._console = console.rich_console(out, paint)
        self._rows = {n.name: _Row(n.name) for n in plan.content.nodes}
        self._title = plan.workflow
        self._run_status = "PENDING"
        self._began = time.monotonic()
        self._last_draw = 0.0
        self._dirty = True
        self._notes: list[str] = []
        self._live = Live(console=self._console, auto_refresh=False, transient=False,
                          redirect_stdout=False, redirect_stderr=False,
                          get_renderable=self._renderable)  # draws nothing until started

    def header(self, run: Run) -> None:
        print(_header(run), file=self._out, flush=True)
        self._live.start(refresh=False)  # hides the cursor while redrawing
        self._draw()

    def show(self, event: StatusEvent) -> None:
        now = time.monotonic()
        if event.node is None:
            self._run_status = event.status
        else:
            row = self._rows.get(event.node)
            if row is None:
                return
            row.status = event.status
            if event.attempt is not None:
                row.attempt = event.attempt
            if event.status == "RUNNING" and row.started is None:
                row.started = now
            if NodeStatus(event.status).finished:
                row.ended = now
        self._dirty = True
        if now - self._last_draw >= REDRAW_SECONDS:
            self._draw()

    def note(self, text: str) -> None:
        self._notes.append(text)
        self._draw()

    async def tick(self) -> None:
        while True:
            await asyncio.sleep(REDRAW_SECONDS)
            if self._dirty or any(r.status in ("RUNNING", "RETRYING")
                                  for r in self._rows.values()):
                self._draw()

    def end(self) -> None:
        if self._live.is_started:
            self._live.stop()  # the last table stays, the cursor comes back
        self._out.flush()

    def _draw(self) -> None:
        if not self._live.is_started:
            return
        self._live.refresh()
        self._last_draw = time.monotonic()
        self._dirty = False

    def _renderable(self) -> Text:
        from rich.text import Text

        size = self._console.size
        return Text("\n", end="").join(
            self._render(time.monotonic(), size.width, max(3, size.height - 4)))

    def _render(self, now: float, columns: int, room: int) -> list[Text]:
        paint = self.paint
        rows = list(self._rows.values())
        shown = rows
        if len(rows) + 2 > room:  # keep what needs attention, then the rest in order
            keep = room - 3
            first = [r for r in rows if r.status in _ACTIVE][:keep]
            chosen = {id(r) for r in first}
            rest = [r for r in rows if id(r) not in chosen][:keep - len(first)]
            chosen |= {id(r) for r in rest}
            shown = [r for r in rows if id(r) in chosen]
        width = min(max([len(r.name) for r in shown] + [4]), max(10, columns - 32))
        lines = [paint.text((f"{'NODE':<{width}}  {'STATUS':<9}  ATTEMPT  DURATION",
                             console.BOLD))]
        for row in shown:
            name = row.name if len(row.name) <= width else row.name[:width - 1] + "~"
            attempt = str(row.attempt) if row.attempt else "-"
            took = "-"
            if row.started is not None:
                took = duration((row.ended or now) - row.started)
            lines.append(paint.text(
                f"{name:<{width}}  ",
                (f"{row.status:<9}", console.STATUS_STYLES.get(row.status, "")),
                f"  {attempt:>7}  {took:>8}"))
        hidden = len(rows) - len(shown)
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        totals = ", ".join(f"{n} {s.lower()}" for s, n in counts.items())
        more = f"... {hidden} more nodes; " if hidden else ""
        took = duration(now - self._began)
        footer = f"{more}{totals}"
        if len(f"{self._title} {self._run_status} {took}: {footer}") >= columns:
            footer = footer[:max(0, columns - len(self._title) - len(took) - 16)]
        lines.append(paint.text(
            f"{self._title} ",
            (self._run_status, console.STATUS_STYLES.get(self._run_status, "")),
            f" {took}: {footer}"))
        lines.extend(paint.text(note[:columns - 1]) for note in self._notes)
        return lines
