"""graph.js's layout of a large graph in a real headless Chromium (skipped without chromium and
chromedriver): ranked in layers, kept in the tab's sessionStorage and drawn from it the same
on a view again, laid out anew when the graph changes or the stored layout does not match.
The daemon lays out nothing itself here (`--console-layouts browser`) and the layouts' posts
to it are blocked, so that it keeps none (tests/test_console_layouts.py and
tests/test_console_daemon_layout.py test those)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import MakeRepo, wait_until
from daemon_harness import free_port, publish, running_daemon
from test_web_console import _chromium, _driver, browser_errors

LAYERS = [6, 40, 60, 1, 50, 60, 40, 1]  # 258 nodes: over graph.js's 200, so stored


def layered(edge_change: bool = False, command: str = "true") -> str:
    """A workflow of LAYERS: each node after 1-2 nodes of the layer before, each running
    `command` (another: a new plan version of the very same graph)."""
    lines = ["name: wide", "nodes:"]
    previous: list[str] = []
    for layer, size in enumerate(LAYERS):
        current = [f"l{layer}_{i}" for i in range(size)]
        for i, name in enumerate(current):
            upstream = sorted({previous[i % len(previous)],
                               previous[(3 * i + 1) % len(previous)]}) if previous else []
            if edge_change and layer == 2 and i == 0:
                upstream = [previous[-1]]
            ups = f", upstream: [{', '.join(upstream)}]" if upstream else ""
            lines.append(f"  - {{name: {name}, command: '{command}'{ups}}}")
        previous = current
    return "\n".join(lines) + "\n"


DRAWING = """return {
  layout: document.getElementById("graph").dataset.layout,
  nodes: Object.fromEntries([...document.querySelectorAll("#graph g[data-node]")].map(
    (g) => [g.dataset.node, g.getAttribute("transform")])),
  // one path of "M x,y L x,y ..." an edge: each edge's points as "x,y x,y ..."
  edges: document.querySelector("#graph path.edges").getAttribute("d").split("M")
    .filter(Boolean).map((edge) => edge.split("L").join(" ")).sort(),
  marks: ["flowplan-graph-start", "flowplan-graph-laid-out", "flowplan-graph-drawn"].map(
    (name) => performance.getEntriesByName(name).length),
};"""


def view(driver: Any, url: str) -> dict[str, Any]:
    driver.get(url)
    wait_until(lambda: driver.execute_script(
        'return document.querySelector(\'#graph[data-drawn="yes"]\') !== null'),
        f"the graph of {url} drawn")
    drawing: dict[str, Any] = driver.execute_script(DRAWING)
    return drawing


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver"
                    " (.ci/run installs them)")
def test_a_large_graph_is_laid_out_in_layers_then_drawn_again_from_the_stored_layout(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo({"flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
                       "workflows/wide.yaml": layered(),
                       "workflows/small.yaml": "name: small\nnodes:\n"
                       "  - {name: a, command: 'true'}\n"
                       "  - {name: b, command: 'true', upstream: [a]}\n"}), store)
    port = free_port()
    url = f"http://127.0.0.1:{port}/workflows/wide"
    with running_daemon(store, state, extra=["--http", f"127.0.0.1:{port}",
                                             "--console-layouts", "browser"]):
        driver = _driver()
        try:
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/layouts/*"]})
            first = view(driver, url)
            assert first["layout"] == "computed" and first["marks"] == [1, 1, 1]
            assert len(first["nodes"]) == sum(LAYERS)
            # tight ranks: every node of a layer on one row, the rows in the layers' order
            rows = [{first["nodes"][f"l{layer}_{i}"].split(",")[1] for i in range(size)}
                    for layer, size in enumerate(LAYERS)]
            assert all(len(row) == 1 for row in rows), rows
            tops = [float(row.pop().rstrip(")")) for row in rows]
            assert tops == sorted(tops) and len(set(tops)) == len(LAYERS)

            again = view(driver, url)  # a reload: the stored layout, drawn the same
            assert again["layout"] == "stored" and again["marks"] == [1, 1, 1]
            assert again["nodes"] == first["nodes"]
            assert len(again["edges"]) == len(first["edges"])
            for stored, computed in zip(again["edges"], first["edges"], strict=True):
                assert stored.split() == [
                    ",".join(f"{round(float(v) * 10) / 10:g}" for v in point.split(","))
                    for point in computed.split()]

            # a stored layout that does not match the graph is not used
            driver.execute_script("""
                const key = JSON.parse(sessionStorage.getItem("flowplan-layouts"))[0];
                const layout = JSON.parse(sessionStorage.getItem(key));
                delete layout.nodes["l7_0"];
                sessionStorage.setItem(key, JSON.stringify(layout));""")
            assert view(driver, url)["layout"] == "computed"
            assert view(driver, url)["layout"] == "stored"  # and stored anew

            small = f"http://127.0.0.1:{port}/workflows/small"  # small graphs: not stored
            assert [view(driver, small)["layout"] for _ in range(2)] == ["computed"] * 2
            assert len(driver.execute_script(
                'return JSON.parse(sessionStorage.getItem("flowplan-layouts"))')) == 1

            publish(make_repo({"flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
                               "workflows/wide.yaml": layered(edge_change=True)}), store)
            changed = wait_until(lambda: (d := view(driver, url))["layout"] == "computed"
                                 and d, "the new version's graph laid out anew")
            assert set(changed["nodes"]) == set(first["nodes"])
            assert view(driver, url)["layout"] == "stored"
            errors = browser_errors(driver, ignore="/layouts/")
        finally:
            driver.quit()
    assert not errors, errors
