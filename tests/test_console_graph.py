"""The console's node panels and the run's Gantt timeline, in a real headless Chromium
against a real `flowplan serve --http`: a workflow page's panel shows a node's definition;
a run page's panel shows its attempts and follows its log live; the timeline has a bar per
attempt and grows a new one live when a retried node's second attempt starts; `#node=NAME`
opens the panel; a viewer sees no tick box. Plus the panel's JSON over plain HTTP. With
FLOWPLAN_SCREENSHOTS=1 the screenshots go into docs/console/."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeRepo, wait_until
from daemon_harness import Daemon, pb, publish
from test_web_console import (
    TOKENS,
    Browser,
    _chromium,
    _driver,
    browser_errors,
    browser_login,
    console_daemon,
    screenshots,
)

FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n  batch: {concurrency: 2}\n",
    "workflows/shapes.yaml": """
        name: shapes
        nodes:
          - {name: load, command: "echo load", queue: batch, retries: 2, timeout: 90s,
             tags: {team: sales, tier: gold}}
          - {name: report, command: "echo report", upstream: [load]}
          - {name: mail, command: "echo mail", upstream: [load]}
        """,
    # r's first attempt fails once FIRST exists, its retry succeeds once GATE exists
    "workflows/flaky.yaml": """
        name: flaky
        nodes:
          - {name: prep, command: "echo prep"}
          - {name: r, upstream: [prep], retries: 1, retry_delay: 1s, command: "if [ ! -e MARK ];
              then touch MARK; echo first try; while [ ! -e FIRST ]; do sleep 0.05; done;
              exit 1; fi; echo second try; while [ ! -e GATE ]; do sleep 0.05; done;
              echo finished"}
        """,
}
needs_chromium = pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and"
                                    " chromium-driver (.ci/run installs them)")


@pytest.fixture
def served(make_repo: MakeRepo, tmp_path: Path) -> Iterator[tuple[Daemon, int, Path]]:
    store = tmp_path / "store"
    marks = {"MARK": str(tmp_path / "mark"), "FIRST": str(tmp_path / "first"),
             "GATE": str(tmp_path / "gate")}
    files = dict(FILES)
    for key, path in marks.items():
        files["workflows/flaky.yaml"] = files["workflows/flaky.yaml"].replace(key, path)
    publish(make_repo(files), store)
    with console_daemon(store, tmp_path) as (daemon, port):
        yield daemon, port, tmp_path


@pytest.fixture
def driver() -> Iterator[Any]:
    if _chromium() is None:
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    browser = _driver()
    try:
        yield browser
    finally:
        browser.quit()


def _wait(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """wait_until with room for a loaded machine (the browser shares 2 cores)."""
    return wait_until(condition, what, timeout=timeout)


def _login(driver: Any, base: str, token: str) -> None:
    driver.delete_all_cookies()  # the fixture's browser may be logged in as another role
    browser_login(driver, base, token)


def _drawn(driver: Any) -> None:
    from selenium.webdriver.common.by import By

    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, '#graph[data-drawn="yes"]'),
               "the graph drawn")


def _panel(driver: Any) -> str | None:
    """The node the panel shows; None while it is closed."""
    return driver.execute_script(
        "const p = document.getElementById('panel');"
        " return p.hidden ? null : (p.dataset.node || null);")


def _facts(driver: Any) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    return {str(cell.get_attribute("data-fact")): cell.text for cell in
            driver.find_elements(By.CSS_SELECTOR, "#panel dd[data-fact]")}


def _inject_timeline(driver: Any, data: dict[str, Any]) -> None:
    """timeline.js run again on the open page, over `data` instead of the run's."""
    driver.execute_script(
        "const old = document.getElementById('timeline');"
        " const box = document.createElement('div');"
        " box.id = 'timeline'; box.className = 'timeline';"
        " box.dataset.timeline = arguments[0]; old.replaceWith(box);"
        " const script = document.createElement('script');"
        " script.src = '/static/timeline.js'; document.head.appendChild(script);"
        " box.scrollIntoView();",  # drawn only while in view
        json.dumps(data))


def _finished_run_page(served: tuple[Daemon, int, Path], driver: Any, workflow: str) -> None:
    """A finished run of `workflow`, its page open and its graph drawn, for a viewer."""
    daemon, port, _ = served
    run_id = daemon.call("StartRun", pb.StartRunRequest(workflow=workflow)).run.run_id
    daemon.wait_run(run_id)
    base = f"http://127.0.0.1:{port}"
    _login(driver, base, TOKENS["viewer"])
    driver.get(f"{base}/runs/{run_id}")
    _drawn(driver)


@needs_chromium
def test_the_workflow_page_panel_shows_a_nodes_definition(
        served: tuple[Daemon, int, Path], driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _, port, tmp_path = served
    base = f"http://127.0.0.1:{port}"
    _login(driver, base, TOKENS["operator"])
    driver.get(base + "/workflows/shapes")
    _drawn(driver)
    assert _panel(driver) is None
    driver.find_element(By.CSS_SELECTOR, 'g[data-node="load"] text').click()
    _wait(lambda: _panel(driver) == "load", "load's panel")
    assert driver.current_url == base + "/workflows/shapes#node=load"  # a link to share
    facts = _facts(driver)
    assert (facts["type"], facts["queue"], facts["retries"], facts["timeout"]) == (
        "shell", "batch", "2", "1m30s"), facts  # as the workflow file writes it
    assert "team=sales" in facts["tags"] and "tier=gold" in facts["tags"], facts
    assert facts["upstream"] == "—" and facts["downstream"] == "report, mail", facts
    assert "selected" in str(driver.find_element(By.CSS_SELECTOR, 'g[data-node="load"]')
                             .get_attribute("class"))
    driver.save_screenshot(str(screenshots(tmp_path) / "panel-workflow.png"))

    # a downstream node's link switches the panel; its upstream is load
    driver.find_element(By.CSS_SELECTOR, '#panel a[data-open="report"]').click()
    _wait(lambda: _panel(driver) == "report", "report's panel")
    assert _facts(driver)["upstream"] == "load" and _facts(driver)["timeout"] == "none"
    assert driver.current_url.endswith("#node=report")
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    _wait(lambda: _panel(driver) is None, "the panel closed by Escape")
    assert driver.current_url == base + "/workflows/shapes"
    assert not driver.find_elements(By.CSS_SELECTOR, "#graph g.selected")

    # the name in the Nodes table opens the panel too
    driver.find_element(By.CSS_SELECTOR, '#nodes tr[data-node="mail"] a.node-link').click()
    _wait(lambda: _panel(driver) == "mail", "mail's panel from the table")
    driver.find_element(By.ID, "panel-close").click()
    _wait(lambda: _panel(driver) is None, "the panel closed by its button")

    # a shared link opens the page with the panel open
    driver.get(base + "/")
    driver.get(base + "/workflows/shapes#node=mail")
    _drawn(driver)
    _wait(lambda: _panel(driver) == "mail", "the panel the link names")
    assert _facts(driver)["upstream"] == "load"
    assert not browser_errors(driver)  # e.g. a CSP violation


@needs_chromium
def test_a_run_page_panel_follows_the_log_and_the_timeline_grows_live(
        served: tuple[Daemon, int, Path], driver: Any) -> None:
    from selenium.webdriver.common.by import By

    daemon, port, tmp_path = served
    base = f"http://127.0.0.1:{port}"
    shots = screenshots(tmp_path)
    _login(driver, base, TOKENS["operator"])
    run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="flaky")).run.run_id
    driver.get(f"{base}/runs/{run_id}")
    _drawn(driver)
    loaded = driver.execute_script("return document.body.dataset.loaded = 'once'")
    rendered = json.loads(str(driver.find_element(By.ID, "timeline")
                              .get_attribute("data-timeline")))

    def bar(node: str, attempt: int) -> dict[str, str] | None:
        """The attempt's bar's status and width, read at once (the timeline redraws)."""
        return driver.execute_script(
            "const bar = document.querySelector('#timeline g[data-row=\"' + arguments[0]"
            " + '\"] rect.bar[data-attempt=\"' + arguments[1] + '\"]');"
            " return bar && {status: bar.dataset.status, width: bar.getAttribute('width')};",
            node, attempt)

    def bar_status(node: str, attempt: int) -> str | None:
        found = bar(node, attempt)
        return found["status"] if found else None

    def bar_width(node: str, attempt: int) -> float:
        found = bar(node, attempt)
        assert found is not None, (node, attempt)
        return float(found["width"])

    # below the fold the timeline waits: it is drawn again once it comes into view
    driver.execute_script("document.getElementById('timeline').scrollIntoView()")
    _wait(lambda: bar_status("r", 1) == "RUNNING", "r's first attempt")
    assert bar_status("prep", 1) == "SUCCEEDED"

    # r's panel while its first attempt runs: its log followed, then its retry's
    driver.find_element(By.CSS_SELECTOR, 'g[data-node="r"] text').click()
    _wait(lambda: _panel(driver) == "r", "r's panel")
    assert driver.current_url.endswith(f"/runs/{run_id}#node=r")

    def attempt_row(number: int) -> list[str]:
        rows = driver.find_elements(By.CSS_SELECTOR,
                                    f'#panel-attempts tr[data-attempt="{number}"] td')
        return [cell.text for cell in rows]

    log = driver.find_element(By.ID, "panel-log")
    _wait(lambda: "first try" in log.text, "the first attempt's log in the panel")
    assert attempt_row(1)[1] == "RUNNING" and not attempt_row(2)
    (tmp_path / "first").touch()
    _wait(lambda: bar_status("r", 1) == "FAILED", "r's first attempt FAILED")
    _wait(lambda: bar_status("r", 2) == "RUNNING", "r's second attempt's bar, live")
    # r's second attempt was not on the page as rendered: its bar comes from the events
    assert not [a for n in rendered["nodes"] if n["name"] == "r" for a in n["attempts"]
                if a["number"] == 2]
    assert driver.execute_script("return document.body.dataset.loaded") == loaded  # no reload
    width = bar_width("r", 2)
    _wait(lambda: bar_width("r", 2) > width + 2, "the running bar growing to now")
    assert bar_width("r", 1) >= 2

    _wait(lambda: attempt_row(2)[1:2] == ["RUNNING"], "r's attempt 2 in the panel")
    first = attempt_row(1)
    assert first[1] == "FAILED" and first[4] == "1", first
    assert re.fullmatch(r"\d\d-\d\d \d\d:\d\d:\d\d", first[2]), first  # the year: its title
    _wait(lambda: "second try" in log.text, "the retry's log followed in the panel")
    assert log.text.splitlines()[:3] == ["first try", "── attempt 2 ──", "second try"], log.text
    assert driver.find_element(By.ID, "panel-page").get_attribute("href") == (
        f"{base}/runs/{run_id}/nodes/r")
    assert driver.find_elements(By.ID, "panel-tick")  # an operator may resume
    (tmp_path / "gate").touch()
    _wait(lambda: log.text.splitlines()[-1:] == ["finished"], "the log followed live")
    _wait(lambda: log.get_attribute("data-ended") == "yes", "the log's end")
    _wait(lambda: driver.find_element(By.ID, "panel-status").text == "SUCCEEDED",
               "r SUCCEEDED in the panel")
    _wait(lambda: attempt_row(2)[1:2] == ["SUCCEEDED"], "attempt 2 kept current")
    assert attempt_row(2)[4] == "0"
    _wait(lambda: bar_status("r", 2) == "SUCCEEDED", "r's bar SUCCEEDED")
    _wait(lambda: driver.find_element(By.ID, "run-status").get_attribute("data-status")
               == "SUCCEEDED", "the run SUCCEEDED")
    driver.execute_script("document.querySelector('.graph-area').scrollIntoView()")
    driver.save_screenshot(str(shots / "panel-run.png"))
    driver.execute_script("document.getElementById('timeline').scrollIntoView()")
    driver.save_screenshot(str(shots / "timeline.png"))

    # another node, from its row in the timeline: the panel switches to prep's own log
    driver.find_element(By.CSS_SELECTOR, '#timeline g[data-row="prep"] text').click()
    _wait(lambda: _panel(driver) == "prep", "prep's panel")
    log = driver.find_element(By.ID, "panel-log")
    _wait(lambda: log.text == "prep", "prep's log")
    assert driver.execute_script("return document.body.dataset.loaded") == loaded
    assert not browser_errors(driver)


@needs_chromium
def test_a_viewer_opens_a_panel_from_a_link_and_sees_no_tick_box(
        served: tuple[Daemon, int, Path], driver: Any) -> None:
    from selenium.webdriver.common.by import By

    daemon, port, tmp_path = served
    (tmp_path / "first").touch()
    (tmp_path / "gate").touch()
    run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="flaky")).run.run_id
    assert daemon.wait_run(run_id).status == pb.RUN_STATUS_SUCCEEDED
    base = f"http://127.0.0.1:{port}"
    _login(driver, base, TOKENS["viewer"])
    driver.get(f"{base}/runs/{run_id}#node=r")
    _drawn(driver)
    _wait(lambda: _panel(driver) == "r", "the panel the link names")
    _wait(lambda: len(driver.find_elements(By.CSS_SELECTOR,
                                                "#panel-attempts tr[data-attempt]")) == 2,
               "r's two attempts")
    assert driver.find_element(By.ID, "panel-status").text == "SUCCEEDED"
    assert not driver.find_elements(By.CSS_SELECTOR, "#panel-tick, input[type=checkbox]")
    # the timeline draws after the page's first frame
    _wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#timeline rect.bar")) == 3,
          "the timeline's 3 bars")
    assert not browser_errors(driver)

    _login(driver, base, TOKENS["operator"])
    driver.get(f"{base}/runs/{run_id}#node=r")
    _wait(lambda: driver.find_elements(By.ID, "panel-tick"), "the operator's tick box")
    driver.find_element(By.ID, "panel-tick").click()
    assert driver.find_element(By.CSS_SELECTOR, 'input[name="node"][value="r"]').is_selected()
    assert "ticked" in str(driver.find_element(By.CSS_SELECTOR, 'g[data-node="r"]')
                           .get_attribute("class"))
    driver.find_element(By.CSS_SELECTOR, 'input[name="node"][value="r"]').click()  # the table's
    assert not driver.find_element(By.ID, "panel-tick").is_selected()
    assert "ticked" not in str(driver.find_element(By.CSS_SELECTOR, 'g[data-node="r"]')
                               .get_attribute("class"))


def test_a_nodes_json_for_the_panel_is_the_apis_answer_masked(
        served: tuple[Daemon, int, Path]) -> None:
    daemon, port, tmp_path = served
    (tmp_path / "first").touch()
    (tmp_path / "gate").touch()
    run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="flaky")).run.run_id
    daemon.wait_run(run_id)
    viewer = Browser(port)
    assert viewer.request("GET", f"/runs/{run_id}/nodes/r?format=json")[0] == 303  # login
    assert viewer.login(TOKENS["viewer"]) == 303
    status, headers, body = viewer.request("GET", f"/runs/{run_id}/nodes/r?format=json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert "default-src 'self'" in headers["content-security-policy"]
    node = json.loads(body)
    assert (node["name"], node["status"], node["queue"]) == ("r", "SUCCEEDED", "default")
    assert [(a["number"], a["status"], a["exit_code"]) for a in node["attempts"]] == [
        (1, "FAILED", 1), (2, "SUCCEEDED", 0)]
    first = node["attempts"][0]
    assert first["started"].endswith(" UTC") and first["finished_time"] >= first["started_time"]
    assert "log_path" not in body  # the daemon's files are not the page's business
    assert viewer.request("GET", f"/runs/{run_id}/nodes/zz?format=json")[0] == 404
    status, _, page = viewer.request("GET", f"/runs/{run_id}")
    timeline = json.loads(page.split('data-timeline="', 1)[1].split('"', 1)[0]
                          .replace("&#34;", '"'))
    assert [len(n["attempts"]) for n in timeline["nodes"]] == [1, 2]


# Injected before the page's scripts: notes, when the graph and the timeline each say they
# are drawn, the frames begun so far and whether the page's scripts had all run
# (DOMContentLoaded fires once they have).
FRAMES = r"""
window.__frames = 0;
window.__drawnAt = {};
let loaded = false;
document.addEventListener("DOMContentLoaded", () => { loaded = true; });
(function tick() { requestAnimationFrame(() => { window.__frames += 1; tick(); }); })();
new MutationObserver((records) => {
  for (const record of records) {
    if (record.target.dataset.drawn === "yes" && !(record.target.id in window.__drawnAt)) {
      window.__drawnAt[record.target.id] = { frames: window.__frames, loaded: loaded };
    }
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-drawn"] });
"""


@needs_chromium
def test_the_timeline_below_the_graph_draws_after_the_graphs_frame(
        served: tuple[Daemon, int, Path], driver: Any) -> None:
    """The timeline, below the fold, is drawn only after the page's scripts have run, in a
    frame after the graph's, so it does not hold back the frame that shows the graph
    (docs/console.md, Timeline). A graph this small is laid out by the page, so drawn once
    the page is parsed (docs/console.md, Graphs; test_console_daemon_layout has a large one
    drawn sooner)."""
    _, _, tmp_path = served
    (tmp_path / "first").touch()
    (tmp_path / "gate").touch()
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FRAMES})
    _finished_run_page(served, driver, "flaky")
    drawn = _wait(lambda: driver.execute_script(
        "return 'timeline' in window.__drawnAt && window.__drawnAt"), "the timeline drawn")
    assert drawn["graph"]["loaded"], drawn  # laid out by d3-dag, deferred: once parsed
    assert drawn["timeline"]["loaded"], drawn
    assert drawn["timeline"]["frames"] > drawn["graph"]["frames"], drawn
    assert not browser_errors(driver)


@needs_chromium
def test_the_timeline_of_a_thousand_nodes_scrolls_under_its_axis(
        served: tuple[Daemon, int, Path], driver: Any) -> None:
    """timeline.js run again on a finished run's page over 1,200 nodes, 1,000 of which ran
    (two attempts each): a row per node that ran, in a box that scrolls under the axis,
    drawn in under 160 ms (about 19 ms here). Data injected: a real 1,000-node run takes
    25 s, and its page's timeline was measured the same (1,000 rows, 19 ms)."""
    _, _, tmp_path = served
    (tmp_path / "first").touch()
    (tmp_path / "gate").touch()
    _finished_run_page(served, driver, "flaky")
    start = 1_796_000_000.0
    wide = "W" * 40 + "_the_end"  # wider than the label column: cut to fit, whole on hover
    nodes = [{"name": wide if i == 0 else f"n{i:04d}", "attempts": [] if i % 6 == 5 else [
        {"number": 1, "status": "FAILED", "started_time": start + i,
         "finished_time": start + i + 5},
        {"number": 2, "status": "SUCCEEDED", "started_time": start + i + 7,
         "finished_time": start + i + 30}]} for i in range(1200)]
    _inject_timeline(driver, {"now": start + 2000, "nodes": nodes})
    drawn = _wait(lambda: driver.execute_script(
        "const box = document.getElementById('timeline');"
        " if (box.dataset.drawn !== 'yes') return null;"
        " const rows = box.querySelector('.timeline-rows');"
        " return {rows: box.dataset.rows, ms: Number(box.dataset.drawMs),"
        " bars: box.querySelectorAll('rect.bar').length,"
        " scrolls: rows.scrollHeight > rows.clientHeight * 10,"
        " axis: box.querySelector('svg.timeline-axis').parentElement === box,"
        " ticks: box.querySelectorAll('.timeline-tick').length}"), "the big timeline drawn")
    assert drawn["rows"] == "1000" and drawn["bars"] == 2000, drawn
    assert drawn["scrolls"] and drawn["axis"] and drawn["ticks"] >= 3, drawn
    label = driver.execute_script(
        "const t = document.querySelector(`g.timeline-row[data-row='${arguments[0]}']"
        " text.timeline-name`); const box = t.getBBox();"
        " return {x: box.x, right: box.x + box.width, text: t.firstChild.data,"
        " title: t.querySelector('title').textContent}", wide)
    assert label["title"] == wide and label["text"].endswith("…"), label
    assert label["text"][:-1] == wide[:len(label["text"]) - 1] and label["x"] >= 0, label
    fastest = drawn["ms"]
    for _ in range(4):  # the fastest of 5 draws: one may wait behind the machine's other work
        draws = int(driver.execute_script(
            "window.dispatchEvent(new Event('resize'));"
            " return document.getElementById('timeline').dataset.draws"))
        fastest = min(fastest, _wait(lambda draws=draws: driver.execute_script(
            "const box = document.getElementById('timeline');"
            " return Number(box.dataset.draws) > arguments[0] && Number(box.dataset.drawMs)",
            draws), "a redraw"))
    assert fastest < 160, drawn
    print(f"a 1,000-row timeline drawn in {fastest} ms")
    assert not browser_errors(driver)


@needs_chromium
def test_a_timeline_without_attempts_waits_for_the_first(
        served: tuple[Daemon, int, Path], driver: Any) -> None:
    """A run queued behind others has no attempt yet: the timeline says so (it once looped
    on an empty time range until the array overflowed), then draws the first attempt its
    change event brings."""
    _finished_run_page(served, driver, "shapes")
    start = 1_796_000_000.0
    _inject_timeline(driver, {"now": start, "nodes": [{"name": "load", "attempts": []}]})
    _wait(lambda: driver.execute_script(
        "return document.getElementById('timeline').dataset.drawn === 'yes'"),
        "the empty timeline drawn")
    assert driver.execute_script(
        "const box = document.getElementById('timeline');"
        " return [box.dataset.rows, box.querySelector('p.sub').hidden,"
        " box.querySelectorAll('rect.bar').length]") == ["0", False, 0]
    driver.execute_script(
        "document.dispatchEvent(new CustomEvent('flowplan:changes', {detail: [{node: {"
        " name: 'load', status: 'RUNNING', attempts: 1, attempt: {number: 1,"
        " status: 'RUNNING', started_time: arguments[0], finished_time: null,"
        " copied_from: ''}}}]}))", start)
    _wait(lambda: driver.execute_script(
        "return document.querySelectorAll('#timeline rect.bar[data-status=RUNNING]').length"
        ) == 1, "the first attempt's bar")
    assert not browser_errors(driver)


LABELS = """const svg = document.querySelector('#graph svg');
const text = svg.querySelector('g.gnode text');
return {far: svg.classList.contains('far'), display: getComputedStyle(text).display,
        title: svg.querySelector('g.gnode title').textContent,
        edges: svg.querySelector('path.edges').getAttribute('d').split('M').length - 1};"""


@needs_chromium
def test_labels_too_small_to_read_are_left_out_until_the_graph_is_zoomed_in(
        make_repo: MakeRepo, tmp_path: Path, driver: Any) -> None:
    """A 60-node chain fitted to the box draws its labels under 5 px: they are left out (a
    status change then repaints boxes only), and come back as the wheel zooms in, and go
    again on Fit. A small graph fitted keeps them. Edges are one path, a subpath each; a
    node's tooltip is its name, on a run page too."""
    chain = ["name: long", "nodes:", "  - {name: c0, command: 'true'}"]
    chain += [f"  - {{name: c{i}, command: 'true', upstream: [c{i - 1}]}}" for i in range(1, 60)]
    store = tmp_path / "store"
    publish(make_repo({"flowplan.yaml": FILES["flowplan.yaml"],
                       "workflows/long.yaml": "\n".join(chain) + "\n",
                       "workflows/shapes.yaml": FILES["workflows/shapes.yaml"]}), store)
    with console_daemon(store, tmp_path) as (daemon, port):
        base = f"http://127.0.0.1:{port}"
        _login(driver, base, TOKENS["viewer"])
        driver.get(f"{base}/workflows/shapes")
        _drawn(driver)
        assert driver.execute_script(LABELS) == {"far": False, "display": "block",
                                                 "title": "load", "edges": 2}
        # on a run page too the tooltip is the name alone (a status there would go stale)
        run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="shapes")).run.run_id
        daemon.wait_run(run_id)
        driver.get(f"{base}/runs/{run_id}")
        _drawn(driver)
        assert driver.execute_script(LABELS)["title"] == "load"
        driver.get(f"{base}/workflows/long")
        _drawn(driver)
        assert driver.execute_script(LABELS) == {"far": True, "display": "none",
                                                 "title": "c0", "edges": 59}
        zoom_in = """const svg = document.querySelector('#graph svg');
            const box = svg.getBoundingClientRect();
            for (let i = 0; i < arguments[0]; i++) {
              svg.dispatchEvent(new WheelEvent('wheel', {deltaY: -100, bubbles: true,
                cancelable: true, clientX: box.left + box.width / 2,
                clientY: box.top + box.height / 2}));
            }"""
        driver.execute_script(zoom_in, 40)  # 1.15 ** 40: ~270 times as large
        assert driver.execute_script(LABELS)["far"] is False
        assert driver.execute_script(LABELS)["display"] == "block"
        driver.execute_script("document.getElementById('graph-fit').click()")
        assert driver.execute_script(LABELS)["far"] is True
        # a search brings the node to the middle, its name readable
        found = driver.execute_script(
            "const search = document.getElementById('graph-search');"
            " search.value = 'c42'; search.dispatchEvent(new Event('input'));"
            " const svg = document.querySelector('#graph svg');"
            " const node = svg.querySelector('g.gnode[data-node=\"c42\"]');"
            " const box = svg.getBoundingClientRect();"
            " const at = node.getBoundingClientRect();"
            " return {far: svg.classList.contains('far'), found: node.classList.contains('found'),"
            " dx: at.left + at.width / 2 - (box.left + box.width / 2),"
            " dy: at.top + at.height / 2 - (box.top + box.height / 2)}")
        assert found["found"] and not found["far"], found
        assert abs(found["dx"]) < 2 and abs(found["dy"]) < 2, found
        assert not browser_errors(driver)
