"""Layouts the daemon keeps for large graphs (console/layouts.py): the checks a posted layout
must pass, first writer wins, the least recently used going, a damaged file ignored; then a
real daemon that leaves layouts to browsers (`--console-layouts browser`;
tests/test_console_daemon_layout.py tests its own) and real headless Chromium (skipped
without chromium and chromedriver): a first view lays the graph out and posts it, a second
browser draws the daemon's layout the same, also on a run page of that version and after a
restart; a viewer may post, no CSRF is 403."""

from __future__ import annotations

import itertools
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeRepo, wait_until
from daemon_harness import free_port, pb, publish, running_daemon
from test_web_console import TOKENS, Browser, _chromium, _driver, browser_errors
from test_web_graph_layout import DRAWING, LAYERS, layered

from flowplan.daemon.server.console.layouts import (
    MAX_BYTES,
    Graph,
    LayoutError,
    Layouts,
    parse_layout,
)


def chain(count: int) -> Graph:
    names = tuple(f"n{i}" for i in range(count))
    return Graph(names, tuple(itertools.pairwise(names)))


def layout_of(graph: Graph) -> dict[str, Any]:
    """A layout as graph.js sends it: a column of boxes, each edge from one to the next."""
    return {"width": 100, "height": 50.0 * len(graph.nodes),
            "nodes": {name: [10, 50.0 * i, 60, 30] for i, name in enumerate(graph.nodes)},
            "edges": {f"{up}\u0000{down}": [40, 50.0 * i + 30, 40, 50.0 * i + 50]
                      for i, (up, down) in enumerate(graph.edges)}}


def test_a_layout_is_kept_only_when_it_fits_its_graph_exactly() -> None:
    graph = chain(3)
    good = layout_of(graph)
    kept = json.loads(parse_layout(json.dumps(good), graph))
    assert kept["nodes"] == {k: [float(v) for v in box] for k, box in good["nodes"].items()}

    def refused(change: Any, says: str) -> None:
        layout = json.loads(json.dumps(good))
        change(layout)
        with pytest.raises(LayoutError, match=says):
            parse_layout(json.dumps(layout), graph)

    refused(lambda x: x["nodes"].pop("n2"), "missing 'n2'")
    refused(lambda x: x["nodes"].update(zz=[0, 0, 60, 30]), "not in the graph 'zz'")
    refused(lambda x: x["edges"].pop("n0\u0000n1"), "edges are not the graph's")
    refused(lambda x: x["edges"].update({"n2\u0000n0": [0, 0, 1, 1]}), "not in the graph")
    refused(lambda x: x["nodes"]["n1"].__setitem__(0, 1e300), r"nodes.n1\[0\] \(left\)")
    refused(lambda x: x["nodes"]["n1"].__setitem__(1, -50), r"nodes.n1\[1\] \(top\)")
    refused(lambda x: x["nodes"]["n1"].__setitem__(2, True), "must be a number")
    refused(lambda x: x["nodes"]["n1"].__setitem__(3, "30"), "must be a number")
    refused(lambda x: x["nodes"]["n1"].append(1), r"\[left, top, width, height\]")
    refused(lambda x: x["nodes"]["n0"].__setitem__(0, 90), "beyond the layout's width")
    refused(lambda x: x.__setitem__("width", 1e12), "width")
    refused(lambda x: x["edges"]["n0\u0000n1"].pop(), "two points or more")
    refused(lambda x: x["edges"]["n0\u0000n1"].__setitem__(1, 5000), r"n0->n1\[1\]")
    refused(lambda x: x.update(extra=1), "exactly width, height, nodes and edges")
    for constant in ("NaN", "Infinity", "-Infinity"):
        text = json.dumps(good).replace('"width": 100', f'"width": {constant}')
        with pytest.raises(LayoutError, match="only finite numbers"):
            parse_layout(text, graph)
    with pytest.raises(LayoutError, match="twice"):
        parse_layout('{"width": 1, "width": 2, "height": 1, "nodes": {}, "edges": {}}', graph)
    with pytest.raises(LayoutError, match=f"at most {MAX_BYTES}"):
        parse_layout(json.dumps(good) + " " * MAX_BYTES, graph)
    with pytest.raises(LayoutError, match="not JSON"):
        parse_layout("{", graph)


def test_the_key_names_the_graph_not_its_order_nor_its_plan_version() -> None:
    graph = chain(4)
    assert Graph(tuple(reversed(graph.nodes)), graph.edges[::-1]).key == graph.key
    assert chain(5).key != graph.key
    renamed = Graph(("n0", "n1", "n2", "m3"), (("n0", "n1"), ("n1", "n2"), ("n2", "m3")))
    assert renamed.key != graph.key
    moved = Graph(graph.nodes, (("n0", "n1"), ("n1", "n2"), ("n1", "n3")))
    assert moved.key != graph.key


def test_the_first_layout_stays_the_least_recently_used_go_and_files_outlive_a_restart(
        tmp_path: Path) -> None:
    folder = tmp_path / "console-layouts"
    layouts = Layouts(folder, limit=2)
    a, b, c = chain(3), chain(4), chain(5)
    assert layouts.get(a) is None
    assert layouts.put(a, json.dumps(layout_of(a)))
    other = layout_of(a)
    other["nodes"]["n0"][0] = 20
    assert not layouts.put(a, json.dumps(other))  # a second writer is ignored
    assert json.loads(layouts.get(a) or "")["nodes"]["n0"][0] == 10
    assert layouts.put(b, json.dumps(layout_of(b)))
    assert layouts.get(a) is not None  # a used last: b is the least recently used
    assert layouts.put(c, json.dumps(layout_of(c)))
    assert layouts.get(b) is None and len(layouts) == 2
    assert sorted(p.stem for p in folder.iterdir()) == sorted([a.key, c.key])
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert oct((folder / f"{a.key}.json").stat().st_mode & 0o777) == "0o600"

    again = Layouts(folder, limit=2)  # a restart: read from the files
    assert again.get(a) == layouts.get(a) and again.get(c) == layouts.get(c)
    assert not again.put(a, json.dumps(other))  # a used last (the files' times say so)
    assert Layouts(folder, limit=1).get(a) is not None  # the least recently used file went
    assert not (folder / f"{c.key}.json").exists()


def test_the_daemons_layout_replaces_a_posted_one_and_says_so_in_its_file(
        tmp_path: Path) -> None:
    folder = tmp_path / "console-layouts"
    graph = chain(3)
    layouts = Layouts(folder)
    posted = layout_of(graph)
    assert layouts.put(graph, json.dumps(posted))  # a browser's
    assert layouts.get(graph) and layouts.get(graph, posted=False) is None
    assert [p.name for p in folder.iterdir()] == [f"{graph.key}.json"]
    made = layout_of(graph)
    made["nodes"]["n0"][0] = 20
    assert layouts.put(graph, json.dumps(made), by_daemon=True)  # replaces the post
    assert json.loads(layouts.get(graph, posted=False) or "")["nodes"]["n0"][0] == 20
    assert [p.name for p in folder.iterdir()] == [f"{graph.key}.daemon.json"]
    assert not layouts.put(graph, json.dumps(posted))  # a post never replaces it
    assert not layouts.put(graph, json.dumps(posted), by_daemon=True)  # nor a second one

    again = Layouts(folder)  # a restart: the file says who made it
    assert again.get(graph, posted=False) == layouts.get(graph)
    (folder / f"{graph.key}.json").write_text(json.dumps(posted))  # a post left beside it
    assert Layouts(folder).get(graph, posted=False) == layouts.get(graph)
    assert [p.name for p in folder.iterdir()] == [f"{graph.key}.daemon.json"]


def test_a_damaged_file_is_ignored_with_one_log_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "console-layouts"
    graph = chain(3)
    folder.mkdir()
    (folder / f"{graph.key}.json").write_text('{"width": 100, "height": ')
    wrong = layout_of(graph)
    wrong["nodes"].pop("n1")  # a file of another graph under this key
    other = chain(4)
    (folder / f"{other.key}.json").write_text(json.dumps(wrong))
    (folder / "notes.json").write_text("not a key: not ours")
    layouts = Layouts(folder)
    with caplog.at_level(logging.WARNING, "flowplan.daemon.console"):
        assert layouts.get(graph) is None and layouts.get(graph) is None
        assert layouts.get(other) is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "not JSON" in lines[0] and "missing 'n1'" in lines[1], lines
    assert layouts.put(graph, json.dumps(layout_of(graph)))  # laid out again, kept
    assert Layouts(folder).get(graph) is not None
    assert (folder / "notes.json").exists()


def test_a_folder_that_cannot_be_used_keeps_layouts_in_memory(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "console-layouts"
    blocked.write_text("a file where the folder should be")
    graph = chain(3)
    with caplog.at_level(logging.WARNING, "flowplan.daemon.console"):
        layouts = Layouts(blocked)
    assert [r.getMessage() for r in caplog.records] == [
        f"console layouts: cannot use {blocked} ([Errno 17] File exists: '{blocked}'):"
        " layouts are kept in memory until the next restart"]
    assert layouts.put(graph, json.dumps(layout_of(graph))) and layouts.get(graph)
    assert blocked.read_text() == "a file where the folder should be"


# ---- a real daemon, real browsers ----------------------------------------------------------

def login(driver: Any, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()
    wait_until(lambda: driver.current_url == base + "/", "logged in")


def view(driver: Any, url: str, saved: bool = False) -> dict[str, Any]:
    driver.get(url)
    wait_until(lambda: driver.execute_script(
        'return document.querySelector(\'#graph[data-drawn="yes"]\') !== null'),
        f"the graph of {url} drawn", timeout=30)
    if saved:
        wait_until(lambda: driver.execute_script(
            'return document.getElementById("graph").dataset.layoutSaved'),
            "the layout sent to the daemon", timeout=30)
    drawing: dict[str, Any] = driver.execute_script(
        DRAWING.replace("return {", 'return { saved: document.getElementById("graph")'
                        ".dataset.layoutSaved,"))
    return drawing


def same_drawing(one: dict[str, Any], other: dict[str, Any]) -> None:
    assert one["nodes"] == other["nodes"]
    assert one["edges"] == other["edges"]


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver"
                    " (.ci/run installs them)")
def test_a_first_view_posts_its_layout_and_every_later_view_draws_the_daemons(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo({"flowplan.yaml": "queues:\n  default: {concurrency: 16}\n",
                       "workflows/wide.yaml": layered()}), store)
    roles = tmp_path / "roles"
    roles.write_text(f"operator ci {TOKENS['operator']}\nviewer grafana {TOKENS['viewer']}\n")
    port, http_port = free_port(), free_port()
    extra = ["--roles-file", str(roles), "--http", f"127.0.0.1:{http_port}",
             "--console-layouts", "browser"]  # the daemon lays out nothing itself
    base = f"http://127.0.0.1:{http_port}"
    kept = state / "console-layouts"
    first_browser = _driver()
    second_browser = None
    try:
        with running_daemon(store, state, port=port, extra=extra,
                            token=TOKENS["operator"]) as daemon:
            run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="wide")).run.run_id
            login(first_browser, base, TOKENS["viewer"])  # a viewer may post a layout
            first = view(first_browser, base + "/workflows/wide", saved=True)
            assert first["layout"] == "computed" and first["saved"] == "yes"
            assert len(first["nodes"]) == sum(LAYERS) and first["marks"] == [1, 1, 1]
            files = list(kept.glob("*.json"))
            assert len(files) == 1 and "console layout kept" in daemon.output()

            second_browser = _driver()  # its own profile: no tab storage, another session
            login(second_browser, base, TOKENS["operator"])
            second = view(second_browser, base + "/workflows/wide")
            assert second["layout"] == "daemon" and second["saved"] is None
            same_drawing(second, first)
            daemon.wait_run(run_id, timeout=60)  # a run of that version shares its layout
            on_run = view(second_browser, f"{base}/runs/{run_id}")
            assert on_run["layout"] == "daemon"
            same_drawing(on_run, first)

            viewer = Browser(http_port)
            assert viewer.login(TOKENS["viewer"]) == 303
            status, _, page = viewer.request("GET", "/workflows/wide")
            assert status == 200 and "data-daemon-layout=" in page
            assert "data-layout-url=" not in page
            key = files[0].stem
            url = f"/layouts/{key}?workflow=wide&version=1"
            layout = files[0].read_text()
            assert viewer.request("POST", url, {"layout": layout})[0] == 403  # no CSRF
            csrf = viewer.csrf("/workflows/wide")
            status, _, text = viewer.request("POST", url, {"csrf": csrf, "layout": layout})
            assert status == 200 and "kept already" in text  # the first one stays
            poisoned = json.loads(layout)
            poisoned["nodes"]["l0_0"][0] = float("1e9")
            status, _, text = viewer.request("POST", url, {"csrf": csrf,
                                                           "layout": json.dumps(poisoned)})
            assert status == 400 and "nodes.l0_0[0] (left)" in text, text
            status, _, text = viewer.request("POST", f"/layouts/{'0' * 32}?run={run_id}",
                                             {"csrf": csrf, "layout": layout})
            assert status == 409 and "reload the page" in text
            status, _, text = viewer.request("POST", url, {"csrf": csrf,
                                                           "layout": " " * 1_000_001})
            assert status == 413 and "at most 1000000" in text
            assert files[0].read_text() == layout
            assert daemon.stop() == 0

        with running_daemon(store, state, port=port, extra=extra, token=TOKENS["operator"]):
            after = view(second_browser, base + "/workflows/wide")  # its session kept
            assert after["layout"] == "daemon"
            same_drawing(after, first)
            fresh = view(first_browser, f"{base}/runs/{run_id}")
            assert fresh["layout"] == "daemon"
        errors = [error for driver in (first_browser, second_browser)
                  for error in browser_errors(driver)]
    finally:
        first_browser.quit()
        if second_browser is not None:
            second_browser.quit()
    assert not errors, errors
    assert re.fullmatch(r"[0-9a-f]{32}", key)
