"""Web console benchmark: what pages following a run cost the engine, how soon a change shows
on them, and how long a 1,000-node run page takes to draw its graph.

    python bench/web.py [--repeat N] [--pages N] [--loads N] [--nice N] [--aside cpu|idle]
                        [--node-seconds S] [--no-browser] [--json FILE] [--strict]

Two real `flowplan serve --http` daemons on loopback serve one store. Its `chain` workflow is
a `gate` node, which waits for a file named after its run, then a chain of 100 `true` nodes
(n0 -> n1 -> ... -> n99; with --node-seconds S each node sleeps S seconds, so its changes
come S apart instead of in a burst). Eight setups run it in turn, run by run (the order
rotates), each --repeat times (default 5) after a warm-up run:

- **none**: the first daemon, nobody watching (the floor of the handoff);
- **HTTP clients**: the second daemon, N (--pages, default 20) aiohttp clients in this
  process reading `/runs/RUN_ID/events?batch=1`, the run's events as a run page follows
  them (the floor of a change's latency: the daemon's part without a browser);
- **Chromium pages**: the second daemon, N pages of headless Chromium (Debian's `chromium`
  + `chromedriver`, through Selenium, as tests/test_web_console.py drives it) on the run's
  page, a window each: a tab in the background gets no frames (requestAnimationFrame
  stops), so it would not show what a user's page shows. 5 pages a browser (4 browsers
  for 20, as 4 users with 5 windows each): a browser's first 5 streams each have a
  connection of their own (docs/console.md), so each page reads its run's events as an
  HTTP client does. Every thread of the browsers runs at nice 10 (--nice) on the last CPU,
  so that the daemon gets the machine first, as it would with the browsers on the users'
  machines; set again once the pages are open, and every second while a run goes on,
  since Chromium sets the threads of a page it shows (and those it starts) itself. A nice
  value and a CPU affinity are a thread's on Linux: until 2026-12-05 the bench set only
  each process's main thread, and the others (the compositors, raised to nice -8 by
  Chromium, run as root here; run as an ordinary user, without a limit that allows it, it
  cannot raise them) ran on both CPUs ahead of the daemon. `--aside idle` sets them aside
  another way: SCHED_IDLE on every CPU, so that they have all the CPU the daemon leaves,
  on both CPUs, and none it wants;
- **least pages**: the same N windows of the same browsers, set aside the same way, each
  showing the least page that shows the run's graph live (LEAST_PAGE): the run page's graph
  as that page drew it, the console's style sheet, and the run's events, each node's new
  status written into its `<g>`; no node table, timeline, panel or other script. The floor
  of a run page's latency with N pages on this machine: what any page drawing this graph
  costs Chromium;
- **bare pages**: the same least pages with the graph not displayed (`display: none`):
  each status still goes into its `<g>`, and nothing is drawn. The floor of any page
  following the run: what reading the events and writing the DOM cost N pages here;
- **1 Chromium page**: the second daemon, one run page in a browser of its own at normal
  priority on any CPU: what a user's page shows when no other page competes for the CPU;
- **1 bare page**: the same browser showing one bare page;
- **1 Chromium page of N watchers**: the same browser showing one run page while N - 1 HTTP
  clients read the run's events beside it: the daemon serving N watchers, and one of them
  a page with CPU of its own, as each of N users' pages has on the user's machine.

The gate opens once every watcher follows the run (an HTTP client has its answer's headers; a
page has drawn its graph and its stream is live), so the 100 nodes run with every page
watching; the bench polls the run's end with GetRun (0.1 s apart, the same for all setups).

Figures:
- node handoff (the end of one node's attempt to the start of the next, from the stored
  run, 99 a run) p50 and p99 of each watched setup against none; target: p50
  <= 1.2x;
- a change's latency: from the engine's commit of it (the event's `time`) to an HTTP client
  reading it, to a page's DOM having it (a MutationObserver on `data-status` of the graph's
  `<g data-node>`, Date.now()), and to the end of the next frame after it (rAF, then a
  task); p50 and p99 over every page, the run pages' against the least pages', theirs
  against the bare pages'; target: the DOM's p99 <= 100 ms. And the chain's run, its
  first start to its last end, in each setup; the CPU the set-aside browsers spent from
  the gate's opening to the run's end seen (run pages, least pages, bare pages), and to
  the run pages' figures collected; the most of their threads found not set aside after a
  run;
- the physical limit of the latency's target here: what the page alone (a run page, a bare
  page) costs its browser a DOM update (its CPU from the gate's opening to the run's end
  seen, over the updates its page made), so the CPU N such pages would need to keep up with
  the run, against the CPU the N set-aside pages got (their CPU over the chain's run);
- a 1,000-node run page (a layered DAG with fan-outs and fan-ins, 2,043 edges, its 8
  sources waiting for their run's gate file), loaded --loads times (default 5) of each
  kind by the browser of the 1 page, before the 20 windows open: from the navigation's
  start to the end of the first frame with the graph drawn (graph.js sets
  `#graph[data-drawn=yes]`, then a rAF and a task). The first view of a new version, as a
  user meets it: publish a new version of the DAG, start a run as soon as the daemon has it
  (GetWorkflow polled 10 ms apart) and open its page at once (the tab's stored layouts
  cleared). Twice a load: a version with a new graph (its `alert` node renamed): the daemon
  lays the graph out as it loads the version, and the page carries or fetches that layout;
  for comparison, the same first view on the second daemon, which leaves layouts to
  browsers (`--console-layouts browser`, as before the daemon laid them out); then a
  version of that same graph (another `alert` command), which has its layout already. And
  a later view (a finished run's page, the tab's cleared), what every other view gets. The
  floor: the same URL loaded with graph.js, layout.js and d3-dag blocked, to its load
  event's end.
  Target: a view <= 1 s (p50; the max is shown). Also the time from the daemon's loading of
  a version to its keeping the layout it computed (its log's times). Where the time goes:
  the HTML, the scripts' start, the layout, building the SVG, the frame (graph.js's
  performance marks).

Chromium's part needs `chromium` and `chromedriver` on PATH and Selenium (the `test` or
`bench` extra); without them the bench says so, measures the rest, and with --strict exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiohttp
import grpc
from engine import Figure, percentile, table  # bench/engine.py

from flowplan.v1 import workflow_service_pb2 as pb
from flowplan.v1 import workflow_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
N_CHAIN = 100
N_BIG = 1000
HANDOFF_RATIO = 1.2
LATENCY_P99_MS = 100.0
DRAW_MS = 1000.0
SETUPS = ("none", "clients", "browsers", "least", "bare", "alone", "alone bare", "crowd")
# the setups with Chromium pages
PAGE_SETUPS = ("browsers", "least", "bare", "alone", "alone bare", "crowd")
ASIDE = ("browsers", "least", "bare")  # their pages in the set-aside browsers
ALONE = ("alone", "alone bare")  # one page in a browser of its own, at normal priority
# one run page in that browser among --pages watchers, the others HTTP clients
OWN_BROWSER = (*ALONE, "crowd")
# the setups showing LEAST_PAGE, its graph shown (least) or not
LEAST_PAGES = ("least", "bare", "alone bare")
_T = TypeVar("_T")
_I = TypeVar("_I")
# The pages a browser shows, as windows: 4 browsers for 20 pages, each page's stream on a
# connection of its own (a browser's first 5 streams are).
PAGES_PER_BROWSER = 5
FINISHED = (pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_CANCELLED)

# Injected into every page before its own scripts (Page.addScriptToEvaluateOnNewDocument):
# records when the DOM shows each node's new status and when the next frame after it
# ended, and marks the first frame with the graph drawn.
RECORDER = r"""
(() => {
  const bench = window.__bench = { changes: [] };
  function afterFrame(callback) {  // the end of the next frame: rAF, then a task
    requestAnimationFrame(() => setTimeout(callback, 0));
  }
  // changes waiting for the end of the next frame: one rAF for them all, so that the
  // recorder costs the page little more than the MutationObserver itself
  let waiting = [];
  new MutationObserver((records) => {
    const now = Date.now();
    const entry = { at: now, frame: null, nodes: [] };
    records.forEach((record, i) => {
      const element = record.target;
      if (record.attributeName === "data-drawn") {  // the graph's, not the timeline's
        if (element.id === "graph") {
          afterFrame(() => performance.mark("bench-graph-painted"));
        }
      } else if (element.localName === "g" && element.dataset.node) {
        // the status this record set: the next record's old value for the same node (a
        // batch may take it from PENDING to RUNNING to SUCCEEDED in one task), else its
        // status now
        const next = records.slice(i + 1).find((later) => later.target === element &&
                                                          later.attributeName === "data-status");
        const set = next ? next.oldValue : element.dataset.status;
        if (set !== record.oldValue) {
          entry.nodes.push([element.dataset.node, set]);
        }
      }
    });
    if (entry.nodes.length) {
      bench.changes.push(entry);
      waiting.push(entry);
      if (waiting.length === 1) {
        afterFrame(() => {
          const now = Date.now();
          for (const done of waiting) {
            done.frame = now;
          }
          waiting = [];
        });
      }
    }
  }).observe(document, { subtree: true, attributes: true, attributeOldValue: true,
                         attributeFilter: ["data-status", "data-drawn"] });
})();
"""


# ---------------------------------------------------------------------------------------
# Workflows
# ---------------------------------------------------------------------------------------


def _node(name: str, upstream: list[str], command: str = "true") -> str:
    ups = f", upstream: [{', '.join(upstream)}]" if upstream else ""
    return f"  - {{name: {name}, command: '{command}'{ups}}}"


def _gate(gates: Path, every: float = 0.02) -> str:
    """Waits for the run's file in `gates`, looking `every` seconds; gives up when the
    bench's folder is gone (the bench ended without opening it)."""
    return (f"while [ ! -e {gates}/${{run_id}} ]; do [ -d {gates} ] || exit 1; sleep {every};"
            " done")


def gated_chain(gates: Path, seconds: float = 0.0) -> str:
    """The gate waits for its file; the engine stops it after 10 minutes in any case. Each
    node of the chain runs `true`, or with `seconds` `sleep SECONDS`."""
    command = f"sleep {seconds:g}" if seconds else "true"
    nodes = [_node("gate", [], _gate(gates))[:-1] + ", timeout: 10m}"]
    nodes += [_node(f"n{i}", [f"n{i - 1}"] if i else ["gate"], command)
              for i in range(N_CHAIN)]
    return "\n".join(["name: chain", "nodes:", *nodes]) + "\n"


def layered_dag(count: int, seed: int = 16, gates: Path | None = None,
                version: int = 0, graph: int = 0) -> str:
    """A DAG as data teams write them: a few sources, layers of 20-60 nodes each picking 1-3
    upstream nodes of the layer before, a fan-in checkpoint every sixth layer that the next
    layer fans out from, then a `publish` fan-in and an `alert`. With `gates`, the sources
    wait for their run's gate file (the engine stays idle while a page loads); `version`
    changes the `alert` node's command: a new plan version of the very same graph; `graph`
    (not 0) renames it `alert_GRAPH`: a new graph of the same size, laid out anew."""
    rng = random.Random(seed)
    verbs = ("extract", "clean", "join", "score", "load", "check", "agg", "enrich", "dedupe")
    things = ("orders", "users", "events", "payments", "stock", "clicks", "invoices", "ads")
    nodes: list[str] = []
    previous: list[str] = []
    layer = 0
    while len(nodes) < count - 2:
        size = 8 if layer == 0 else 1 if layer % 6 == 5 else rng.randint(20, 60)
        current = []
        for _ in range(min(size, count - 2 - len(nodes))):
            name = f"{rng.choice(verbs)}_{rng.choice(things)}_{len(nodes):03d}"
            upstream = (previous if len(previous) == 1 or size == 1 else
                        rng.sample(previous, min(len(previous), rng.randint(1, 3))))
            # a source waits for the gate (0.5 s apart)
            command = _gate(gates, 0.5) if gates is not None and not layer else "true"
            nodes.append(_node(name, upstream, command))
            current.append(name)
        previous, layer = current, layer + 1
    alert = f"alert_{graph}" if graph else "alert"
    nodes += [_node("publish", previous), _node(alert, ["publish"], f"echo {version}")]
    return "\n".join(["name: big", "queue: wide", "nodes:", *nodes]) + "\n"


# ---------------------------------------------------------------------------------------
# The daemons
# ---------------------------------------------------------------------------------------


def publish(repo: Path, store: Path) -> None:
    subprocess.run([sys.executable, "-m", "flowplan.daemon.cli", "publish", str(repo),
                    "--store", str(store)], check=True, cwd=ROOT, capture_output=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    def __init__(self, work: Path, name: str, store: Path, *extra: str) -> None:
        self.port, self.http_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.log_path = work / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowplan.daemon.cli", "serve", "--store", str(store),
             "--state", str(work / f"state-{name}"), "--listen", f"127.0.0.1:{self.port}",
             "--http", f"127.0.0.1:{self.http_port}", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = pb_grpc.WorkflowServiceStub(self.channel)

    async def ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                await self.stub.ListWorkflows(pb.ListWorkflowsRequest(), timeout=1)
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
        sys.exit("bench: a daemon did not start; see its log")

    async def start(self, workflow: str) -> str:
        request = pb.StartRunRequest(workflow=workflow)
        return str((await self.stub.StartRun(request)).run.run_id)

    async def finish(self, run_id: str) -> pb.Run:
        """Poll the run to its end (0.1 s apart); exit if it did not succeed."""
        while True:
            request = pb.GetRunRequest(run_id=run_id, include_graph=True)
            run: pb.Run = (await self.stub.GetRun(request)).run
            if run.status in FINISHED:
                break
            await asyncio.sleep(0.1)
        if run.status != pb.RUN_STATUS_SUCCEEDED:
            sys.exit(f"bench: run {run_id} ended {pb.RunStatus.Name(run.status)}")
        return run

    async def version(self, workflow: str) -> int:
        request = pb.GetWorkflowRequest(workflow=workflow)
        return int((await self.stub.GetWorkflow(request)).workflow.plan_version)

    async def loaded_to_kept(self, workflow: str, version: int, nodes: int
                             ) -> tuple[float, float]:
        """Seconds from the daemon's loading `version` to its keeping the layout it computed
        of a graph of `nodes` (its log's times), and of those its layout's own (V8's and the
        check's), polled for 60 s."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            loaded = None
            for line in self.log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    at = datetime.fromisoformat(entry["time"]).timestamp()
                    if entry["message"] == f"plan {workflow} version {version} loaded":
                        loaded = at
                    elif (loaded is not None and entry["message"] == "console layout computed"
                          and entry["nodes"] == nodes):
                        return at - loaded, float(entry["seconds"])
            await asyncio.sleep(0.1)
        sys.exit(f"bench: the daemon did not lay out {workflow} version {version}; see its log")

    async def stop(self) -> None:
        await self.channel.close()
        self.process.terminate()
        await asyncio.to_thread(self.process.wait, 30)
        self.log.close()


async def watch(session: aiohttp.ClientSession, url: str, connected: asyncio.Event,
                latencies: list[float]) -> None:
    """Read a run's events to their end, as a run page does (`?batch=1`: each write's changes
    in one `changes` event); each change's latency."""
    async with session.get(url, params={"batch": "1"}) as response:
        connected.set()
        since = time.time()
        async for line in response.content:
            read = time.time()
            if line.startswith(b"event: end"):
                return
            if line.startswith(b"data: "):
                for change in json.loads(line[6:]):
                    if change["time"] >= since:  # recorded after this client connected
                        latencies.append(read - change["time"])


async def commits(session: aiohttp.ClientSession, url: str) -> dict[tuple[str, str], float]:
    """A finished run's events: when the engine committed each (node, status), first time."""
    times: dict[tuple[str, str], float] = {}
    async with session.get(url) as response:
        async for line in response.content:
            if line.startswith(b"data: "):
                change = json.loads(line[6:])
                if "node" in change:
                    key = (change["node"]["name"], change["node"]["status"])
                    times.setdefault(key, change["time"])
    return times


def handoffs(run: pb.Run) -> list[float]:
    by_name = {node.name: node for node in run.nodes}
    return [by_name[f"n{k + 1}"].attempts[0].started_at.ToNanoseconds() / 1e9
            - by_name[f"n{k}"].attempts[-1].finished_at.ToNanoseconds() / 1e9
            for k in range(N_CHAIN - 1)]


def chain_seconds(run: pb.Run) -> float:
    """From the chain's first start to its last end."""
    by_name = {node.name: node for node in run.nodes}
    return (by_name[f"n{N_CHAIN - 1}"].attempts[-1].finished_at.ToNanoseconds()
            - by_name["n0"].attempts[0].started_at.ToNanoseconds()) / 1e9


# ---------------------------------------------------------------------------------------
# Chromium
# ---------------------------------------------------------------------------------------


def chromium_missing() -> str | None:
    """Why Chromium's part cannot run, or None."""
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        return ("no `chromium` and `chromedriver` on PATH (Debian: apt-get install chromium"
                " chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "no Selenium (pip install -e '.[bench]')"
    return None


# how the watching browsers are set aside: "cpu" (every thread at --nice on the last CPU) or
# "idle" (every thread SCHED_IDLE on every CPU)
Aside = Literal["cpu", "idle"]


def aside_cpus(aside: Aside) -> set[int]:
    """The CPUs the watching browsers are kept on: `cpu`, the last this process may use;
    `idle`, all of them."""
    cpus = os.sched_getaffinity(0)
    return {max(cpus)} if aside == "cpu" else cpus


class Chromium:
    """One headless Chromium, its windows each with RECORDER injected into every page."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = str(shutil.which("chromium"))
        # as tests/test_web_console.py's browsers: without the features, each window's
        # hidden WebUI omnibox popups draw for seconds after it opens (~0.4 CPU a window)
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1100,700",
                         "--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup"):
            options.add_argument(argument)
        self.driver = webdriver.Chrome(options=options,
                                       service=Service(str(shutil.which("chromedriver"))))
        self.driver.set_page_load_timeout(60)
        self.windows = [self.driver.current_window_handle]
        self._prepare()

    def _prepare(self) -> None:
        # not Network.enable (warm_up enables it for the 1,000-node views' blocked URLs, and
        # draw disables it after them):
        # with it the browser sends chromedriver a DevTools message for each event a page
        # reads, a cost that a user's browser does not have
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                    {"source": RECORDER})

    def open_windows(self, count: int) -> None:
        while len(self.windows) < count:
            self.driver.switch_to.new_window("window")
            self.windows.append(self.driver.current_window_handle)
            self._prepare()

    def each(self) -> Iterator[int]:
        for index, handle in enumerate(self.windows):
            self.driver.switch_to.window(handle)
            yield index

    def script(self, source: str, *args: Any) -> Any:
        return self.driver.execute_script(source, *args)

    def until(self, source: str, what: str, timeout: float = 120) -> Any:
        """Poll a script in the current window until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while not (value := self.script(source)):
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.01)
        return value

    def processes(self) -> list[int]:
        """chromedriver's process and its descendants (the browser, its renderers...)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:  # "PID (NAME) STATE PPID ..."
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(stat.parent.name))
        found, todo = [], [self.driver.service.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children.get(pid, [])
        return found

    def threads(self) -> Iterator[int]:
        """The thread ids of all its processes."""
        for pid in self.processes():
            with contextlib.suppress(OSError):  # it may have ended meanwhile
                yield from (int(task) for task in os.listdir(f"/proc/{pid}/task"))

    def set_aside(self, nice: int, aside: Aside) -> None:
        """Every thread of this browser's set aside, and so the threads they start next:
        `cpu`, at `nice` on the last CPU; `idle`, SCHED_IDLE on every CPU (it runs only
        when nothing else would). Either way the daemon gets the machine first, as if the
        browsers ran on other machines. Chromium sets the threads of a page it shows
        itself: call again once the pages are open."""
        cpus = aside_cpus(aside)
        for thread in self.threads():
            with contextlib.suppress(OSError):
                if aside == "idle":
                    os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
                else:
                    os.setpriority(os.PRIO_PROCESS, thread, nice)
                os.sched_setaffinity(thread, cpus)

    def escaped(self, nice: int, aside: Aside) -> int:
        """How many of its threads are not (or no longer) set aside."""
        cpus = aside_cpus(aside)
        count = 0
        for thread in self.threads():
            with contextlib.suppress(OSError):
                count += (os.sched_getaffinity(thread) != cpus
                          or (os.sched_getscheduler(thread) != os.SCHED_IDLE
                              if aside == "idle"
                              else os.getpriority(os.PRIO_PROCESS, thread) != nice))
        return count

    def cpu(self) -> dict[int, float]:
        """CPU seconds (user + system) of each of its processes so far."""
        seconds = {}
        for pid in self.processes():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return seconds

    def quit(self) -> None:
        self.driver.quit()


def process_kind(pid: int) -> str:
    """A Chromium process's kind: its `--type=` (renderer, gpu-process, utility, zygote), or
    `browser`, or `chromedriver`."""
    try:  # a child rewrites its command line as one string: split on spaces too
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
    except OSError:
        return "gone"
    for arg in argv:
        if arg.startswith(b"--type="):
            return arg[7:].decode(errors="replace")
    return "chromedriver" if argv and argv[0].endswith(b"chromedriver") else "browser"


WATCHING = """const live = document.documentElement.dataset.streamsLive;
return !!(window.__bench && Number(live) > 0 &&
          document.querySelector('#graph[data-drawn="yes"]'))"""
# The least page that shows a run's graph live, the floor of a run page's latency: the run
# page's graph as that page drew it (its SVG, the console's style sheet) and the run's
# events, each node's new status written into its <g>. Nothing else of the run page: no
# node table, timeline, panel, run's duration or other script. The same hooks as a run
# page's (WATCHING, FINISHED_PAGE) and the same RECORDER. With `shown` false, the bare
# page, the floor of any page following the run: the graph is not displayed (each status
# still goes into its <g>), so a change costs reading the events and writing the DOM, and
# nothing is drawn.
LEAST_PAGE = r"""
const [graph, events, shown] = arguments;
const link = document.createElement("link");
link.rel = "stylesheet";
link.href = "/static/console.css";
document.head.replaceChildren(link);
document.body.innerHTML = '<div id="graph" class="graph">' + graph + '</div>' +
                          '<table id="run-nodes"></table>';
const box = document.getElementById("graph");
if (!shown) {
  box.querySelector("svg").style.display = "none";
}
const nodes = new Map();
for (const element of box.querySelectorAll("g[data-node]")) {
  nodes.set(element.dataset.node, element);
}
const source = new EventSource(events);
source.addEventListener("open", () => { document.documentElement.dataset.streamsLive = "1"; });
source.addEventListener("changes", (message) => {
  for (const change of JSON.parse(message.data)) {
    const element = change.node && nodes.get(change.node.name);
    if (element) {
      element.dataset.status = change.node.status;
    }
  }
});
source.addEventListener("end", () => {
  source.close();
  document.getElementById("run-nodes").dataset.finished = "yes";
});
box.dataset.drawn = "yes";
"""
GRAPH = """return [document.querySelector("#graph svg").outerHTML,
                   document.getElementById("run-nodes").dataset.sequence]"""
FINISHED_PAGE = """const t = document.getElementById("run-nodes");
                   return !!t && t.dataset.finished === 'yes';"""
DRAWN = """const mark = (name) => (performance.getEntriesByName(name)[0] || {}).startTime;
if (mark("bench-graph-painted") === undefined) { return null; }
const nav = performance.getEntriesByType("navigation")[0];
return { painted: mark("bench-graph-painted"), drawn: mark("flowplan-graph-drawn"),
         laid_out: mark("flowplan-graph-laid-out"), start: mark("flowplan-graph-start"),
         html: nav.responseEnd, layout: document.getElementById("graph").dataset.layout,
         kept: (document.getElementById("graph").dataset.daemonLayout || "").length,
         nodes: document.querySelectorAll("#graph g[data-node]").length };"""
LOADED = """const nav = performance.getEntriesByType("navigation")[0];
return nav && nav.loadEventEnd > 0 ? { load: nav.loadEventEnd, html: nav.responseEnd,
  drawn: document.querySelectorAll("#graph g[data-node]").length } : null;"""
BLOCKED = ["*/static/graph.js*", "*/static/layout.js*",  # named with their ?v= hash
           "*/static/d3-dag-*.js*"]


def block(chromium: Chromium, urls: list[str]) -> None:
    chromium.driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": urls})


def warm_up(chromium: Chromium, url: str) -> None:
    """The daemon's templates, Chromium's caches (the scripts kept by their hashed URLs).
    DevTools' Network domain is on from here to the end of the 1,000-node views."""
    chromium.driver.switch_to.window(chromium.windows[0])
    chromium.driver.execute_cdp_cmd("Network.enable", {})
    chromium.driver.get(url)
    chromium.until(DRAWN, "the 1,000-node graph drawn")
    chromium.script("sessionStorage.clear()")


def first_view(chromium: Chromium, url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run page of a version just published, at once; then the floor: the same URL with
    the graph's scripts blocked. The tab's stored layouts are cleared after (the versions
    share one graph: the tab would draw its own)."""
    chromium.driver.get(url)
    drawn: dict[str, Any] = chromium.until(DRAWN, "a new version's graph drawn")
    block(chromium, BLOCKED)
    chromium.driver.get(url)
    floor: dict[str, Any] = chromium.until(LOADED, "the page loaded without scripts")
    block(chromium, [])
    chromium.script("sessionStorage.clear()")
    return drawn, floor


def later_views(chromium: Chromium, url: str, loads: int) -> dict[str, list[dict[str, Any]]]:
    """`loads` rounds of a view with the daemon's layout in the page (the tab's cleared),
    and its floor."""
    found: dict[str, list[dict[str, Any]]] = {"daemon": [], "floor, daemon's layout": []}
    for _ in range(loads):
        chromium.script("sessionStorage.clear()")
        chromium.driver.get(url)
        found["daemon"].append(chromium.until(DRAWN, "the graph drawn, the daemon's layout"))
        block(chromium, BLOCKED)
        chromium.driver.get(url)
        found["floor, daemon's layout"].append(chromium.until(
            LOADED, "the page with the daemon's layout loaded without scripts"))
        block(chromium, [])
    return found


def check_loads(loads: dict[str, list[dict[str, Any]]]) -> None:
    for kind in ("first", "same", "browser", "daemon"):
        if any(load["nodes"] != N_BIG for load in loads[kind]):
            sys.exit(f"bench: a {kind} view of the 1,000-node page did not draw every node:"
                     f" {[(load['nodes'], load['layout']) for load in loads[kind]]}")
    if any(load["layout"] != "daemon" for load in loads["daemon"] + loads["same"]):
        sys.exit("bench: a later view, or a first view of a graph laid out already, did not"
                 " draw the daemon's layout")
    if any(load["layout"] != "computed" for load in loads["browser"]):
        sys.exit("bench: a first view on the daemon with `--console-layouts browser` did not"
                 " lay its graph out")
    if any(load["drawn"] for kind in ("floor", "floor, same graph", "floor, daemon's layout")
           for load in loads[kind]):
        sys.exit("bench: the floor's page drew its graph: blocking graph.js did not work")


def open_pages(chromium: Chromium, url: str) -> None:
    for _ in chromium.each():
        chromium.driver.get(url)
    for _ in chromium.each():
        chromium.until(WATCHING, "a page following the run")


def run_graph(chromium: Chromium, url: str) -> tuple[str, str]:
    """A run page's graph as drawn (its SVG) and the last change it shows (its sequence),
    from the page in the current window."""
    chromium.driver.get(url)
    chromium.until(WATCHING, "a page following the run")
    graph, sequence = chromium.script(GRAPH)
    return str(graph), str(sequence)


def open_least_pages(chromium: Chromium, origin: str, graph: str, events: str,
                     shown: bool) -> None:
    """LEAST_PAGE in every window, following `events`, its graph `shown` or not. Built in a
    document of the daemon's (its style sheet, shown as text): a page of another origin may
    not read the events."""
    for _ in chromium.each():
        chromium.driver.get(f"{origin}/static/console.css")
        chromium.script(LEAST_PAGE, graph, events, shown)
    for _ in chromium.each():
        chromium.until(WATCHING, "a least or bare page following the run")


def page_changes(chromium: Chromium) -> list[list[dict[str, Any]]]:
    """Every page's recorded changes, once it shows the run finished and the frame after its
    last change has ended (or 2 s passed: a page that got no frame)."""
    for _ in chromium.each():
        chromium.until(FINISHED_PAGE, "a page showing the run finished")
    pages = []
    for _ in chromium.each():
        deadline = time.monotonic() + 2
        while (changes := chromium.script("return window.__bench.changes")) and any(
                entry["frame"] is None for entry in changes) and time.monotonic() < deadline:
            time.sleep(0.01)
        pages.append(changes)
    return pages


def cpu_spent(browsers: list[Chromium], before: list[dict[int, float]]) -> dict[str, float]:
    """The browsers' CPU seconds since `before` (their `cpu()` then), by process kind."""
    kinds: dict[str, float] = {}
    for browser, then in zip(browsers, before, strict=True):
        for pid, now in browser.cpu().items():
            kind = process_kind(pid)
            kinds[kind] = kinds.get(kind, 0.0) + now - then.get(pid, 0.0)
    return kinds


def in_each(items: list[_I], work: Callable[[_I], _T]) -> list[_T]:
    """`work` on every item (a browser) at once, a thread each."""
    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(work, items))


# ---------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    repeat: int  # runs per setup
    pages: int  # HTTP clients, and Chromium pages, watching
    loads: int  # loads of the 1,000-node page, of each kind
    browser: bool  # Chromium's part
    nice: int  # the watching browsers' niceness
    aside: Aside  # how they are set aside
    node_seconds: float = 0.0  # what each node of the chain sleeps (0: it runs `true`)


class Results:
    def __init__(self) -> None:
        self.gaps: dict[str, list[float]] = {setup: [] for setup in SETUPS}
        self.clients: list[float] = []  # seconds, an HTTP client reading each change
        # seconds, a page's DOM showing each change, and the end of the frame after it
        self.dom: dict[str, list[float]] = {setup: [] for setup in PAGE_SETUPS}
        self.frame: dict[str, list[float]] = {setup: [] for setup in PAGE_SETUPS}
        self.no_frame = 0  # DOM changes with no frame after them
        self.loads: dict[str, list[dict[str, Any]]] = {}
        # seconds: a version loaded to its layout kept, and of those the layout's own
        self.kept: list[tuple[float, float]] = []
        self.chain: dict[str, list[float]] = {setup: [] for setup in SETUPS}  # a run's s
        self.browser_cpu: list[float] = []  # CPU seconds of the browsers, a run each
        # the set-aside browsers' CPU seconds to the run's end seen (0.1 s apart), a run each
        self.run_cpu: dict[str, list[float]] = {setup: [] for setup in ASIDE}
        self.escaped = 0  # the most browser threads found not set aside after a run
        # the 1 page alone (a run page, a bare page), a run each: its browser's CPU seconds
        # from the gate's opening to the run's end seen, the DOM updates its page made (the
        # MutationObserver's callbacks with a node's status), the chain's run in seconds
        self.alone_cost: dict[str, list[tuple[float, int, float]]] = {
            setup: [] for setup in ALONE}
        self.browser_kinds: list[dict[str, float]] = []  # the same by process kind

    def runs_forgotten(self) -> Results:
        """New results with this one's 1,000-node figures: the warm-up runs' left out."""
        fresh = Results()
        fresh.loads, fresh.kept = self.loads, self.kept
        return fresh


class Bench:
    def __init__(self, work: Path, options: Options, session: aiohttp.ClientSession,
                 daemons: dict[str, Daemon], say: Callable[[str], None]) -> None:
        self.gates = work / "gates"
        self.repo, self.store = work / "repo", work / "store"
        self.options = options
        self.session = session
        self.daemons = daemons
        self.say = say
        self.results = Results()
        self.browsers: list[Chromium] = []  # the pages' browsers, set aside
        self.alone: Chromium | None = None  # the draw time's, then one page at full speed

    async def run(self) -> None:
        setups = SETUPS if self.options.browser else SETUPS[:2]
        if self.options.browser:
            await self.draw()
            await self.open_windows()
        if not self.options.repeat:
            return
        self.say("warm-up runs")
        for setup in setups:
            await self.chain_run(setup)
        self.results = self.results.runs_forgotten()
        for i in range(self.options.repeat):
            self.say(f"round {i + 1} of {self.options.repeat}")
            for setup in setups[i % len(setups):] + setups[:i % len(setups)]:
                await self.chain_run(setup)

    async def draw(self) -> None:
        count = -(-self.options.pages // PAGES_PER_BROWSER)
        self.say(f"starting {count} Chromium browsers")
        self.alone, *self.browsers = await asyncio.to_thread(in_each, [None] * (count + 1),
                                                             lambda _: Chromium())
        if not self.options.loads:
            return
        daemon = self.daemons["none"]
        self.say(f"a run of the {N_BIG}-node DAG")
        big = await daemon.start("big")
        (self.gates / big).touch()
        await daemon.finish(big)
        url = f"{daemon.url}/runs/{big}"
        await asyncio.to_thread(warm_up, self.alone, url)
        loads: dict[str, list[dict[str, Any]]] = {
            "first": [], "floor": [], "browser": [], "same": [], "floor, same graph": []}
        for _ in range(self.options.loads):
            version = await daemon.version("big") + 1
            self.say(f"version {version}, a new graph: published, run and viewed at once")
            drawn, floor, kept = await self.first_view(daemon, version, new_graph=True)
            loads["first"].append(drawn)
            loads["floor"].append(floor)
            assert kept is not None
            self.results.kept.append(kept)
            loads["browser"].append(await self.browser_view(version))
            self.say(f"version {version + 1}, the same graph: published, run and viewed at"
                     " once")
            drawn, floor, kept = await self.first_view(daemon, version + 1, new_graph=False)
            loads["same"].append(drawn)
            loads["floor, same graph"].append(floor)
            assert kept is None
        self.say(f"loading a finished run's page {self.options.loads} x 2 times")
        loads.update(await asyncio.to_thread(later_views, self.alone, url,
                                             self.options.loads))
        await asyncio.to_thread(self.alone.driver.execute_cdp_cmd, "Network.disable", {})
        check_loads(loads)
        self.results.loads = loads

    async def first_view(self, daemon: Daemon, version: int, *, new_graph: bool
                         ) -> tuple[dict[str, Any], dict[str, Any], tuple[float, float] | None]:
        """Publish `version` of the 1,000-node DAG, with a new graph (layered_dag's `graph`
        numbered as the version) or the previous version's, start a run as soon as the daemon
        has it and view its page at once, as a user would: the draw, its floor, and for a new
        graph the seconds from the daemon's loading it to its layout kept (else None)."""
        graph = version if new_graph else version - 1
        (self.repo / "workflows" / "big.yaml").write_text(
            layered_dag(N_BIG, gates=self.gates, version=version, graph=graph))
        await asyncio.to_thread(publish, self.repo, self.store)
        while await daemon.version("big") != version:
            await asyncio.sleep(0.01)
        run_id = await daemon.start("big")
        assert self.alone is not None
        drawn, floor = await asyncio.to_thread(first_view, self.alone,
                                               f"{daemon.url}/runs/{run_id}")
        (self.gates / run_id).touch()
        await daemon.finish(run_id)
        return drawn, floor, (await daemon.loaded_to_kept("big", version, N_BIG)
                              if new_graph else None)

    async def browser_view(self, version: int) -> dict[str, Any]:
        """The same first view on the daemon that leaves layouts to browsers (as before the
        daemon laid them out): the page lays the graph out itself."""
        daemon = self.daemons["watched"]
        while await daemon.version("big") != version:
            await asyncio.sleep(0.01)
        run_id = await daemon.start("big")
        assert self.alone is not None
        drawn, _ = await asyncio.to_thread(first_view, self.alone, f"{daemon.url}/runs/{run_id}")
        (self.gates / run_id).touch()
        await daemon.finish(run_id)
        return drawn

    async def open_windows(self) -> None:
        pages, count = self.options.pages, len(self.browsers)
        aside = (f"at nice {self.options.nice} on the last CPU" if self.options.aside == "cpu"
                 else "SCHED_IDLE on every CPU")
        self.say(f"opening {pages} windows, at most {PAGES_PER_BROWSER} a browser, {aside}")
        for browser in self.browsers:
            browser.set_aside(self.options.nice, self.options.aside)
        sizes = [len(range(i, pages, count)) for i in range(count)]
        await asyncio.to_thread(in_each, list(zip(self.browsers, sizes, strict=True)),
                                lambda pair: pair[0].open_windows(pair[1]))

    async def chain_run(self, setup: str) -> None:
        daemon = self.daemons["none" if setup == "none" else "watched"]
        run_id = await daemon.start("chain")
        url = f"{daemon.url}/runs/{run_id}"
        watchers: list[asyncio.Future[None]] = []
        cpu: list[dict[int, float]] = []
        if setup in ("clients", "crowd"):  # the crowd's page is one of its watchers
            connected = [asyncio.Event() for _ in range(self.options.pages - (setup == "crowd"))]
            # the floor is the clients' own setup: the crowd's clients' latencies left out
            read = self.results.clients if setup == "clients" else []
            watchers = [asyncio.ensure_future(watch(self.session, f"{url}/events", event, read))
                        for event in connected]
            for event in connected:
                await event.wait()
        if setup in PAGE_SETUPS:
            browsers = self.watching(setup)
            if setup in LEAST_PAGES:  # the graph from a run page in one of the windows
                graph, sequence = await asyncio.to_thread(run_graph, browsers[0], url)
                events = f"/runs/{run_id}/events?batch=1&after={sequence}"
                await asyncio.to_thread(in_each, browsers, lambda browser: open_least_pages(
                    browser, daemon.url, graph, events, setup == "least"))
            else:
                await asyncio.to_thread(in_each, browsers,
                                        lambda browser: open_pages(browser, url))
            if setup in ASIDE:  # Chromium set their shown pages' threads itself
                for browser in browsers:
                    browser.set_aside(self.options.nice, self.options.aside)
            cpu = [browser.cpu() for browser in browsers]
        ended = asyncio.Event()
        keeper = asyncio.ensure_future(self.keep_aside(browsers if setup in ASIDE else [],
                                                       ended))
        (self.gates / run_id).touch()
        run = await daemon.finish(run_id)
        ended.set()
        await keeper  # any setting aside under way is done before the threads are counted
        spent = sum(cpu_spent(browsers, cpu).values()) if setup in PAGE_SETUPS else 0.0
        if setup in ASIDE:
            self.results.run_cpu[setup].append(spent)
            self.results.escaped = max(self.results.escaped, sum(
                browser.escaped(self.options.nice, self.options.aside) for browser in browsers))
        await asyncio.gather(*watchers)
        self.results.gaps[setup] += handoffs(run)
        self.results.chain[setup].append(chain_seconds(run))
        if setup in PAGE_SETUPS:
            updates = await self.collect(setup, f"{url}/events", cpu)
            if setup in ALONE:
                self.results.alone_cost[setup].append((spent, updates, chain_seconds(run)))

    async def keep_aside(self, browsers: list[Chromium], ended: asyncio.Event) -> None:
        """Set the browsers aside again every second until the run has `ended`: Chromium
        sets the threads it starts (or raises) itself. A chain of `true` nodes ends within
        the second; in runs of ~50 s (`--node-seconds 0.5`) 10 threads were found not set
        aside at a run's end without it."""
        while browsers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), 1.0)
                return
            await asyncio.to_thread(in_each, browsers, lambda browser: browser.set_aside(
                self.options.nice, self.options.aside))

    def watching(self, setup: str) -> list[Chromium]:
        if setup in OWN_BROWSER:
            assert self.alone is not None
            return [self.alone]
        return self.browsers

    async def collect(self, setup: str, events: str, cpu: list[dict[int, float]]) -> int:
        """Each page's changes against the engine's commit of them, and the browsers' CPU;
        the DOM updates of the chain's nodes that the pages made."""
        committed = await commits(self.session, events)
        browsers = self.watching(setup)
        shown = await asyncio.to_thread(in_each, browsers, page_changes)
        if setup == "browsers":
            kinds = cpu_spent(browsers, cpu)
            self.results.browser_cpu.append(sum(kinds.values()))
            self.results.browser_kinds.append(kinds)
        updates = 0
        for changes in (page for browser in shown for page in browser):
            for entry in changes:
                updates += any(node != "gate" for node, _ in entry["nodes"])
                for node, status in entry["nodes"]:
                    if node == "gate":
                        continue  # it may have run before its page opened
                    at = committed[(node, status)]
                    self.results.dom[setup].append(entry["at"] / 1e3 - at)
                    if entry["frame"] is None:
                        self.results.no_frame += 1
                    else:
                        self.results.frame[setup].append(entry["frame"] / 1e3 - at)
        return updates

    async def quit(self) -> None:
        everyone = self.browsers + ([self.alone] if self.alone else [])
        if everyone:
            await asyncio.to_thread(in_each, everyone, Chromium.quit)


async def bench(work: Path, options: Options, say: Callable[[str], None]) -> Results:
    repo, gates = work / "repo", work / "gates"
    (repo / "workflows").mkdir(parents=True)
    gates.mkdir()
    (repo / "flowplan.yaml").write_text(
        "queues: {default: {concurrency: 4}, wide: {concurrency: 16}}\n")
    (repo / "workflows" / "chain.yaml").write_text(gated_chain(gates, options.node_seconds))
    (repo / "workflows" / "big.yaml").write_text(layered_dag(N_BIG, gates=gates, version=1))
    publish(repo, work / "store")
    daemons = {"none": Daemon(work, "none", work / "store"),
               # browsers lay out its large graphs (the first view's comparison), and it
               # does not lay out each new version of `big` beside the first daemon
               "watched": Daemon(work, "watched", work / "store",
                                 "--console-layouts", "browser")}
    try:
        for daemon in daemons.values():
            await daemon.ready()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            run = Bench(work, options, session, daemons, say)
            try:
                await run.run()
            finally:
                await run.quit()
    finally:
        for daemon in daemons.values():
            await daemon.stop()
    return run.results


def figures(results: Results, pages: int) -> list[Figure]:
    rows: list[Figure] = []
    none = results.gaps["none"]
    labels = {"clients": f"{pages} HTTP clients", "browsers": f"{pages} Chromium pages",
              "least": f"{pages} least pages", "bare": f"{pages} bare pages",
              "alone": "1 Chromium page", "alone bare": "1 bare page",
              "crowd": f"1 Chromium page of {pages} watchers"}
    for setup, label in labels.items():
        if not results.gaps[setup]:
            continue
        for pct in (50, 99):
            value, floor = (percentile(v, pct) * 1e3 for v in (results.gaps[setup], none))
            judged = pct == 50 and setup in ("clients", "browsers")
            rows.append(Figure(f"handoff p{pct}, {label} (floor: none)", value, "ms", floor,
                               f"<= {HANDOFF_RATIO:g}x" if judged else "",
                               value <= HANDOFF_RATIO * floor if judged else None))
    clients: dict[int, float | None] = {50: None, 99: None}
    for pct in (50, 99) if results.clients else ():
        value = percentile(results.clients, pct) * 1e3
        clients[pct] = value
        rows.append(Figure(f"change read by an HTTP client p{pct}", value, "ms"))
    # each page's floor in the same browsers, when measured: the run pages' the least
    # pages', theirs the bare pages'
    floors = {"browsers": "least", "least": "bare"}
    for setup in ("bare", "least", "browsers", "alone", "alone bare", "crowd"):
        for kind, what in (("dom", "DOM"), ("frame", "frame end")):
            values = getattr(results, kind)[setup]
            floor = getattr(results, kind)[floors[setup]] if setup in floors else []
            for pct in (50, 99) if values else ():
                value = percentile(values, pct) * 1e3
                judged = pct == 99 and kind == "dom" and setup == "browsers"
                below, name = clients[pct], "HTTP client"
                if floor:
                    below, name = percentile(floor, pct) * 1e3, labels[floors[setup]]
                rows.append(Figure(
                    f"change, {labels[setup]}: {what} p{pct} (floor: {name})", value,
                    "ms", below, f"<= {LATENCY_P99_MS:g} ms" if judged else "",
                    value <= LATENCY_P99_MS if judged else None))
    if results.loads:
        for kind, label, floor_kind in (
                ("first", "first view of a version with a new graph (run at once)", "floor"),
                ("browser", "the same, the browser lays it out", "floor"),
                ("same", "first view of a version with the same graph", "floor, same graph"),
                ("daemon", "a later view", "floor, daemon's layout")):
            loaded: list[float] = [load["load"] for load in results.loads[floor_kind]]
            painted: list[float] = [load["painted"] for load in results.loads[kind]]
            p50 = statistics.median(painted)
            judged = kind != "browser"  # the comparison: what it was before
            rows.append(Figure(f"{N_BIG}-node graph drawn, {label}, p50", p50, "ms",
                               statistics.median(loaded),
                               f"<= {DRAW_MS:g} ms" if judged else "",
                               p50 <= DRAW_MS if judged else None))
            rows.append(Figure(f"{N_BIG}-node graph drawn, {label}, max", max(painted),
                               "ms", max(loaded)))
    if results.kept:
        for index, what in ((0, "a version loaded to its layout kept"),
                            (1, "of which laying it out (V8)")):
            values = [kept[index] * 1e3 for kept in results.kept]
            rows.append(Figure(f"{N_BIG}-node graph, {what}, p50",
                               statistics.median(values), "ms"))
            rows.append(Figure(f"{N_BIG}-node graph, {what}, max", max(values), "ms"))
    return rows


def breakdown(loads: list[dict[str, Any]]) -> str:
    """Where a view's time goes, medians in ms."""
    def median(key: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(key(load) for load in loads)
    return (f"HTML received {median(lambda x: x['html']):.0f}, scripts start"
            f" {median(lambda x: x['start']):.0f}, layout"
            f" {median(lambda x: x['laid_out'] - x['start']):.0f}, SVG built"
            f" {median(lambda x: x['drawn'] - x['laid_out']):.0f}, style/layout/paint to the"
            f" frame's end {median(lambda x: x['painted'] - x['drawn']):.0f}")


def demand(results: Results, pages: int) -> list[str]:
    """The physical limit of the latency's target on this machine, for `pages` run pages and
    `pages` bare pages: the CPU they would need to show every write as one page alone does,
    against the CPU the set-aside ones got. Past it the pages fall behind, and a page behind
    shows all that came since its last update in its next one: a change then waits about a
    round of the pages' updates, `pages` times one's CPU at the CPU they got."""
    lines = []
    for setup, what, crowd in (("alone", "1 Chromium page", "browsers"),
                               ("alone bare", "1 bare page", "bare")):
        costs = results.alone_cost[setup]
        if not costs or not results.run_cpu[crowd]:
            continue
        cpu, updates, seconds = (statistics.median(cost[i] for cost in costs)
                                 for i in range(3))
        each, rate = cpu / max(updates, 1), updates / seconds
        got = statistics.median(spent / run for spent, run in zip(
            results.run_cpu[crowd], results.chain[crowd], strict=True))
        lines.append(
            f"{what} alone (median of the runs): {each * 1e3:.2f} ms of its browser's CPU a"
            f" DOM update ({cpu:.2f} s for {updates:.0f} updates, {rate:.0f} a second of the"
            f" chain's run, {cpu / seconds:.2f} CPU); {pages} such pages would need"
            f" {pages * each * rate:.2f} CPUs to keep up, and {pages} set aside got"
            f" {got:.2f} (their CPU to the run's end seen / the chain's run); a round of"
            f" their updates: {pages * each * 1e3:.0f} ms of CPU, {pages * each / got * 1e3:.0f}"
            " ms at that")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per setup (default 5)")
    parser.add_argument("--pages", type=int, default=20,
                        help="HTTP clients, and Chromium pages, watching (default 20)")
    parser.add_argument("--loads", type=int, default=5,
                        help="loads of the 1,000-node page, of each kind (default 5; 0: the"
                             " 1,000-node page is not measured)")
    parser.add_argument("--nice", type=int, default=10,
                        help="the watching browsers' niceness with --aside cpu (default 10:"
                             " the daemons come first, as if the browsers ran on other"
                             " machines)")
    parser.add_argument("--aside", choices=("cpu", "idle"), default="cpu",
                        help="how the watching browsers are set aside: cpu (default: at"
                             " --nice on the last CPU) or idle (SCHED_IDLE on every CPU)")
    parser.add_argument("--node-seconds", type=float, default=0.0, metavar="S",
                        help="each node of the chain sleeps S seconds instead of running"
                             " `true`: its changes come S apart, not in a burst (default 0)")
    parser.add_argument("--no-browser", action="store_true", help="skip Chromium's part")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 on a MISS, or when Chromium's part cannot run")
    args = parser.parse_args(argv)
    if args.node_seconds < 0:
        parser.error(f"--node-seconds: {args.node_seconds:g} is negative; give 0 (the nodes"
                     " run `true`) or the seconds each node sleeps")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    missing = None if args.no_browser else chromium_missing()
    if missing:
        print(f"Chromium's part SKIPPED: {missing}", flush=True)
    started = time.monotonic()

    def say(what: str) -> None:
        print(f"  {time.monotonic() - started:5.1f} s  {what}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="flowplan-bench-web-") as folder:
        options = Options(repeat=args.repeat, pages=args.pages, loads=args.loads,
                          browser=not (args.no_browser or missing), nice=args.nice,
                          aside=args.aside, node_seconds=args.node_seconds)
        results = asyncio.run(bench(Path(folder), options, say))
    rows = figures(results, args.pages)
    node = f"`sleep {args.node_seconds:g}`" if args.node_seconds else "`true`"
    print(f"chain of {N_CHAIN} {node} nodes after a gate, {args.repeat} runs per setup,"
          f" {args.pages} watchers; {len(results.clients)} changes read by HTTP clients,"
          f" {sum(map(len, results.dom.values()))} shown in pages' DOM ({results.no_frame}"
          f" with no frame after them); {time.monotonic() - started:.0f} s")
    print(table(rows))
    print("the chain's run, its first start to its last end (median s): " + ", ".join(
        f"{setup} {statistics.median(seconds):.2f}"
        for setup, seconds in results.chain.items() if seconds))
    if results.run_cpu["browsers"]:
        print("the set-aside browsers' CPU from the gate's opening to the run's end seen"
              " (median s): " + ", ".join(
                  f"{setup} {statistics.median(seconds):.2f}"
                  for setup, seconds in results.run_cpu.items() if seconds)
              + f"; threads found not set aside after a run: {results.escaped}")
    if results.browser_cpu:
        cpu = statistics.median(results.browser_cpu)
        print(f"Chromium's CPU to the pages' figures collected (median of the runs): {cpu:.2f} s,"
              f" {cpu / args.pages / (2 * N_CHAIN) * 1e3:.2f} ms a page a change; by process"
              " (median s): " + ", ".join(
                  f"{kind} {statistics.median(k.get(kind, 0.0) for k in results.browser_kinds):.2f}"
                  for kind in sorted({kind for k in results.browser_kinds for kind in k})))
    for line in demand(results, args.pages):
        print(line)
    if results.loads:
        first = results.loads["first"]
        print(f"{N_BIG}-node page, first view of a new graph: {breakdown(first)}; the"
              f" daemon's layout in {sum(x['layout'] == 'daemon' for x in first)} of"
              f" {len(first)} (else the browser laid it out)")
        print(f"{N_BIG}-node page, first view, the browser lays it out:"
              f" {breakdown(results.loads['browser'])}")
        print(f"{N_BIG}-node page, first view of a version with the same graph:"
              f" {breakdown(results.loads['same'])}")
        print(f"{N_BIG}-node page, daemon's layout: {breakdown(results.loads['daemon'])};"
              f" the layout {results.loads['daemon'][0]['kept'] / 1e3:.0f} kB of JSON")
        for kind in ("floor", "floor, same graph", "floor, daemon's layout"):
            floor = results.loads[kind]
            print(f"{N_BIG}-node page, {kind}: HTML received"
                  f" {statistics.median(x['html'] for x in floor):.0f}, load event end"
                  f" {statistics.median(x['load'] for x in floor):.0f}")
        for kind, loaded in results.loads.items():
            key = "load" if kind.startswith("floor") else "painted"
            print(f"  {kind:<6} loads (ms): " + " ".join(f"{x[key]:.0f}" for x in loaded))
    if args.json:
        args.json.write_text(json.dumps({
            "figures": [vars(row) for row in rows], "loads": results.loads,
            "changes": {"clients": len(results.clients), "no frame": results.no_frame,
                        **{f"dom, {k}": len(v) for k, v in results.dom.items()}},
            "browser cpu s": results.browser_cpu, "browser cpu to the run's end s":
            results.run_cpu, "chain s": results.chain, "threads not set aside": results.escaped,
            "alone: browser cpu s, updates, chain s": results.alone_cost,
            "aside": args.aside if args.aside == "idle" else f"cpu, nice {args.nice}",
            "node seconds": args.node_seconds,
            "chromium": missing or "ran"}, indent=2) + "\n")
    if missing:
        print(f"Chromium's part SKIPPED: {missing}: no draw time, no browser pages measured")
    missed = any(row.passed is False for row in rows)
    return 1 if args.strict and (missed or missing) else 0


if __name__ == "__main__":
    sys.exit(main())
