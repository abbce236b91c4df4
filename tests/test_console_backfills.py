"""The console's backfills (`/backfills`, `/backfills/ID` kept live, `/backfills/ID/events`)
against a real `flowplan serve --http`: the list with its progress, filters and pages; roles
on Cancel; one reader per backfill however many pages watch; and, in a real headless
Chromium, a backfill's page following its progress and its runs (a resumed one appearing)
to SUCCEEDED without a reload. The `gated` workflow's run of a day waits for the file
`gates/DAY` and exits with the code written in it, so each test moves a backfill step by
step."""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MakeRepo, wait_until
from daemon_harness import Daemon, free_port, pb, publish, running_daemon
from google.protobuf import timestamp_pb2
from test_web_console import (
    ROLES_FILE,
    TOKENS,
    Browser,
    _chromium,
    _driver,
    browser_errors,
    screenshots,
)

FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 8}\n",
    "workflows/daily.yaml": """
        name: daily
        schedule: {every: day, at: "02:00", timezone: UTC}
        nodes:
          - {name: day, command: "echo ${ds}"}
        """,
    # long names (up to 100 letters are allowed), to fit an 800 px window all the same
    "workflows/hourly_health_checks_for_the_warehouse_cluster.yaml": """
        name: hourly_health_checks_for_the_warehouse_cluster
        schedule: {every: 1h}
        tags: {team: warehouse-operations-and-reliability}
        nodes:
          - {name: transform_orders_and_refunds_for_the_finance_team, command: "true"}
          - {name: check, command: "true",
             upstream: [transform_orders_and_refunds_for_the_finance_team]}
        """,
    "workflows/gated.yaml": """
        name: gated
        description: Each day's run waits for its gate file, then exits with its code
        schedule: {every: day, at: "02:00", timezone: UTC}
        nodes:
          - {name: tick, command: "while [ ! -e GATES/${ds} ]; do sleep 0.1; done;
              exit $(cat GATES/${ds})"}
        """,
}
JANUARY = ("2026-01-01", "2026-01-02", "2026-01-03")


@pytest.fixture
def console(make_repo: MakeRepo, tmp_path: Path) -> Iterator[tuple[Daemon, int, Path]]:
    """A daemon with the roles file and the console; its third part is the gates folder."""
    store, state, gates = tmp_path / "store", tmp_path / "state", tmp_path / "gates"
    gates.mkdir()
    publish(make_repo({k: v.replace("GATES", str(gates)) for k, v in FILES.items()}), store)
    (tmp_path / "roles").write_text(ROLES_FILE)
    port = free_port()
    with running_daemon(store, state, extra=["--roles-file", str(tmp_path / "roles"),
                                             "--http", f"127.0.0.1:{port}"],
                        token=TOKENS["operator"]) as daemon:
        try:
            yield daemon, port, gates
        finally:  # no run left waiting: the tests' days, and a scheduled tick's since start
            runs = daemon.call("ListRuns", pb.ListRunsRequest(workflow="gated")).runs
            for day in {*JANUARY, *(r.logical_time.ToDatetime().strftime("%Y-%m-%d")
                                    for r in runs)}:
                (gates / day).write_text("0")


def _time(text: str) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(text)
    return stamp


def _backfill(daemon: Daemon, workflow: str, days: int = 3, parallel: int = 1,
              remarks: str = "") -> str:
    """A backfill of `workflow`'s first `days` days of January 2026 (a run a day)."""
    answer = daemon.call("StartBackfill", pb.StartBackfillRequest(
        workflow=workflow, start_time=_time("2026-01-01T00:00:00Z"),
        end_time=_time(f"2026-01-{days:02d}T23:00:00Z"), max_parallel_runs=parallel,
        remarks=remarks))
    backfill_id: str = answer.backfill_id
    return backfill_id


def _rows(page: str) -> list[str]:
    return re.findall(r'<tr data-backfill="([^"]+)"', page)


def _words(row: str) -> str:
    """A row's text, without its tags."""
    return re.sub(r"<[^>]+>", "", row)


def _row(page: str, backfill_id: str) -> str:
    found = re.search(rf'<tr data-backfill="{backfill_id}">(.*?)</tr>', page, re.S)
    assert found, page
    return found.group(1)


def test_the_list_newest_first_with_progress_filters_and_pages(
        console: tuple[Daemon, int, Path]) -> None:
    daemon, port, gates = console
    operator = Browser(port)
    assert operator.login(TOKENS["operator"]) == 303
    csrf = operator.csrf("/workflows/daily")
    status, headers, _ = operator.request("POST", "/workflows/daily/backfills", {
        "csrf": csrf, "start": "2026-01-01T00:00:00Z", "end": "2026-01-03T23:00:00Z",
        "reprocess": "all", "remarks": "January from the form", "confirm": "yes"})
    assert status == 303
    daily = headers["location"].removeprefix("/backfills/")
    gated = _backfill(daemon, "gated", days=2, remarks="waits for its gates")

    def listed() -> str | None:
        _, _, page = operator.request("GET", "/backfills")
        return page if ("3 done, 0 failed, 0 running, 0 pending of 3"
                        in _words(_row(page, daily))
                        and "0 done, 0 failed, 1 running, 1 pending of 2"
                        in _words(_row(page, gated))) else None

    page = wait_until(listed, "both backfills' progress in the list", timeout=30)
    assert _rows(page) == [gated, daily]  # newest first
    row = _row(page, daily)
    half = (len(daily) + 1) // 2  # an id may break in its middle in a narrow window
    assert f'href="/backfills/{daily}">{daily[:half]}<wbr>{daily[half:]}</a>' in row
    assert 'href="/workflows/daily">daily</a>' in row
    assert 'data-status="SUCCEEDED">SUCCEEDED</span>' in row
    assert "2026-01-01 00:00:00 UTC" in _words(row) and "2026-01-03 23:00:00 UTC" in _words(row)
    assert "January from the form" in row
    assert re.search(r'<rect data-part="succeeded" data-status="SUCCEEDED" x="0.00"'
                     r' width="100.00"', row), row
    row = _row(page, gated)
    assert 'data-status="RUNNING">RUNNING</span>' in row and "waits for its gates" in row
    assert re.search(r'data-part="running" data-status="RUNNING" x="0.00" width="50.00"', row)
    assert 'href="/backfills">Backfills</a>' in page  # in the navigation

    assert _rows(operator.request("GET", "/backfills?workflow=daily")[2]) == [daily]
    assert _rows(operator.request("GET", "/backfills?status=running")[2]) == [gated]
    assert _rows(operator.request("GET", "/backfills?status=SUCCEEDED")[2]) == [daily]
    _, _, page = operator.request("GET", "/backfills?workflow=gated&status=succeeded")
    assert _rows(page) == [] and "No backfills match the filter" in page
    status, _, page = operator.request("GET", "/backfills?status=done")
    assert status == 400 and "status must be one of running, succeeded, failed" in page
    assert operator.request("GET", "/backfills?page=not-a-token")[0] == 400
    _, _, page = operator.request("GET", "/workflows/gated")
    assert 'href="/backfills?workflow=gated"' in page

    # 20 a page, newest first; "Older backfills" keeps the filter
    more = [_backfill(daemon, "daily", days=1) for _ in range(20)]
    _, _, page = operator.request("GET", "/backfills?workflow=daily")
    assert _rows(page) == more[::-1]
    older = re.search(r'<a href="\?([^"]+)" id="older">', page)
    assert older and "workflow=daily" in older.group(1), page
    _, _, page = operator.request("GET", "/backfills?" + older.group(1).replace("&amp;", "&"))
    assert _rows(page) == [daily] and 'id="older"' not in page
    _, _, page = operator.request("GET", "/backfills")
    assert _rows(page) == [*more[::-1]] and 'id="older"' in page  # all: gated on page 2
    for day in JANUARY:
        (gates / day).write_text("0")


def test_cancel_for_operators_only_and_an_unknown_backfill(
        console: tuple[Daemon, int, Path]) -> None:
    daemon, port, _ = console
    backfill_id = _backfill(daemon, "gated")
    viewer = Browser(port)
    assert viewer.login(TOKENS["viewer"]) == 303
    status, _, page = viewer.request("GET", f"/backfills/{backfill_id}")
    assert status == 200 and 'id="cancel-backfill"' not in page
    assert f'data-watch-backfill="{backfill_id}" data-finished="no"' in page
    csrf = viewer.csrf(f"/backfills/{backfill_id}")
    status, _, page = viewer.request("POST", f"/backfills/{backfill_id}/cancel",
                                     {"csrf": csrf})
    assert status == 403 and "CancelBackfill needs the role operator" in page
    answer = daemon.call("GetBackfill", pb.GetBackfillRequest(backfill_id=backfill_id))
    assert answer.backfill.status == pb.BACKFILL_STATUS_RUNNING

    operator = Browser(port)
    assert operator.login(TOKENS["operator"]) == 303
    status, _, page = operator.request("GET", f"/backfills/{backfill_id}")
    assert 'id="cancel-backfill"' in page
    csrf = operator.csrf(f"/backfills/{backfill_id}")
    assert operator.request("POST", f"/backfills/{backfill_id}/cancel", {})[0] == 403  # no CSRF
    status, headers, _ = operator.request("POST", f"/backfills/{backfill_id}/cancel",
                                          {"csrf": csrf})
    assert status == 303 and headers["location"] == f"/backfills/{backfill_id}"
    _, _, page = operator.request("GET", f"/backfills/{backfill_id}")
    assert 'id="backfill-status" data-status="CANCELLED"' in page
    assert 'id="cancel-backfill"' not in page and 'data-finished="yes"' in page

    def all_cancelled() -> bool:
        _, _, page = operator.request("GET", f"/backfills/{backfill_id}")
        return '<span id="progress">0 done, 0 failed, 0 running, 0 pending, 3 cancelled of 3<' \
            in page

    wait_until(all_cancelled, "its running run stopped too", timeout=20)

    status, _, page = operator.request("GET", "/backfills/bf_nothing")
    assert status == 404 and "backfill bf_nothing does not exist" in page
    assert operator.request("GET", "/backfills/bf_nothing/events")[0] == 404
    assert operator.request("POST", "/backfills/bf_nothing/cancel", {"csrf": csrf})[0] == 404
    assert Browser(port).request("GET", f"/backfills/{backfill_id}/events")[0] == 401


class Stream:
    """An open `/backfills/ID/events`, read line by line, for 60 s at most (the daemon's
    keep-alives every 15 s would keep a read going for good)."""

    def __init__(self, browser: Browser, path: str) -> None:
        self._deadline = time.monotonic() + 60
        self._connection = http.client.HTTPConnection("127.0.0.1", browser.port, timeout=20)
        self._connection.request("GET", path, headers={"Cookie": "; ".join(
            f"{k}={v}" for k, v in browser.cookies.items())})
        self.response = self._connection.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type", "").startswith("text/event-stream")

    def event(self) -> tuple[str, str]:
        """The next event or comment: ("comment", text), or its name and data line."""
        lines: list[str] = []
        while True:
            assert time.monotonic() < self._deadline, f"no whole event in time after {lines}"
            line = self.response.readline().decode()
            assert line, f"the stream ended after {lines}"
            if line == "\n":
                if lines:
                    break
                continue
            lines.append(line.rstrip("\n"))
        if lines[0].startswith(":"):
            return "comment", lines[0][1:].strip()
        fields = dict(line.split(": ", 1) for line in lines)
        return fields.get("event", fields.get("retry", "")), fields.get("data", "")

    def ended(self) -> bool:
        return self.response.read() == b""

    def close(self) -> None:
        self._connection.close()


def test_pages_watching_a_backfill_share_one_reader(
        console: tuple[Daemon, int, Path]) -> None:
    """Three streams of one backfill name the same reader and get the same bytes; the
    reader ends with the backfill, and a later page starts another."""
    daemon, port, gates = console
    backfill_id = _backfill(daemon, "gated", days=2, parallel=2)
    operator = Browser(port)
    assert operator.login(TOKENS["operator"]) == 303
    wait_until(lambda: daemon.call("GetBackfill", pb.GetBackfillRequest(
        backfill_id=backfill_id)).backfill.progress.running == 2, "both runs running",
        timeout=20)
    path = f"/backfills/{backfill_id}/events"
    streams = [Stream(operator, path) for _ in range(3)]
    try:
        readers = []
        for pages, stream in enumerate(streams, start=1):
            assert stream.event() == ("1000", "")  # retry: 1000
            kind, text = stream.event()
            found = re.fullmatch(r"reader (\d+), pages (\d+)", text)
            assert kind == "comment" and found, text
            readers.append(found.group(1))
            assert int(found.group(2)) == pages
            kind, data = stream.event()  # the whole state first
            state = json.loads(data)
            assert kind == "backfill" and state["status"] == "RUNNING"
            assert state["progress"]["running"] == 2
            assert [r["logical_time"] for r in state["runs"]] == [
                f"{day} 02:00:00 UTC" for day in JANUARY[:2]]
        assert len(set(readers)) == 1, readers

        (gates / JANUARY[0]).write_text("0")
        firsts = [stream.event() for stream in streams]
        assert firsts[0] == firsts[1] == firsts[2], firsts  # the same bytes
        change = json.loads(firsts[0][1])
        assert change["progress"]["succeeded"] == 1 and change["status"] == "RUNNING"
        assert [r["status"] for r in change["runs"]] == ["SUCCEEDED"]  # only what changed
        (gates / JANUARY[1]).write_text("0")
        for stream in streams:
            events = [stream.event()]
            while events[-1][0] != "end":
                events.append(stream.event())
            last = json.loads(events[-2][1])
            assert last["status"] == "SUCCEEDED" and last["finished_at"].endswith(" UTC")
            assert stream.ended()
        later = Stream(operator, path)  # the reader ended with the backfill: a new one
        assert later.event() == ("1000", "")
        assert later.event() == ("comment", f"reader {int(readers[0]) + 1}, pages 1")
        kind, data = later.event()
        assert kind == "backfill" and json.loads(data)["progress"]["succeeded"] == 2
        assert later.event() == ("end", "{}") and later.ended()
        later.close()
    finally:
        for stream in streams:
            stream.close()


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver"
                    " (.ci/run installs them)")
def test_in_a_browser_a_backfill_page_follows_its_progress_and_runs(
        console: tuple[Daemon, int, Path], tmp_path: Path) -> None:
    """Tick 1 fails, its resumed run appears in its place, ticks 2 and 3 pass, and the page
    shows it all as it happens, to SUCCEEDED, without a reload and without Cancel at the
    end. The list and the page are screenshot halfway."""
    from selenium.webdriver.common.by import By

    daemon, port, gates = console
    base = f"http://127.0.0.1:{port}"
    shots = screenshots(tmp_path)
    daily = _backfill(daemon, "daily", remarks="last year's days")
    backfill_id = _backfill(daemon, "gated", remarks="January reload")
    driver = _driver()
    try:
        driver.get(base + "/login")
        driver.find_element(By.ID, "token").send_keys(TOKENS["operator"])
        driver.find_element(By.ID, "login").click()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, '[data-workflow="gated"]'),
                   "the workflows page")
        driver.find_element(By.LINK_TEXT, "Backfills").click()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR,
                                                f'[data-backfill="{backfill_id}"]'),
                   "the backfills list")
        driver.find_element(By.LINK_TEXT, backfill_id).click()
        wait_until(lambda: driver.find_elements(By.ID, "backfill-runs"), "the backfill page")
        driver.execute_script("document.body.dataset.loaded = 'once'")

        def text(element_id: str) -> str:
            return str(driver.find_element(By.ID, element_id).text)

        def runs() -> list[tuple[str, str]]:
            return [(str(row.get_attribute("data-run")),
                     str(row.find_element(By.CSS_SELECTOR, ".status")
                         .get_attribute("data-status")))
                    for row in driver.find_elements(By.CSS_SELECTOR, "#backfill-runs tr[data-run]")]

        wait_until(lambda: text("progress") == "0 done, 0 failed, 1 running, 2 pending of 3",
                   "tick 1 running", timeout=20)
        first = runs()[0][0]
        (gates / JANUARY[0]).write_text("1")
        wait_until(lambda: runs()[0] == (first, "FAILED"), "tick 1 FAILED on the page",
                   timeout=20)
        wait_until(lambda: text("progress") == "0 done, 1 failed, 1 running, 1 pending of 3",
                   "tick 2 running after tick 1 failed", timeout=20)
        (gates / JANUARY[0]).write_text("0")
        resumed = daemon.call("ResumeRun", pb.ResumeRunRequest(
            run_id=first, node_names=["tick"])).run_id
        wait_until(lambda: [r for r, _ in runs()][:2] == [first, resumed],
                   "the resumed run in its place, without a reload", timeout=20)
        wait_until(lambda: text("progress") == "0 done, 0 failed, 1 running, 2 pending of 3",
                   "tick 1 counted by its latest run", timeout=20)
        assert driver.find_element(By.CSS_SELECTOR, f'tr[data-run="{resumed}"] td:last-child'
                                   ).text == first
        assert driver.find_elements(By.ID, "cancel-backfill")
        driver.save_screenshot(str(shots / "backfill.png"))
        page = driver.current_window_handle
        driver.switch_to.new_window("tab")
        driver.get(base + "/backfills")
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, f'[data-backfill="{daily}"]'
                                                ' [data-status="SUCCEEDED"]'),
                   "the daily backfill SUCCEEDED in the list", timeout=30)
        driver.save_screenshot(str(shots / "backfills.png"))
        driver.close()
        driver.switch_to.window(page)

        (gates / JANUARY[1]).write_text("0")
        (gates / JANUARY[2]).write_text("0")
        wait_until(lambda: driver.find_element(By.ID, "backfill-status").get_attribute(
            "data-status") == "SUCCEEDED", "the backfill SUCCEEDED on the page", timeout=30)
        wait_until(lambda: text("progress") == "3 done, 0 failed, 0 running, 0 pending of 3",
                   "every tick done")
        assert [s for _, s in runs()] == ["FAILED", "SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]
        assert not driver.find_elements(By.ID, "cancel-backfill")
        assert re.fullmatch(r"· finished 2026-\d\d-\d\d \d\d:\d\d:\d\d UTC",
                            text("finished-at")), text("finished-at")
        bar = driver.find_element(By.CSS_SELECTOR, '#progress-bar rect[data-part="succeeded"]')
        assert bar.get_attribute("width") == "100.00"
        wait_until(lambda: driver.find_element(By.ID, "backfill").get_attribute(
            "data-finished") == "yes", "the stream's end")
        assert driver.execute_script("return document.body.dataset.loaded") == "once"
        errors = browser_errors(driver)
        assert not errors, errors  # e.g. a CSP violation

        # in an 800 px window the lists fit it: no page scrolls sideways
        driver.set_window_size(800, 700)
        long_name = "hourly_health_checks_for_the_warehouse_cluster"
        for path, shot in (("/backfills", "narrow-backfills"), ("/", "narrow-workflows"),
                           ("/workflows/daily#history-section", "narrow-history"),
                           (f"/workflows/{long_name}#nodes-section", "narrow-nodes"),
                           (f"/backfills/{backfill_id}", "narrow-backfill")):
            driver.get(base + path)
            assert driver.find_elements(By.CSS_SELECTOR, "tr[data-backfill], tr[data-run],"
                                                         " tr[data-workflow], tr[data-node]")
            width, room = driver.execute_script("const page = document.documentElement;"
                                                " return [page.scrollWidth, page.clientWidth]")
            driver.save_screenshot(str(shots / f"{shot}.png"))
            assert width <= room, (path, width, room)
    finally:
        driver.quit()


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver"
                    " (.ci/run installs them)")
def test_an_open_backfill_page_catches_up_after_the_daemon_restarts(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    """No tokens (loopback): the page's events reconnect to the restarted daemon and show
    what happened meanwhile (tick 1 done, tick 2 running), then the rest, without a reload."""
    from selenium.webdriver.common.by import By

    store, state, gates = tmp_path / "store", tmp_path / "state", tmp_path / "gates"
    gates.mkdir()
    publish(make_repo({k: v.replace("GATES", str(gates)) for k, v in FILES.items()}), store)
    port, http_port = free_port(), free_port()
    extra = ["--http", f"127.0.0.1:{http_port}"]
    driver = _driver()

    def progress() -> str:
        return str(driver.find_element(By.ID, "progress").text)

    try:
        with running_daemon(store, state, port=port, extra=extra) as daemon:
            backfill_id = _backfill(daemon, "gated", days=2)
            driver.get(f"http://127.0.0.1:{http_port}/backfills/{backfill_id}")
            wait_until(lambda: progress() == "0 done, 0 failed, 1 running, 1 pending of 2",
                       "tick 1 running", timeout=20)
            driver.execute_script("document.body.dataset.loaded = 'once'")
            assert daemon.stop() == 0
        (gates / JANUARY[0]).write_text("0")  # tick 1 ends while no daemon runs
        with running_daemon(store, state, port=port, extra=extra):
            wait_until(lambda: progress() == "1 done, 0 failed, 1 running, 0 pending of 2",
                       "tick 1 done and tick 2 running on the page after the restart",
                       timeout=30)
            (gates / JANUARY[1]).write_text("0")
            wait_until(lambda: driver.find_element(By.ID, "backfill-status").get_attribute(
                "data-status") == "SUCCEEDED", "the backfill SUCCEEDED", timeout=30)
            assert driver.execute_script("return document.body.dataset.loaded") == "once"
    finally:
        for day in JANUARY:
            (gates / day).write_text("0")
        driver.quit()


def test_a_backfill_of_more_runs_than_its_page_shows_pages_the_older_ones(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    """A backfill of 1,003 hourly runs: its page shows the newest 1,000 (the backfill runs
    the oldest ticks first: the last 1,000 ticks) and links to the 3 older ones, whose page
    links back; its events name the older page too. A page token that is not one is
    refused with its reason."""
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo({"flowplan.yaml": "queues:\n  default: {concurrency: 32}\n",
                       "workflows/hourly.yaml": "name: hourly\nschedule: {every: 1h}\n"
                       "nodes:\n  - {name: h, command: 'true'}\n"}), store)
    (tmp_path / "roles").write_text(ROLES_FILE)
    port = free_port()
    with running_daemon(store, state, extra=["--roles-file", str(tmp_path / "roles"),
                                             "--http", f"127.0.0.1:{port}"],
                        token=TOKENS["operator"]) as daemon:
        start = _time("2026-01-01T00:00:00Z")
        end = timestamp_pb2.Timestamp(seconds=start.seconds + 1002 * 3600)  # 1,003 ticks
        backfill_id = daemon.call("StartBackfill", pb.StartBackfillRequest(
            workflow="hourly", start_time=start, end_time=end,
            max_parallel_runs=32)).backfill_id
        wait_until(lambda: daemon.call("GetBackfill", pb.GetBackfillRequest(
            backfill_id=backfill_id)).backfill.status == pb.BACKFILL_STATUS_SUCCEEDED,
            "the backfill's 1,003 runs done", timeout=240)
        viewer = Browser(port)
        assert viewer.login(TOKENS["viewer"]) == 303
        status, _, page = viewer.request("GET", f"/backfills/{backfill_id}")
        assert status == 200
        newest = re.findall(r'<tr data-run="([^"]+)" data-key="([^"]+) wr_', page)
        assert len(newest) == 1000
        assert newest[0][1] == "2026-01-01 03:00:00 UTC"  # the oldest of the newest 1,000
        assert "The newest 1000 runs are shown." in page and 'id="runs-page"' not in page
        more = re.search(r'<p class="sub" id="more-runs">.*?href="([^"]+)" id="older-runs"',
                         page)
        assert more, page
        older_url = more.group(1).replace("&amp;", "&")
        status, _, older = viewer.request("GET", older_url)
        assert status == 200, older
        rows = re.findall(r'<tr data-run="([^"]+)" data-key="([^"]+) wr_', older)
        assert [key for _, key in rows] == [f"2026-01-01 0{h}:00:00 UTC" for h in range(3)]
        assert not {run for run, _ in rows} & {run for run, _ in newest}
        assert 'data-paged="yes"' in older and 'id="newest-runs"' in older
        assert re.search(r'<p class="sub" id="more-runs" hidden>', older)  # no more
        _, _, stream = viewer.request("GET", f"/backfills/{backfill_id}/events")
        state_event = json.loads(re.findall(r"^data: (\{.+\})$", stream, re.M)[0])
        assert state_event["more_runs"] is True and state_event["older"]
        assert f"?page={state_event['older']}" in older_url.replace("%3D", "=")
        status, _, refused = viewer.request("GET", f"/backfills/{backfill_id}?page=nonsense")
        assert status == 400 and "page_token" in refused, refused


def test_a_workflows_history_pages_at_its_section_and_back_to_the_newest(
        console: tuple[Daemon, int, Path]) -> None:
    daemon, port, _ = console
    _backfill(daemon, "daily", days=25, parallel=8)  # 25 runs: a page of 20, then 5
    viewer = Browser(port)
    assert viewer.login(TOKENS["viewer"]) == 303
    _, _, page = viewer.request("GET", "/workflows/daily")
    assert len(re.findall(r'<tr data-run="', page)) == 20 and 'id="newest"' not in page
    older = re.search(r'<a href="/workflows/daily\?page=([^"#]+)#history-section"'
                      r' id="older">', page)
    assert older, page
    _, _, page = viewer.request("GET", f"/workflows/daily?page={older.group(1)}")
    assert len(re.findall(r'<tr data-run="', page)) == 5 and 'id="older"' not in page
    assert '<a href="/workflows/daily#history-section" id="newest">Newest runs</a>' in page
