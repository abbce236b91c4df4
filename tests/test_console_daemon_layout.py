"""The daemon lays out large graphs itself (console/layouter.py): d3-dag and static/layout.js in
the embedded V8 give a layout that fits its graph, within a time and memory cap; a page waits
a bounded time for it; without V8 the browser lays out as before. Then real daemons: the
layout computed when a version is loaded is the one a run page and the workflow page look up
(no second computation, nor one for a later version of the same graph), and in real headless
Chromium (skipped without chromium and chromedriver) the first view after publishing draws
the daemon's layout, the very one the browser's layout.js computes."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MakeRepo, wait_until
from daemon_harness import free_port, pb, publish, running_daemon
from test_web_console import Browser, _chromium, _driver, browser_errors
from test_web_graph_layout import LAYERS, layered

from flowplan.daemon.server.console.layouter import (
    ComputeError,
    Layouter,
    V8Layout,
    computer_for,
    load_v8,
)
from flowplan.daemon.server.console.layouts import Graph, Layouts, PageLayout, parse_layout

SETTINGS = "queues:\n  default: {concurrency: 16}\n  wide: {concurrency: 16}\n"


def graph_of(workflow: str) -> Graph:
    """A workflow file's graph, nodes and edges in file order (as its pages list them)."""
    nodes = yaml.safe_load(workflow)["nodes"]
    return Graph(tuple(n["name"] for n in nodes),
                 tuple((up, n["name"]) for n in nodes for up in n.get("upstream", [])))


WIDE = graph_of(layered())  # 258 nodes, in layers


def big(count: int = 1000) -> Graph:
    """Layers of 40 nodes, each after 2 nodes of the layer before."""
    names = tuple(f"n{i}" for i in range(count))
    return Graph(names, tuple(
        (names[i - 40 - (i * 7) % 40 if k else i - 40], names[i]) for i in range(40, count)
        for k in (0, 1) if not k or (i * 7) % 40))


@pytest.fixture(scope="module")
def v8() -> V8Layout:
    return V8Layout()


def test_v8_lays_a_large_graph_out_in_its_layers_and_the_layout_fits(v8: V8Layout) -> None:
    layout = json.loads(parse_layout(v8.compute(WIDE), WIDE))  # LayoutError if it did not fit
    assert set(layout["nodes"]) == set(WIDE.nodes) and len(layout["edges"]) == len(WIDE.edges)
    tops = [{layout["nodes"][f"l{layer}_{i}"][1] for i in range(size)}
            for layer, size in enumerate(LAYERS)]  # longest-path layers: a layer a row
    assert all(len(row) == 1 for row in tops), tops
    rows = [row.pop() for row in tops]
    assert rows == sorted(rows) and len(set(rows)) == len(LAYERS)
    assert v8.compute(WIDE) == v8.compute(WIDE)  # the same every time


@pytest.mark.parametrize("chains", [3, 80])  # 3x3 nodes: network simplex; 240: longest path
def test_each_connected_part_of_a_graph_starts_in_the_first_row(v8: V8Layout,
                                                               chains: int) -> None:
    """A part with fewer layers than another is drawn from the top, not hung at the bottom
    (d3-dag's longest path with topDown(true) would line the parts' last layers up)."""
    names = [f"c{c}_{i}" for c in range(chains) for i in range(3)]
    # chain 0 is 3 deep; every other chain is 2 deep, with a node on its own beside it
    edges = [(f"c{c}_0", f"c{c}_1") for c in range(chains)] + [("c0_1", "c0_2")]
    graph = Graph(tuple(names), tuple(edges))
    layout = json.loads(parse_layout(v8.compute(graph), graph))
    top = {name: box[1] for name, box in layout["nodes"].items()}
    first = top["c0_0"]
    assert all(top[f"c{c}_0"] == top[f"c{c}_2"] == first for c in range(1, chains)), top
    assert all(top[f"c{c}_1"] == top["c0_1"] > first for c in range(chains)), top
    assert top["c0_2"] > top["c0_1"]


def test_a_layout_too_slow_or_too_large_for_v8_fails_and_v8_goes_on() -> None:
    large, tiny = big(), Graph(("a", "b"), (("a", "b"),))
    slow = V8Layout(seconds=0.2)  # the large graph takes ~5 s (dagre's took >10 s)
    with pytest.raises(ComputeError, match=r"not done within 0\.2 s"):
        slow.compute(large)
    assert set(json.loads(slow.compute(tiny))["nodes"]) == {"a", "b"}  # the same context
    small = V8Layout(max_memory=4 * 1024 * 1024)
    with pytest.raises(ComputeError, match="more than 4 MB of V8 heap"):
        small.compute(large)
    assert set(json.loads(small.compute(tiny))["nodes"]) == {"a", "b"}
    slow.close()
    small.close()


def test_a_close_from_another_thread_waits_for_the_layout_under_way() -> None:
    """Its V8 context's event loop stopped under a layout would leave the layout waiting
    for good: a close waits for the call under way, and a later call makes a new context."""
    v8 = V8Layout()
    tiny = Graph(("a", "b"), (("a", "b"),))
    v8.compute(tiny)  # the context made: the next call goes straight to V8
    results: list[Any] = []
    computing = threading.Thread(target=lambda: results.append(v8.compute(WIDE)), daemon=True)
    computing.start()
    time.sleep(0.1)  # inside V8 by now (WIDE takes ~0.3 s); were it not, the close came first
    v8.close()
    computing.join(timeout=30)
    assert not computing.is_alive(), "the layout under the close never ended"
    assert results and json.loads(results[0])["nodes"].keys() == set(WIDE.nodes)
    assert set(json.loads(v8.compute(tiny))["nodes"]) == {"a", "b"}  # a new context
    v8.close()


def test_a_page_fetches_the_layout_under_way_for_a_bounded_time_then_it_is_kept(
        v8: V8Layout, tmp_path: Path) -> None:
    async def scenario() -> None:
        layouts = Layouts(tmp_path / "layouts")
        layouter = Layouter(layouts, v8, wait_seconds=0.001)
        page = layouter.page(WIDE, "workflow=wide&version=1")  # served at once
        assert page.url == f"/layouts/{WIDE.key}?workflow=wide&version=1"
        assert page.wait and not page.stored
        under_way = layouter.lay_out(WIDE)
        assert layouter.lay_out(WIDE) is under_way  # one computation, however many ask
        assert await layouter.wait(WIDE) is None  # not within the bound: the browser's turn
        assert await under_way  # kept when done
        assert (tmp_path / "layouts" / f"{WIDE.key}.daemon.json").is_file()
        kept = layouter.page(WIDE, "workflow=wide&version=1")
        assert kept.stored and not kept.url and not kept.wait
        assert kept.stored == parse_layout(kept.stored, WIDE) == await layouter.wait(WIDE)

        waiting = Layouter(Layouts(None), v8)  # long enough: the layout itself
        assert await waiting.wait(WIDE) == kept.stored
        small = Graph(("a", "b"), (("a", "b"),))
        assert waiting.page(small, "run=r1") == layouter.page(small, "run=r1") == PageLayout()
        layouter.close()
        waiting.close()

    asyncio.run(scenario())


def test_a_layout_a_browser_sent_is_not_drawn_where_the_daemon_lays_the_graph_out(
        v8: V8Layout, tmp_path: Path) -> None:
    """One kept before the daemon laid out (an older daemon, `--console-layouts browser`):
    the daemon lays the graph out and its layout replaces the browser's."""
    folder = tmp_path / "layouts"
    made = json.loads(v8.compute(WIDE))
    scrambled = {**made, "nodes": {name: [0, 0, *box[2:]] for name, box in made["nodes"].items()}}
    assert Layouts(folder).put(WIDE, json.dumps(scrambled))

    async def scenario() -> None:
        layouter = Layouter(Layouts(folder), v8)
        page = layouter.page(WIDE, "workflow=wide&version=1")
        assert page.wait and not page.stored  # not the browser's
        assert json.loads(await layouter.wait(WIDE) or "") == made
        assert layouter.page(WIDE, "workflow=wide&version=1").stored
        layouter.close()

    asyncio.run(scenario())
    assert [p.name for p in folder.iterdir()] == [f"{WIDE.key}.daemon.json"]
    browser = Layouter(Layouts(folder), None)  # browsers lay out: the daemon's is used
    assert json.loads(browser.page(WIDE, "run=r1").stored) == made
    browser.close()


def test_a_graph_v8_failed_on_is_left_to_the_browser_and_not_tried_again(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        layouter = Layouter(Layouts(None), V8Layout(seconds=0.001))
        assert layouter.page(WIDE, "run=r1").wait
        assert not layouter.takes_posts(WIDE)  # the daemon lays it out: no browser's kept
        assert await layouter.wait(WIDE) is None  # it failed
        page = layouter.page(WIDE, "run=r1")
        assert page.url and not page.wait and not page.stored
        assert layouter.takes_posts(WIDE)  # now the first browser's is kept
        assert await layouter.wait(WIDE) is None
        layouter.close()

    with caplog.at_level(logging.WARNING, "flowplan.daemon.console"):
        asyncio.run(scenario())
    failed = [r for r in caplog.records if "could not lay out" in r.getMessage()]
    assert len(failed) == 1 and "its first browser lays it out" in failed[0].getMessage()


def test_without_v8_the_daemon_says_so_once_and_browsers_lay_out(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "py_mini_racer", None)  # as if no wheel fit here
    with caplog.at_level(logging.WARNING, "flowplan.daemon.console"):
        assert computer_for("daemon") is None
    assert "the embedded V8 (mini-racer) cannot be used here" in caplog.text
    assert computer_for("browser", make=load_v8) is None

    async def scenario() -> None:
        layouter = Layouter(Layouts(None), None)
        assert not layouter.computes and layouter.takes_posts(WIDE)
        page = layouter.page(WIDE, "run=r1")
        assert page.url and not page.wait
        assert await layouter.wait(WIDE) is None
        layouter.close()

    asyncio.run(scenario())


# ---- real daemons ---------------------------------------------------------------------------

def computed(log: str) -> int:
    return log.count("console layout computed")


def test_a_graph_is_laid_out_once_as_its_first_version_loads_and_its_pages_carry_it(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo({"flowplan.yaml": SETTINGS, "workflows/wide.yaml": layered()}), store)
    port = free_port()
    kept = state / "console-layouts"
    with running_daemon(store, state, extra=["--http", f"127.0.0.1:{port}"]) as daemon:
        wait_until(lambda: computed(daemon.output()) == 1, "version 1 laid out at start")
        assert len(list(kept.glob("*.json"))) == 1
        runs = [daemon.call("StartRun", pb.StartRunRequest(workflow="wide")).run.run_id]
        publish(make_repo({"flowplan.yaml": SETTINGS,
                           "workflows/wide.yaml": layered(edge_change=True)}), store)
        wait_until(lambda: computed(daemon.output()) == 2, "version 2 laid out once loaded")
        assert len(list(kept.glob("*.json"))) == 2
        runs.append(daemon.call("StartRun", pb.StartRunRequest(workflow="wide")).run.run_id)
        browser = Browser(port)
        for path in ("/workflows/wide", "/workflows/wide?version=1",
                     *(f"/runs/{run_id}" for run_id in runs)):
            status, _, page = browser.request("GET", path)
            assert status == 200 and "data-daemon-layout=" in page, path
            assert "data-layout-url=" not in page, path
        assert computed(daemon.output()) == 2  # no page asked for another computation
        files = {path.name.removesuffix(".daemon.json"): path.read_text()
                 for path in kept.glob("*.daemon.json")}
        assert len(files) == 2

        # Version 3 runs another command in version 1's graph: it has that graph's layout
        # already, in its pages as soon as the daemon has the version.
        publish(make_repo({"flowplan.yaml": SETTINGS,
                           "workflows/wide.yaml": layered(command="echo 3")}), store)
        wait_until(lambda: daemon.call("GetWorkflow", pb.GetWorkflowRequest(
            workflow="wide")).workflow.plan_version == 3, "version 3 loaded")
        runs.append(daemon.call("StartRun", pb.StartRunRequest(workflow="wide")).run.run_id)
        first = re.search(r'data-daemon-layout="([^"]*)"',
                          browser.request("GET", "/workflows/wide?version=1")[2])
        assert first
        for path in ("/workflows/wide?version=3", f"/runs/{runs[-1]}"):
            status, _, page = browser.request("GET", path)
            found = re.search(r'data-daemon-layout="([^"]*)"', page)
            assert status == 200 and found and found.group(1) == first.group(1), path
        assert {path.name.removesuffix(".daemon.json")
                for path in kept.glob("*.json")} == set(files)
        for version in (1, 2):
            _, _, text = browser.request("GET", f"/workflows/wide?version={version}")
            found = re.search(r'data-daemon-layout="([^"]*)"', text)
            assert found
            key = next(k for k, layout in files.items()
                       if layout == html.unescape(found.group(1)))
            status, headers, text = browser.request(
                "GET", f"/layouts/{key}?workflow=wide&version={version}")
            assert (status, headers["content-type"]) == (200, "application/json; charset=utf-8")
            assert text == files[key]
        status, _, text = browser.request("GET", f"/layouts/{'0' * 32}?run={runs[0]}")
        assert status == 409 and "reload the page" in text

        # A layout sent for a graph the daemon lays out is not kept, though it fits.
        moved = json.loads(files[key])
        moved["nodes"] = {name: [0, 0, *box[2:]] for name, box in moved["nodes"].items()}
        csrf = browser.csrf("/workflows/wide")
        status, _, text = browser.request(
            "POST", f"/layouts/{key}?workflow=wide&version=2",
            {"csrf": csrf, "layout": json.dumps(moved)})
        assert status == 202 and "keeps its own layout" in text, text
        assert (kept / f"{key}.daemon.json").read_text() == files[key]
        assert daemon.stop() == 0
    assert computed(daemon.output()) == 2  # version 3's graph was not laid out again


def test_a_version_synced_from_git_is_laid_out_as_it_loads(make_repo: MakeRepo,
                                                          tmp_path: Path) -> None:
    """`serve --git`: a commit of a large graph's new version, published by the daemon's own
    sync, is laid out by the daemon as it loads it; its pages carry the layout."""
    repo = make_repo({"flowplan.yaml": SETTINGS, "workflows/wide.yaml": layered()})
    env = {"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}

    def commit(message: str) -> None:
        for args in (["add", "-A"], ["commit", "-qm", message]):
            subprocess.run(["git", *args], cwd=repo, env=env, check=True)

    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, env=env, check=True)
    commit("first")
    port = free_port()
    with running_daemon(tmp_path / "store", tmp_path / "state",
                        extra=["--git", str(repo), "--sync-interval", "1s",
                               "--http", f"127.0.0.1:{port}"]) as daemon:
        wait_until(lambda: computed(daemon.output()) == 1, "the first version laid out")
        (repo / "workflows" / "wide.yaml").write_text(layered(edge_change=True))
        commit("an edge moved")
        wait_until(lambda: computed(daemon.output()) == 2, "the synced version laid out")
        status, _, page = Browser(port).request("GET", "/workflows/wide")
        assert status == 200 and "version 2" in daemon.output()
        assert "data-daemon-layout=" in page and "data-layout-url=" not in page
        assert daemon.stop() == 0


def test_a_daemon_that_cannot_load_v8_logs_it_and_its_pages_ask_the_browser(
        make_repo: MakeRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shadow = tmp_path / "no-v8"
    shadow.mkdir()
    (shadow / "py_mini_racer.py").write_text(
        'raise ImportError("libmini_racer.so: wrong ELF class (as on an unsupported CPU)")\n')
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo({"flowplan.yaml": SETTINGS, "workflows/wide.yaml": layered()}), store)
    port = free_port()
    with running_daemon(store, state, extra=["--http", f"127.0.0.1:{port}"]) as daemon:
        browser = Browser(port)
        status, _, page = browser.request("GET", "/workflows/wide")
        assert status == 200 and "data-layout-url=" in page
        assert "data-daemon-layout=" not in page and "data-layout-wait=" not in page
        url = html.unescape(re.search(r'data-layout-url="([^"]+)"', page).group(1))
        assert browser.request("GET", url)[0] == 204  # none: the browser lays it out
        log = daemon.output()
        assert log.count("cannot be used here") == 1 and "wrong ELF class" in log
        assert daemon.stop() == 0


DRAWN = """
const box = document.getElementById("graph");
if (box.dataset.drawn !== "yes") { return null; }
return { layout: box.dataset.layout, wait: box.dataset.layoutWait || null,
         daemon: box.dataset.daemonLayout ? JSON.parse(box.dataset.daemonLayout) : null,
         own: flowplanLayout.compute(JSON.parse(box.dataset.graph)),
         drawn: Object.fromEntries([...box.querySelectorAll("g[data-node]")].map(
           (g) => [g.dataset.node, [g.getAttribute("transform"), g.dataset.status]])) };"""


def view(driver: Any, url: str) -> dict[str, Any]:
    driver.get(url)
    found: dict[str, Any] = wait_until(lambda: driver.execute_script(DRAWN),
                                       f"the graph of {url} drawn", timeout=30)
    return found


def drawn_as(found: dict[str, Any], layout: dict[str, Any]) -> None:
    """Every node drawn where `layout` puts it."""
    assert {name: where for name, (where, _) in found["drawn"].items()} == {
        name: f"translate({box[0]:g},{box[1]:g})" for name, box in layout["nodes"].items()}


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver"
                    " (.ci/run installs them)")
def test_the_first_view_after_publishing_draws_the_daemons_layout_the_browsers_own(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    store, state = tmp_path / "store", tmp_path / "state"
    small = "name: wide\nnodes:\n  - {name: a, command: 'true'}\n"
    publish(make_repo({"flowplan.yaml": SETTINGS, "workflows/wide.yaml": small}), store)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    extra = ["--http", f"127.0.0.1:{port}"]
    driver = _driver()
    try:
        with running_daemon(store, state, extra=extra) as daemon:
            driver.get(base + "/workflows/wide")  # warm: the scripts in the browser's cache
            publish(make_repo({"flowplan.yaml": SETTINGS, "workflows/wide.yaml": layered()}),
                    store)
            wait_until(lambda: daemon.call("GetWorkflow", pb.GetWorkflowRequest(
                workflow="wide")).workflow.plan_version == 2, "version 2 loaded")
            run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="wide")).run.run_id
            first = view(driver, f"{base}/runs/{run_id}")  # at once: likely under way
            assert first["layout"] == "daemon", first["layout"]
            assert len(first["drawn"]) == sum(LAYERS)
            drawn_as(first, first["own"])  # the browser's layout.js, to the 0.1 px
            if first["daemon"] is not None:  # in the page: done before the page was asked
                assert first["daemon"] == first["own"]
            assert computed(daemon.output()) == 1
            daemon.wait_run(run_id, timeout=60)
            assert daemon.stop() == 0

        # A version not laid out yet (its layout removed; the daemon lays out the latest at
        # start): its page comes at once, and graph.js fetches the layout the page started.
        for path in (state / "console-layouts").glob("*.json"):
            path.unlink()
        publish(make_repo({"flowplan.yaml": SETTINGS,
                           "workflows/wide.yaml": layered(edge_change=True)}), store)
        with running_daemon(store, state, extra=extra) as daemon:
            wait_until(lambda: computed(daemon.output()) == 1, "version 3 laid out at start")
            fetched = view(driver, f"{base}/runs/{run_id}")
            assert fetched["wait"] == "yes" and fetched["daemon"] is None
            assert fetched["layout"] == "daemon"  # fetched
            drawn_as(fetched, first["own"])
            assert {status for _, status in fetched["drawn"].values()} == {"SUCCEEDED"}
            assert computed(daemon.output()) == 2
            again = view(driver, f"{base}/runs/{run_id}")  # kept: in the page now
            assert again["daemon"] == first["own"] and again["wait"] is None
        errors = browser_errors(driver)
    finally:
        driver.quit()
    assert not errors, errors


# Injected before the page's scripts: what of the page was parsed when its graph was drawn.
AT_DRAW = r"""
new MutationObserver((records, observer) => {
  for (const record of records) {
    if (record.target.id === "graph" && record.target.dataset.drawn === "yes") {
      window.__atDraw = { rows: document.querySelectorAll("#run-nodes tr[data-node]").length,
                          parsing: document.readyState === "loading" };
      observer.disconnect();
    }
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-drawn"] });
"""

TICKED = """return document.querySelector('#graph g.gnode[data-node="' + arguments[0] + '"]')
  .classList.contains("ticked");"""

# the graph's view (its viewBox), its box's size, and the drawing's size
VIEW = """const box = document.getElementById("graph");
const layout = JSON.parse(box.dataset.daemonLayout);
return { view: box.querySelector("svg").getAttribute("viewBox").split(" ").map(Number),
         box: [box.clientWidth, box.clientHeight], size: [layout.width, layout.height] };"""


def whole(found: dict[str, Any]) -> bool:
    """The view shows the whole drawing."""
    (x, y, w, h), (width, height) = found["view"], found["size"]
    return x <= 0.5 and y <= 0.5 and x + w >= width - 0.5 and y + h >= height - 0.5


def view_when(driver: Any, ok: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """The graph's VIEW once `ok` holds for it (polled)."""
    def found() -> dict[str, Any] | None:
        view: dict[str, Any] = driver.execute_script(VIEW)
        return view if ok(view) else None
    result: dict[str, Any] = wait_until(found, what)
    return result


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver"
                    " (.ci/run installs them)")
def test_a_graph_with_its_layout_in_the_page_is_drawn_before_the_rest_is_parsed(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    """graph.js runs as the parser reaches it: a large run page's graph, its layout in the
    page, is drawn before the node table below it is parsed; the table's boxes, parsed after,
    still mark the graph's nodes when ticked for Resume; once the page is parsed (a scroll
    bar narrowed the box) the whole graph is in view; a node's panel, narrowing the box,
    keeps the drawing's scale (docs/console.md, Graphs)."""
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo({"flowplan.yaml": SETTINGS, "workflows/wide.yaml": layered()}), store)
    port = free_port()
    driver = _driver()
    try:
        with running_daemon(store, state, extra=["--http", f"127.0.0.1:{port}"]) as daemon:
            wait_until(lambda: computed(daemon.output()) == 1, "the graph laid out at start")
            run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="wide")).run.run_id
            daemon.wait_run(run_id, timeout=60)
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": AT_DRAW})
            found = view(driver, f"http://127.0.0.1:{port}/runs/{run_id}")
            assert found["layout"] == "daemon" and found["daemon"] is not None
            assert driver.execute_script("return window.__atDraw") == {"rows": 0,
                                                                      "parsing": True}
            assert len(driver.find_elements("css selector", "#run-nodes tr[data-node]")) == sum(
                LAYERS)
            assert not driver.execute_script(TICKED, "l2_0")
            driver.execute_script("arguments[0].click()", driver.find_element(
                "css selector", 'input[name="node"][value="l2_0"]'))
            assert driver.execute_script(TICKED, "l2_0")
            fitted = view_when(driver, whole, "the whole graph in view")
            driver.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', "
                                  "{bubbles: true}))", driver.find_element(
                                      "css selector", '#graph g.gnode[data-node="l1_0"] rect'))
            narrowed = view_when(driver, lambda found: found["box"][0] < fitted["box"][0],
                                 "the box narrowed by the panel")
            scale = fitted["view"][2] / fitted["box"][0]
            assert narrowed["view"][2] / narrowed["box"][0] == pytest.approx(scale)
            assert narrowed["view"][3] / narrowed["box"][1] == pytest.approx(
                fitted["view"][3] / fitted["box"][1])
            wait_until(lambda: driver.execute_script(
                "return !!document.querySelector('#panel [data-ended=\"yes\"]')"),
                "the panel's log read to its end")  # before the daemon stops
            assert daemon.stop() == 0
        errors = browser_errors(driver)
    finally:
        driver.quit()
    assert not errors, errors
