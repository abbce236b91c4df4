"""Graph layouts the daemon keeps, so that no view of a large graph but (at most) the very
first pays for its layout (~0.25-0.6 s at 1,000 nodes, d3-dag in V8).

A graph's layout depends on its nodes and edges alone, so it is computed once for every plan
version, run and workflow page showing that graph (a new version that leaves the graph as it
was draws at once): by the daemon itself, in its embedded V8, as soon as it loads a plan
version with a graph it has no layout of (layouter.py), or else by the first browser.
graph.js lays out a graph of more than BIG nodes that the page did not bring a layout for
(nor could fetch from the daemon, `GET /layouts/KEY?...`), draws it, and posts the layout to
`/layouts/KEY?run=RUN_ID` (or `?workflow=NAME&version=N`); where the daemon lays that graph
out itself, the post is not kept (202). Else the server reads that graph from the service
itself, recomputes its key (a hash of the nodes and edges as drawn) and keeps
the layout only when it fits that graph exactly: the same node names and edges, finite
numbers within the drawing's bounds, at most MAX_BYTES. The first layout kept for a key
stays (a client never replaces one); at most MAX_LAYOUTS are kept, the least recently used
going first, in memory and as `<state>/console-layouts/KEY[.daemon].json`, so they survive a
restart. A file that cannot be read is ignored (one log line) and removed.

A layout holds positions only: names, statuses and links come from the server's data, so a
poisoned layout can at worst misdraw the picture (docs/console.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import grpc
from aiohttp import web

from flowplan.daemon.server.console.kit import Kit, ServiceError, whole_number
from flowplan.daemon.server.roles import Grant
from flowplan.v1 import workflow_service_pb2 as pb

LAYOUTS_DIR: Final = "console-layouts"  # in the state directory
BIG: Final = 200  # nodes: above, graph.js posts its layout and the daemon keeps it
MAX_LAYOUTS: Final = 100  # kept, the least recently used going first
MAX_BYTES: Final = 1_000_000  # a layout's JSON (~0.2 MB at 1,000 nodes)
MAX_COORDINATE: Final = 10_000_000.0  # px: a drawing larger than this is not a layout
MAX_NODE_SIDE: Final = 10_000.0  # px: a node's box
TOLERANCE: Final = 1.0  # px: rounding of positions inside the drawing's bounds
# Part of every key: change it with layout.js's settings (its VERSION), and every kept layout is
# laid out again (old files are unused and go as the least recently used).
LAYOUT_VERSION: Final = "2"  # "1": dagre 0.8.5's layouts
KEY_RE: Final = re.compile(r"[0-9a-f]{32}")
DAEMON_SUFFIX: Final = ".daemon.json"  # a layout file the daemon made; a browser's: KEY.json
EDGE_SEP: Final = "\u0000"  # graph.js keys an edge "UP\0DOWN" (names cannot hold it)

log = logging.getLogger("flowplan.daemon.console")


class LayoutError(ValueError):
    """A layout that does not fit its graph: the message says where."""


@dataclass(frozen=True)
class Graph:
    """A graph as a page draws it: its nodes and edges in page order."""

    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]

    @cached_property
    def key(self) -> str:
        """The nodes and edges (in any order), not the plan: all the versions of a graph,
        their runs and workflow pages share it, as graph.js's key in the tab does."""
        digest = hashlib.sha256(f"flowplan-layout {LAYOUT_VERSION}\n".encode())
        for name in sorted(set(self.nodes)):
            digest.update(f"{name}\n".encode())
        digest.update(b"\n")
        for up, down in sorted(set(self.edges)):
            digest.update(f"{up} {down}\n".encode())
        return digest.hexdigest()[:32]


@dataclass(frozen=True)
class PageLayout:
    """What a page's `#graph` carries: the daemon's layout (`stored`, JSON), or where to post
    one (`url`) and whether to fetch it from there first (`wait`: the daemon is computing
    it), or neither (a graph of BIG nodes or fewer)."""

    stored: str = ""
    url: str = ""
    wait: bool = False


def run_graph(run: pb.Run) -> Graph:
    return Graph(tuple(n.name for n in run.nodes),
                 tuple((e.upstream, e.downstream) for e in run.edges))


def workflow_graph(workflow: pb.Workflow) -> Graph:
    return Graph(tuple(n.name for n in workflow.nodes),
                 tuple((e.upstream, e.downstream) for e in workflow.edges))


def parse_layout(text: str | bytes, graph: Graph) -> str:
    """`text` checked against `graph`, as the compact JSON kept and sent to pages:
    `{"width", "height", "nodes": {NAME: [left, top, width, height]}, "edges": {"UP\\0DOWN":
    [x1, y1, x2, y2, ...]}}`. LayoutError names what does not fit."""
    if len(text) > MAX_BYTES:
        raise LayoutError(f"the layout is {len(text)} bytes; at most {MAX_BYTES} are kept")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates,
                          parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise LayoutError(f"the layout is not JSON: {exc}") from exc
    if not isinstance(data, dict) or set(data) != {"width", "height", "nodes", "edges"}:
        raise LayoutError("the layout must be an object with exactly width, height, nodes"
                          " and edges")
    width = _number(data["width"], "width", 1.0, MAX_COORDINATE)
    height = _number(data["height"], "height", 1.0, MAX_COORDINATE)
    nodes, edges = data["nodes"], data["edges"]
    if not isinstance(nodes, dict) or not isinstance(edges, dict):
        raise LayoutError("nodes and edges must be objects keyed by node name and by"
                          " 'UP\\u0000DOWN'")
    _same("nodes", nodes, graph.nodes)
    _same("edges", edges, (f"{up}{EDGE_SEP}{down}" for up, down in graph.edges))
    kept_nodes: dict[str, list[float]] = {}
    for name in graph.nodes:
        box = nodes[name]
        where = f"nodes.{name}"
        if not isinstance(box, list) or len(box) != 4:
            raise LayoutError(f"{where} must be [left, top, width, height]")
        left = _number(box[0], f"{where}[0] (left)", -TOLERANCE, width)
        top = _number(box[1], f"{where}[1] (top)", -TOLERANCE, height)
        side_w = _number(box[2], f"{where}[2] (width)", 1.0, MAX_NODE_SIDE)
        side_h = _number(box[3], f"{where}[3] (height)", 1.0, MAX_NODE_SIDE)
        if left + side_w > width + TOLERANCE or top + side_h > height + TOLERANCE:
            raise LayoutError(f"{where} reaches beyond the layout's width or height")
        kept_nodes[name] = [left, top, side_w, side_h]
    kept_edges: dict[str, list[float]] = {}
    for up, down in graph.edges:
        edge = f"{up}{EDGE_SEP}{down}"
        points = edges[edge]
        where = f"edges.{up}->{down}"
        if not isinstance(points, list) or len(points) < 4 or len(points) % 2:
            raise LayoutError(f"{where} must be [x1, y1, x2, y2, ...]: two points or more")
        kept_edges[edge] = [_number(v, f"{where}[{i}]", -TOLERANCE,
                                    (width if i % 2 == 0 else height) + TOLERANCE)
                            for i, v in enumerate(points)]
    return json.dumps({"width": width, "height": height, "nodes": kept_nodes,
                       "edges": kept_edges}, separators=(",", ":"), allow_nan=False)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise LayoutError("the layout names a key twice in one object")
    return found


def _no_constant(name: str) -> Any:
    raise LayoutError(f"the layout holds {name}: only finite numbers are positions")


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LayoutError(f"{where} must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise LayoutError(f"{where} is {value!r}: it must lie between {low:g} and {high:g}")
    return number


def _same(what: str, given: dict[str, Any], expected: Iterable[str]) -> None:
    wanted = set(expected)
    if set(given) == wanted:
        return
    missing, extra = sorted(wanted - set(given)), sorted(set(given) - wanted)
    raise LayoutError(
        f"the layout's {what} are not the graph's: "
        + "; ".join(part for part in (
            f"missing {', '.join(map(repr, missing[:3]))}" if missing else "",
            f"not in the graph {', '.join(map(repr, extra[:3]))}" if extra else "") if part)
        + " (reload the page)")


class Layouts:
    """The kept layouts: the newest `limit` by use, in memory and (with `folder`) one file
    each. Files are read when their key is first asked for, and checked against the graph
    then, as a posted layout is.

    Each knows who made it: the daemon (`KEY.daemon.json`) or a browser's post (`KEY.json`,
    as every layout was before the daemon marked its own). Where the daemon lays a graph out
    itself, a posted layout is not used (`posted=False`) and the daemon's replaces it."""

    def __init__(self, folder: Path | None, limit: int = MAX_LAYOUTS) -> None:
        self._folder = folder
        self._limit = limit
        # key -> the layout's JSON, or None: a file not read yet. Least recently used first.
        self._kept: OrderedDict[str, str | None] = OrderedDict()
        self._made: set[str] = set()  # keys whose layout the daemon made
        if folder is None:
            return
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            files = sorted((p.stat().st_mtime, p.name) for p in folder.glob("*.json"))
        except OSError as exc:
            log.warning("console layouts: cannot use %s (%s): layouts are kept in memory"
                        " until the next restart", folder, exc)
            self._folder = None
            return
        for _, name in files:
            key = name.removesuffix(DAEMON_SUFFIX).removesuffix(".json")
            if not KEY_RE.fullmatch(key):
                continue
            if key in self._kept:  # both: the daemon's replaced a post it did not remove
                with contextlib.suppress(OSError):
                    (folder / f"{key}.json").unlink()
            self._kept[key] = None
            if name.endswith(DAEMON_SUFFIX):
                self._made.add(key)
        self._evict()

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def limit(self) -> int:
        """How many layouts are kept at most."""
        return self._limit

    def get(self, graph: Graph, *, posted: bool = True) -> str | None:
        """The layout kept for `graph`, or None (with `posted=False`, also when a browser
        sent it)."""
        key = graph.key
        if key not in self._kept or not (posted or key in self._made):
            return None
        text = self._kept[key]
        if text is None:
            text = self._read(key, graph)
            if text is None:
                return None
            self._kept[key] = text
        self._kept.move_to_end(key)
        if self._folder is not None:
            with contextlib.suppress(OSError):  # the order of use, for a restart
                os.utime(self._path(key))
        return text

    def put(self, graph: Graph, text: str | bytes, *, by_daemon: bool = False) -> bool:
        """Keep `text` (checked against `graph`: LayoutError) unless a layout is kept for the
        graph already: the first one stays, except that the daemon's (`by_daemon`) replaces
        one a browser sent. True when kept."""
        layout = parse_layout(text, graph)
        key = graph.key
        if key in self._kept and self.get(graph, posted=not by_daemon) is not None:
            return False
        if key in self._kept and self._folder is not None and key not in self._made:
            with contextlib.suppress(OSError):
                self._path(key).unlink()  # a browser's, replaced
        self._kept[key] = layout
        self._kept.move_to_end(key)
        if by_daemon:
            self._made.add(key)
        else:
            self._made.discard(key)
        if self._folder is not None:
            path = self._path(key)
            temporary = path.with_name(f"{key}.tmp")
            try:
                descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                    file.write(layout)
                os.replace(temporary, path)
            except OSError as exc:
                log.warning("console layouts: cannot write %s (%s): kept in memory only",
                            path, exc)
        self._evict()
        return True

    def page(self, graph: Graph, url: str, *, posted: bool = True) -> PageLayout:
        """What the page drawing `graph` carries; `url` names the graph for a post; `posted`:
        as for `get`."""
        if len(graph.nodes) <= BIG:
            return PageLayout()
        stored = self.get(graph, posted=posted)
        return PageLayout(stored=stored) if stored else PageLayout(
            url=f"/layouts/{graph.key}?{url}")

    def _path(self, key: str) -> Path:
        assert self._folder is not None
        return self._folder / (f"{key}{DAEMON_SUFFIX}" if key in self._made else f"{key}.json")

    def _read(self, key: str, graph: Graph) -> str | None:
        path = self._path(key)
        try:
            return parse_layout(path.read_bytes(), graph)
        except (OSError, LayoutError) as exc:
            log.warning("console layouts: %s could not be read (%s): ignored; the graph is"
                        " laid out again", path, exc)
            del self._kept[key]
            self._made.discard(key)
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def _evict(self) -> None:
        while len(self._kept) > self._limit:
            key, _ = self._kept.popitem(last=False)
            if self._folder is not None:
                with contextlib.suppress(OSError):
                    self._path(key).unlink()
            self._made.discard(key)


class LayoutPages:
    """`POST /layouts/KEY?run=RUN_ID` (or `?workflow=NAME&version=N`), form fields `csrf`
    and `layout`: any logged-in role may post (the layout is what layout.js computes for
    everyone, not an action), and the server checks it against the graph it reads itself;
    it is kept only where `takes(graph)` (layouter.py: where the daemon does not lay that
    graph out itself; else 202, not kept). `GET` of the same URL: the daemon's layout of
    that graph (JSON; waiting for the daemon's computation of it, layouter.py), or 204:
    none, the browser lays it out."""

    def __init__(self, kit: Kit, layouts: Layouts,
                 wait: Callable[[Graph], Awaitable[str | None]] | None = None,
                 takes: Callable[[Graph], bool] | None = None) -> None:
        self._kit = kit
        self._layouts = layouts
        self._wait = wait
        self._takes = takes

    def mount(self, app: web.Application) -> None:
        app.router.add_post("/layouts/{key}", self.post)
        app.router.add_get("/layouts/{key}", self.get)

    async def _graph_of(self, request: web.Request) -> Graph | web.Response:
        """The graph the request's query names, or 409 when KEY is not its key (the graph
        changed since the page was served)."""
        key = request.match_info["key"]
        graph = await self._graph(request.query)
        if graph.key != key:
            return web.Response(status=409, text=f"layout {key[:40]} is not the layout of"
                                " that graph (it changed): reload the page\n")
        return graph

    async def get(self, request: web.Request) -> web.StreamResponse:
        graph = await self._graph_of(request)
        if isinstance(graph, web.Response):
            return graph
        if len(graph.nodes) <= BIG:  # each page lays it out; nothing computed nor kept
            return web.Response(status=204)
        layout = (await self._wait(graph) if self._wait is not None
                  else self._layouts.get(graph))
        if layout is None:
            return web.Response(status=204)
        return web.Response(text=layout, content_type="application/json")

    async def post(self, request: web.Request) -> web.StreamResponse:
        graph = await self._graph_of(request)
        if isinstance(graph, web.Response):
            return graph
        if len(graph.nodes) <= BIG:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"a graph of {len(graph.nodes)} nodes is laid out by each"
                               f" page; the daemon keeps layouts of more than {BIG}")
        if self._takes is not None and not self._takes(graph):
            return web.Response(status=202, text="the daemon lays this graph out itself and"
                                " keeps its own layout: a page's is not kept\n")
        form = await request.post()
        text = form.get("layout")
        if not isinstance(text, str):
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               "layout: the form field is missing (the layout's JSON)")
        if len(text) > MAX_BYTES:
            return web.Response(status=413, text=f"layout: {len(text)} bytes; at most"
                                f" {MAX_BYTES} are kept\n")
        try:
            kept = self._layouts.put(graph, text)
        except LayoutError as exc:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, f"layout: {exc}") from exc
        if not kept:
            return web.Response(status=200, text="a layout of this graph is kept already;"
                                " it stays\n")
        grant: Grant = request["grant"]
        log.info("console layout kept", extra={"fields": {
            "key": graph.key, "nodes": len(graph.nodes), "bytes": len(text), "token": grant.name}})
        return web.Response(status=201, text="kept\n")

    async def _graph(self, query: Any) -> Graph:
        if "run" in query:
            answer = await self._kit.call("GetRun", pb.GetRunRequest(
                run_id=str(query["run"]), include_graph=True))
            return run_graph(answer.run)
        if "workflow" not in query or "version" not in query:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               "name the graph: ?run=RUN_ID, or ?workflow=NAME&version=N")
        answer = await self._kit.call("GetWorkflow", pb.GetWorkflowRequest(
            workflow=str(query["workflow"]),
            plan_version=whole_number(str(query["version"]), "version", "a version number")))
        return workflow_graph(answer.workflow)


def source_query(*, run: str = "", workflow: str = "", version: int = 0) -> str:
    """The query naming a page's graph in its layout's URL."""
    pairs: Sequence[tuple[str, str | int]] = (
        [("run", run)] if run else [("workflow", workflow), ("version", version)])
    return urlencode(pairs)
