"""The daemon lays out large graphs itself, so that even the first view of a plan version
draws a ready layout.

It runs the very files a browser runs, the vendored d3-dag and `static/layout.js`, in an
embedded V8 (the `mini-racer` package), so its layout is the one a browser would compute. One
graph at a time, on a worker thread of its own (the event loop never waits for V8), each call
capped at LAYOUT_SECONDS and MAX_MEMORY bytes of V8 heap. What it computes goes through the
same check as a browser's post (`parse_layout`) into the same store (`Layouts`: the first
layout kept stays).

It lays out every graph of more than BIG nodes that has no layout (a new plan version that
leaves its graph as it was has one: the layout is its graph's, not its version's):
- eagerly, when the daemon loads a plan version (`plans_loaded`, from the plan watcher) and
  at start for every workflow's latest version (`start`), read through GetWorkflow as the
  workflow's page reads it, so the key is the one its pages look up;
- on demand, when a page of a graph without a layout is asked for. The page is served at
  once, without a layout but with `data-layout-wait`: its graph.js fetches
  `GET /layouts/KEY?...`, which answers the layout as soon as it is kept, so the daemon's
  work overlaps the browser's loading of the page (~0.3 s at 1,000 nodes), rather than the
  page's request waiting for it. Not kept within WAIT_SECONDS (or it failed): 204, and the
  browser lays the graph out for its page. It posts that layout too, but the daemon keeps
  it only where it does not lay the graph out itself (`takes_posts`): a graph the daemon
  lays out is never drawn from a layout a user sent.

Without V8 (`mini-racer` missing or not loadable here: logged once), after a graph's
layout failed (too slow, too large: logged, not tried again until a restart), or with
`--console-layouts browser`, pages are served as before: the first browser lays out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Protocol

import grpc

from flowplan.daemon.server.console.kit import SERVER, Kit, ServiceError
from flowplan.daemon.server.console.layouts import (
    BIG,
    LAYOUT_VERSION,
    Graph,
    LayoutError,
    Layouts,
    PageLayout,
    workflow_graph,
)
from flowplan.v1 import workflow_service_pb2 as pb

SCRIPTS: Final = ("d3-dag-1.2.2.min.js", "layout.js")  # in static/, in this order
LAYOUT_SECONDS: Final = 10.0  # one layout in V8 at most (bench/web.py's 1,000 nodes: ~0.25 s)
MAX_MEMORY: Final = 512 * 1024 * 1024  # bytes of V8 heap (bench/web.py's 1,000 nodes: < 8 MB)
SETTLE_SECONDS: Final = 5.0  # V8 ends a call cut short (a timeout) within this
# A page waits this long at most for the daemon's layout, then lays the graph out itself.
# The daemon began earlier, with the same engine (V8), so waiting for it beats starting
# anew in the browser, unless it is stuck behind other layouts (or the machine is starved).
WAIT_SECONDS: Final = 5.0

log = logging.getLogger("flowplan.daemon.console")


class ComputeError(Exception):
    """V8 could not lay a graph out (too slow, too large, a script error)."""


class Computer(Protocol):
    """What lays a graph out: its layout as JSON (ComputeError). The Layouter calls it on
    its worker thread; a close from another thread waits for the call under way."""

    def compute(self, graph: Graph) -> str: ...

    def close(self) -> None: ...


class V8Layout:
    """d3-dag and layout.js in one V8 context, made on first use and kept (a timeout or an
    exhausted heap leaves it usable; any other failure makes a new one next time). One call
    at a time: closing the context stops its event loop, and a layout under way on it would
    wait for good."""

    def __init__(self, folder: Path = SERVER / "static", *, seconds: float = LAYOUT_SECONDS,
                 max_memory: int = MAX_MEMORY) -> None:
        from py_mini_racer import MiniRacer, init_mini_racer  # ImportError: see load_v8

        # Not mini-racer's default --single-threaded: V8's own threads compile and collect
        # beside the layout, which shortens it (measured with dagre, the engine before
        # d3-dag: 1,000 nodes in ~0.5-0.6 s of wall time instead of ~0.65-0.8 s); the first
        # view of a new version waits for it. Once per process.
        init_mini_racer(flags=(), ignore_duplicate_init=True)
        self._make = MiniRacer
        self._sources = [(folder / name).read_text(encoding="utf-8") for name in SCRIPTS]
        self._seconds = seconds
        self._max_memory = max_memory
        self._context: Any = None
        self._one_at_a_time = threading.Lock()

    def _ready(self) -> Any:
        if self._context is None:
            context = self._make()
            try:
                for source in self._sources:
                    context.eval(source)
                big, version = context.eval("flowplanLayout.BIG"), context.eval(
                    "flowplanLayout.VERSION")
                if (big, version) != (BIG, LAYOUT_VERSION):
                    raise ComputeError(f"layout.js has BIG {big} and VERSION {version!r}, but"
                                       f" console/layouts.py {BIG} and {LAYOUT_VERSION!r}:"
                                       " make them the same")
            except BaseException:
                context.close()  # its event loop's thread with it
                raise
            self._context = context
        return self._context

    def compute(self, graph: Graph) -> str:
        data = json.dumps({"nodes": [{"name": name} for name in graph.nodes],
                           "edges": [list(edge) for edge in graph.edges]},
                          separators=(",", ":"))
        with self._one_at_a_time:
            return self._compute(data)

    def _compute(self, data: str) -> str:
        from py_mini_racer import JSOOMException, JSTimeoutException

        try:
            context = self._ready()
        except ComputeError:
            raise
        except Exception as exc:  # V8 did not start, or a script did not load
            self._drop()
            raise ComputeError(f"V8 with d3-dag: {type(exc).__name__}: {exc}") from exc
        try:
            text = context.eval(f"JSON.stringify(flowplanLayout.compute({data}))",
                                timeout_sec=self._seconds, max_memory=self._max_memory)
        except JSTimeoutException as exc:
            self._settle()
            raise ComputeError(f"not done within {self._seconds:g} s") from exc
        except JSOOMException as exc:
            self._settle()
            raise ComputeError(f"more than {self._max_memory >> 20} MB of V8 heap") from exc
        except Exception as exc:
            self._drop()
            raise ComputeError(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(text, str):
            raise ComputeError(f"layout.js returned {type(text).__name__}, not JSON text")
        context.low_memory_notification()  # the layout's garbage back at once, not later
        return text

    def _settle(self) -> None:
        """Wait for V8 to have ended the call it cut short (its last callback), so that the
        context is idle, or else dropped."""
        try:
            self._context.eval("0", timeout_sec=SETTLE_SECONDS)
        except Exception:
            self._drop()

    def close(self) -> None:
        with self._one_at_a_time:
            self._drop()

    def _drop(self) -> None:
        if self._context is not None:
            context, self._context = self._context, None
            context.close()


def load_v8() -> Computer | None:
    """A V8Layout, or None (logged) when mini-racer cannot be used here."""
    try:
        return V8Layout()
    except (ImportError, OSError) as exc:  # no wheel for this platform; no libmini_racer
        log.warning("console layouts: the embedded V8 (mini-racer) cannot be used here (%s):"
                    " the first browser to view a large graph lays it out", exc)
        return None


class Layouter:
    """The kept layouts (`layouts`), and the daemon's computing of those it lacks with
    `computer` (None: browsers lay out, as before). Used from the event loop."""

    def __init__(self, layouts: Layouts, computer: Computer | None, *,
                 wait_seconds: float = WAIT_SECONDS) -> None:
        self.layouts = layouts
        self._computer = computer
        self._wait = wait_seconds
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="console-layout")
        self._lock = asyncio.Lock()  # one computation at a time, in the order asked
        self._under_way: dict[str, asyncio.Task[bool]] = {}
        self._failed: set[str] = set()  # keys not tried again (the browser lays them out)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def computes(self) -> bool:
        return self._computer is not None

    def takes_posts(self, graph: Graph) -> bool:
        """Whether a browser's layout of `graph` may be kept: only where the daemon does not
        lay it out itself (no V8, `--console-layouts browser`, or V8 failed on this graph).
        Else the layout kept is always the daemon's, never one a user sent."""
        return not self.computes or graph.key in self._failed

    def page(self, graph: Graph, url: str) -> PageLayout:
        """What the page drawing `graph` carries: the kept layout; else, when the daemon can
        compute it, where the page fetches it (`wait`) once computed; else where the
        browser posts its own."""
        found = self.layouts.page(graph, url, posted=self.takes_posts(graph))
        if not found.url or not self.computes or graph.key in self._failed:
            return found
        self.lay_out(graph)  # under way by the time the page's script asks for it
        return PageLayout(url=found.url, wait=True)

    async def wait(self, graph: Graph) -> str | None:
        """The layout of `graph`, computed now if need be (waiting WAIT_SECONDS at most),
        or None: the browser lays the graph out."""
        posted = self.takes_posts(graph)
        stored = self.layouts.get(graph, posted=posted)
        if stored is not None or posted:
            return stored
        try:
            await asyncio.wait_for(asyncio.shield(self.lay_out(graph)), self._wait)
        except TimeoutError:
            return None
        return self.layouts.get(graph, posted=self.takes_posts(graph))

    def lay_out(self, graph: Graph) -> asyncio.Task[bool]:
        """The computation of `graph`'s layout, under way or new; its result: kept or not."""
        key = graph.key
        task = self._under_way.get(key)
        if task is None:
            task = asyncio.ensure_future(self._compute(graph))
            self._under_way[key] = task
            task.add_done_callback(lambda _: self._under_way.pop(key, None))
        return task

    async def _compute(self, graph: Graph) -> bool:
        assert self._computer is not None
        async with self._lock:
            if self.layouts.get(graph, posted=False) is not None or self._closed:
                return False
            began = time.monotonic()
            loop = asyncio.get_running_loop()
            try:
                text = await loop.run_in_executor(self._thread, self._computer.compute, graph)
                kept = self.layouts.put(graph, text, by_daemon=True)
            except (ComputeError, LayoutError) as exc:
                self._failed.add(graph.key)
                log.warning("console layouts: the daemon could not lay out a graph of %d"
                            " nodes (%s): its first browser lays it out", len(graph.nodes),
                            exc, extra={"fields": {"key": graph.key}})
                return False
            log.info("console layout computed", extra={"fields": {
                "key": graph.key, "nodes": len(graph.nodes), "edges": len(graph.edges),
                "seconds": round(time.monotonic() - began, 3), "bytes": len(text)}})
            return kept

    # ---- eagerly: the plan versions the daemon loads ----------------------------------

    def start(self, kit: Kit) -> None:
        """Lay out the latest version of every workflow (those without a layout)."""
        if self.computes:
            self._spawn(self._latest(kit))

    def plans_loaded(self, kit: Kit, versions: Iterable[tuple[str, int]]) -> None:
        """The daemon loaded these (workflow, version)s: lay out the large ones."""
        if self.computes:
            self._spawn(self._versions(kit, list(versions)))

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _latest(self, kit: Kit) -> None:
        token, found = "", []
        while True:
            page = await kit.call("ListWorkflows", pb.ListWorkflowsRequest(
                page_size=1000, page_token=token))
            found += [(w.name, w.plan_version) for w in page.workflows if len(w.nodes) > BIG]
            token = page.next_page_token
            if not token:
                break
        await self._versions(kit, found[:self.layouts.limit])

    async def _versions(self, kit: Kit, versions: list[tuple[str, int]]) -> None:
        for workflow, version in versions:
            try:
                answer = await kit.call("GetWorkflow", pb.GetWorkflowRequest(
                    workflow=workflow, plan_version=version))
            except ServiceError as exc:
                if exc.code != grpc.StatusCode.NOT_FOUND:  # a tombstone has no graph
                    log.warning("console layouts: %s version %d not read: %s", workflow,
                                version, exc)
                continue
            graph = workflow_graph(answer.workflow)
            if len(graph.nodes) > BIG and graph.key not in self._failed:
                await self.lay_out(graph)

    def close(self) -> None:
        """Stop laying out (the daemon stops). A computation under way ends on its own
        (LAYOUT_SECONDS at most), then the V8 context is closed, on the worker thread."""
        if self._closed:
            return
        self._closed = True
        for task in [*self._tasks, *self._under_way.values()]:
            task.cancel()
        if self._computer is not None:
            self._thread.submit(self._computer.close)
        self._thread.shutdown(wait=False)


def computer_for(setting: str, make: Callable[[], Computer | None] = load_v8
                 ) -> Computer | None:
    """The computer `--console-layouts` asks for: V8's (`daemon`), or none (`browser`)."""
    return make() if setting == "daemon" else None
