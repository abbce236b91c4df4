"""Many live console pages in one browser: a hidden page closes its event streams (after a
short grace) and reopens them where it stopped when shown, so a browser's 6 HTTP/1.1
connections to the daemon are not all held by pages nobody looks at. Against a real
`flowplan serve --http`: the log stream's `?offset=` and `?attempt=` over plain HTTP, then in
a real headless Chromium (skipped without chromium and chromedriver) 12 live pages as tabs
of one browser, each catching up when brought to the front, and the "live updates paused"
notice of a page that cannot get a connection.

Headless Chromium (`--headless=new`) reports a background tab as hidden
(`document.visibilityState`, with `visibilitychange` events) and the tab that
`switch_to.window` brings to the front as visible, as a desktop browser does; windows each
stay visible. The tests rely on that, and the first one checks it: every tab counts a pause
(`data-streams-paused` on <html>) by the time it is shown again."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeRepo, wait_until
from daemon_harness import Daemon, free_port, pb, publish, running_daemon
from google.protobuf import struct_pb2, timestamp_pb2
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

PAUSE_AFTER_SECONDS = 3.0  # console.js's PAUSE_AFTER_MS
FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 16}\n",
    # talk writes a line (two-byte characters in it), waits for GATE, then three more;
    # flaky fails its first attempt (MARK.tag is then there) and succeeds its retry
    "workflows/live.yaml": """
        name: live
        max_active_runs: 10
        params: {tag: "0"}
        nodes:
          - {name: talk, command: "echo first ünïcödé; while [ ! -e GATE ]; do sleep 0.1;
              done; for i in 1 2 3; do echo line $i; done"}
          - {name: flaky, upstream: [talk], retries: 1, retry_delay: 1s, command: "if [ -e
              MARK.${params.tag} ]; then echo second try; else touch MARK.${params.tag};
              echo first try; exit 3; fi"}
          - {name: last, upstream: [flaky], command: "echo done"}
        """,
    "workflows/nightly.yaml": """
        name: nightly
        max_active_runs: 5
        schedule: {every: day, at: "02:00", timezone: UTC}
        nodes:
          - {name: tick, command: "while [ ! -e GATE ]; do sleep 0.1; done"}
        """,
    "workflows/hold.yaml": """
        name: hold
        max_active_runs: 10
        nodes:
          - {name: wait, command: "while [ ! -e HOLD ]; do sleep 0.1; done"}
        """,
    # a log whose 65,536th byte is the first of a two-byte character: GetNodeLog's 64 KiB
    # chunks cut it in two
    "workflows/wide.yaml": """
        name: wide
        nodes:
          - {name: w, command: "head -c 65535 /dev/zero | tr '\\\\0' a; printf 'é\\\\nend\\\\n'"}
        """,
}
TALK_LOG = "first ünïcödé\nline 1\nline 2\nline 3\n"
needs_chromium = pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and"
                                    " chromium-driver (.ci/run installs them)")


@pytest.fixture
def served(make_repo: MakeRepo, tmp_path: Path) -> Iterator[tuple[Daemon, int, Path]]:
    store = tmp_path / "store"
    files = {k: v.replace("GATE", str(tmp_path / "gate")).replace("MARK", str(tmp_path / "mark"))
             .replace("HOLD", str(tmp_path / "hold")) for k, v in FILES.items()}
    publish(make_repo(files), store)
    try:
        with console_daemon(store, tmp_path) as (daemon, port):
            yield daemon, port, tmp_path
    finally:
        _release(tmp_path)


def _release(tmp_path: Path) -> None:
    """Every node waiting for a file ends (a node outlives a daemon killed under it)."""
    for name in ("gate", "hold"):
        (tmp_path / name).touch()


def _events(stream: str) -> list[tuple[int, str, int]]:
    """(id, text, attempt) of each `log` event of a log stream."""
    found = re.findall(r"^id: (\d+)\nevent: log\ndata: (.*)$", stream, re.M)
    return [(int(i), json.loads(d)["text"], json.loads(d)["attempt"]) for i, d in found]


def _start(daemon: Daemon, workflow: str, tag: str = "0") -> str:
    params = struct_pb2.Struct()
    if workflow == "live":
        params.update({"tag": tag})
    return str(daemon.call("StartRun", pb.StartRunRequest(workflow=workflow, params=params))
               .run.run_id)


def _backfill(daemon: Daemon) -> str:
    """A backfill of nightly's first 3 days of January 2026, its 3 runs at once."""
    start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
    start.FromJsonString("2026-01-01T00:00:00Z")
    end.FromJsonString("2026-01-03T23:00:00Z")
    return str(daemon.call("StartBackfill", pb.StartBackfillRequest(
        workflow="nightly", start_time=start, end_time=end, max_parallel_runs=3)).backfill_id)


def test_the_log_stream_goes_on_from_an_offset(served: tuple[Daemon, int, Path]) -> None:
    daemon, port, tmp_path = served
    operator = Browser(port)
    assert operator.login(TOKENS["operator"]) == 303
    wide = _start(daemon, "wide")
    assert daemon.wait_run(wide).status == pb.RUN_STATUS_SUCCEEDED
    log = f"/runs/{wide}/nodes/w/log"
    whole = "a" * 65535 + "é\nend\n"

    status, _, stream = operator.request("GET", log + "?offset=0")
    events = _events(stream)
    assert status == 200 and "".join(text for _, text, _ in events) == whole
    assert "event: end" in stream
    # the character cut by the first chunk is sent with the second, and the first event's
    # id is the offset before it: a stream resumed there neither loses nor repeats it
    assert [(i, len(text)) for i, text, _ in events] == [(65535, 65535), (65542, 6)]
    _, _, rest = operator.request("GET", log + "?offset=65535")
    assert "".join(text for _, text, _ in _events(rest)) == "é\nend\n"
    # without an offset: the last 64 KiB; Last-Event-ID (a reconnect) wins over ?offset=
    _, _, tail = operator.request("GET", log)
    assert "".join(text for _, text, _ in _events(tail)).endswith("aé\nend\n")
    assert len("".join(text for _, text, _ in _events(tail)).encode()) <= 64 * 1024
    _, _, resumed = operator.request("GET", log + "?offset=0",
                                     headers={"Last-Event-ID": "65538"})
    assert "".join(text for _, text, _ in _events(resumed)) == "end\n"
    _, _, past = operator.request("GET", log + "?offset=70000")  # past the end of a finished
    assert _events(past) == [] and "event: end" in past  # attempt: nothing more, then end

    # a retried node: ?attempt=1 is the first attempt's log, the default the latest
    live = _start(daemon, "live", "http")
    (tmp_path / "gate").touch()
    assert daemon.wait_run(live).status == pb.RUN_STATUS_SUCCEEDED
    flaky = f"/runs/{live}/nodes/flaky/log"
    for query, text, attempt in [("", "second try\n", 2), ("?attempt=1", "first try\n", 1),
                                 ("?attempt=1&offset=6", "try\n", 1),
                                 ("?attempt=2&offset=0", "second try\n", 2)]:
        _, _, stream = operator.request("GET", flaky + query)
        assert [(t, a) for _, t, a in _events(stream)] == [(text, attempt)], query

    for query, named in [("offset=-1", "offset"), ("offset=x", "offset"),
                         ("offset=1.5", "offset"), ("offset=", "offset"),
                         ("offset=%C2%B2", "offset"), ("offset=" + "9" * 30, "offset"),
                         ("attempt=0", "attempt"), ("attempt=two", "attempt"),
                         ("attempt=" + "9" * 12, "attempt")]:
        status, headers, page = operator.request("GET", f"{flaky}?{query}")
        assert status == 400, (query, status)
        assert f"{named} must be" in page and "text/html" in headers["content-type"], page
    assert operator.request("GET", f"/runs/{live}/nodes/nope/log?offset=0")[0] == 404
    status, _, page = operator.request("GET", f"{flaky}?attempt=3")  # it ended after 2
    assert status == 404 and "has no attempt 3: its last attempt is 2" in page, page


def test_the_log_of_a_node_that_waits_is_streamed_at_once(
        served: tuple[Daemon, int, Path]) -> None:
    """A node waiting for its upstream has no log yet: its stream still answers at once (and
    its keep-alives notice a page that leaves), on its own URL and shared in /events,
    instead of holding the request, unanswered, until the node's first byte."""
    daemon, port, _ = served
    operator = Browser(port)
    assert operator.login(TOKENS["operator"]) == 303
    live = _start(daemon, "live", "waits")  # talk waits for GATE; flaky waits for talk
    log = f"/runs/{live}/nodes/flaky/log"
    shared = "/events?" + urllib.parse.urlencode({"s": log, "last": ""})
    for path, first in ((log, "retry: "), (shared, "retry: ")):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", path, headers={"Cookie": "; ".join(
                f"{k}={v}" for k, v in operator.cookies.items())})
            response = connection.getresponse()  # a socket timeout here: nothing answered
            assert response.status == 200, path
            assert response.getheader("Content-Type", "").startswith("text/event-stream")
            assert response.readline().decode().startswith(first), path
            if path == shared:
                assert response.readline() == b"\n"
                assert response.readline() == b"event: open\n", path
        finally:
            connection.close()
    run = daemon.call("GetRun", pb.GetRunRequest(run_id=live, include_graph=True)).run
    [flaky] = [node for node in run.nodes if node.name == "flaky"]
    assert flaky.status == pb.NODE_STATUS_PENDING  # still waiting: it has no log yet


def _blocks(stream: str) -> list[dict[str, str]]:
    """Each event of an event stream as its fields (comments and `retry:` left out)."""
    found = []
    for block in stream.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n")
                      if line and not line.startswith(":") and ": " in line)
        if "data" in fields:
            found.append(fields)
    return found


def _multiplexed(browser: Browser, *streams: tuple[str, str]) -> tuple[int, str]:
    """GET /events with each (URL, last id) as its `s` and `last`."""
    query = urllib.parse.urlencode([(key, value) for url, last in streams
                                    for key, value in (("s", url), ("last", last))])
    status, _, body = browser.request("GET", "/events?" + query)
    return status, body


def test_one_connection_carries_many_streams_each_from_where_it_stopped(
        served: tuple[Daemon, int, Path]) -> None:
    """`/events` (the streams of a browser's pages, followed by its SharedWorker): each
    stream's events are those of its own URL, tagged with its index, after the `last` id
    given (its Last-Event-ID); one that cannot be followed fails alone; a wrong request is
    a 400 that names what is wrong."""
    daemon, port, tmp_path = served
    operator = Browser(port)
    assert operator.login(TOKENS["operator"]) == 303
    live = _start(daemon, "live", "mux")
    (tmp_path / "gate").touch()
    wide = _start(daemon, "wide")
    for run_id in (live, wide):
        assert daemon.wait_run(run_id).status == pb.RUN_STATUS_SUCCEEDED
    events, log = f"/runs/{live}/events", f"/runs/{wide}/nodes/w/log?offset=65535"

    status, body = _multiplexed(operator, (events, ""), (log, ""), ("/runs/nope/events", ""),
                                (f"/runs/{live}/nodes/flaky/log?attempt=x", ""))
    assert status == 200 and body.startswith("retry: 1000\n"), body[:200]
    by_stream: dict[str, list[dict[str, str]]] = {}
    for event in _blocks(body):
        by_stream.setdefault(event.pop("stream"), []).append(event)
    alone = _blocks(operator.request("GET", events)[2])
    assert by_stream["0"] == [{"event": "open", "data": "{}"}, *alone]
    assert alone[-1]["event"] == "end" and len(alone) > 6
    assert [json.loads(e["data"]).get("text") for e in by_stream["1"]] == [
        None, "é\nend\n", None]
    assert [e["event"] for e in by_stream["1"]] == ["open", "log", "end"]
    [failed] = by_stream["2"]
    assert failed["event"] == "failed" and json.loads(failed["data"])["status"] == 404
    [refused] = by_stream["3"]
    assert json.loads(refused["data"])["status"] == 400
    assert "attempt must be" in json.loads(refused["data"])["message"]

    # each from its `last`: the run's changes after the 3rd, the log after byte 65538
    third = alone[2]["id"]
    _, body = _multiplexed(operator, (log, "65538"), (events, third))
    tagged = _blocks(body)
    assert [e["id"] for e in tagged if e["stream"] == "1" and "id" in e] == [
        e["id"] for e in alone[3:] if "id" in e]
    assert [json.loads(e["data"])["text"] for e in tagged if e.get("event") == "log"] == [
        "end\n"]

    for query, named in [("", "s must name"), ("s=%2Fruns%2Fx%2Fevents", "last must come"),
                         ("s=%2Fruns%2Fx&last=", "is not an event stream"),
                         ("s=http%3A%2F%2Fexample.com%2Fruns%2Fx%2Fevents&last=",
                          "is not an event stream"),
                         ("&".join(["s=%2Fruns%2Fx%2Fevents&last="] * 65), "at most 64")]:
        status, _, page = operator.request("GET", "/events?" + query)
        assert status == 400 and named in page, (query, status, page[:300])
    assert Browser(port).request("GET", f"/events?s={events}&last=")[0] == 401


# ---- in a browser ---------------------------------------------------------------------------

def _counter(driver: Any, key: str) -> int:
    return int(driver.execute_script(
        f"return Number(document.documentElement.dataset.{key} || 0)"))


def _texts(driver: Any, selector: str, attribute: str | None = None) -> list[str]:
    from selenium.webdriver.common.by import By

    return [str(e.get_attribute(attribute) if attribute else e.text)
            for e in driver.find_elements(By.CSS_SELECTOR, selector)]


def _talking_runs(daemon: Daemon, count: int) -> list[str]:
    """`count` runs of live, started, each once its talk node has written its first line."""
    runs = [_start(daemon, "live", str(i)) for i in range(count)]
    for run_id in runs:
        wait_until(lambda run_id=run_id: _talking(daemon, run_id), "talk's first line",
                   timeout=30)
    return runs


def _live_windows(driver: Any, base: str, paths: list[str]) -> list[str]:
    """Each path's page in a window of its own (the first in the current one), once its
    streams are live (a node page: its log and its run's events): the windows' handles."""
    windows = []
    for index, path in enumerate(paths):
        if index:
            driver.switch_to.new_window("window")
        driver.get(base + path)
        want = 2 if "/nodes/" in path else 1
        wait_until(lambda want=want: _counter(driver, "streamsLive") == want,
                   f"window {index + 1} ({path}) live", timeout=30)
        windows.append(driver.current_window_handle)
    return windows


def _talking(daemon: Daemon, run_id: str) -> bool:
    return b"first" in b"".join(c.data for c in daemon.call(
        "GetNodeLog", pb.GetNodeLogRequest(run_id=run_id, node_name="talk")))


@needs_chromium
def test_thirteen_live_pages_in_one_browser_each_catch_up_when_shown(
        served: tuple[Daemon, int, Path]) -> None:
    """6 running runs: their run pages (the first with talk's panel open, following its
    log), talk's page of 3 and flaky's of the other 3, and a running backfill's page, as 13
    tabs of one browser. Every tab
    loads (without the pause, the 7th would wait for a connection for good); then the runs
    go on to their end while all tabs but the last are hidden, and each tab brought to the
    front shows exactly what happened: every status, talk's whole log once, flaky's two
    attempts once each, the backfill's 3 runs once each."""
    daemon, port, tmp_path = served
    base = f"http://127.0.0.1:{port}"
    runs = [_start(daemon, "live", str(i)) for i in range(6)]
    backfill = _backfill(daemon)
    for run_id in runs:
        wait_until(lambda run_id=run_id: _talking(daemon, run_id), "talk's first line",
                   timeout=30)
    wait_until(lambda: daemon.call("GetBackfill", pb.GetBackfillRequest(
        backfill_id=backfill)).backfill.progress.running == 3, "the backfill's 3 runs running",
               timeout=30)
    pages = ([f"/runs/{runs[0]}#node=talk"] + [f"/runs/{r}" for r in runs[1:]] +
             [f"/runs/{r}/nodes/talk" for r in runs[:3]] +
             [f"/runs/{r}/nodes/flaky" for r in runs[3:]] + [f"/backfills/{backfill}"])
    driver = _driver()
    driver.set_page_load_timeout(30)  # a tab waiting for a connection for good fails
    try:
        browser_login(driver, base, TOKENS["operator"])
        tabs: list[str] = []
        for index, path in enumerate(pages):
            if index:
                driver.switch_to.new_window("tab")
            started = time.monotonic()
            driver.get(base + path)
            wait_until(lambda: _counter(driver, "streamsOpened") >= 1,
                       f"tab {index + 1} ({path}) loaded and following", timeout=30)
            if "/nodes/talk" in path or "#node=" in path:
                log = "#log" if "/nodes/" in path else "#panel-log"
                wait_until(lambda log=log: "first" in "".join(_texts(driver, log)),
                           f"talk's log on tab {index + 1}", timeout=30)
            # a tab waits at most for the earlier ones' grace to end
            assert time.monotonic() - started < 4 * PAUSE_AFTER_SECONDS, path
            tabs.append(driver.current_window_handle)
        # every tab but the last is hidden and pauses within PAUSE_AFTER_SECONDS: let the
        # last one hidden do so before the runs move on
        time.sleep(PAUSE_AFTER_SECONDS + 1.5)
        (tmp_path / "gate").touch()
        final = {}
        for run_id in runs:
            assert daemon.wait_run(run_id, timeout=60).status == pb.RUN_STATUS_SUCCEEDED
            run = daemon.call("GetRun", pb.GetRunRequest(run_id=run_id, include_graph=True)).run
            final[run_id] = {n.name: pb.NodeStatus.Name(n.status).removeprefix("NODE_STATUS_")
                             for n in run.nodes}
            assert final[run_id] == {"talk": "SUCCEEDED", "flaky": "SUCCEEDED",
                                     "last": "SUCCEEDED"}
        wait_until(lambda: daemon.call("GetBackfill", pb.GetBackfillRequest(
            backfill_id=backfill)).backfill.status == pb.BACKFILL_STATUS_SUCCEEDED,
                   "the backfill SUCCEEDED", timeout=60)

        for index, (handle, path) in enumerate(zip(tabs, pages, strict=True)):
            driver.switch_to.window(handle)  # to the front: shown again
            assert driver.execute_script("return document.visibilityState") == "visible"
            what = f"tab {index + 1} ({path})"
            run_id = path.split("/")[2].split("#")[0]
            if path.startswith("/backfills/"):
                wait_until(lambda: _texts(driver, "#backfill-status", "data-status")
                           == ["SUCCEEDED"], f"the backfill SUCCEEDED on {what}", timeout=30)
                assert _texts(driver, "#progress") == [
                    "3 done, 0 failed, 0 running, 0 pending of 3"], what
                assert _texts(driver, "#backfill-runs tr[data-run] .status") == [
                    "SUCCEEDED"] * 3, what
            elif "/nodes/" not in path:
                wait_until(lambda: _texts(driver, "#run-status", "data-status")
                           == ["SUCCEEDED"], f"the run SUCCEEDED on {what}", timeout=30)
                assert dict(zip(_texts(driver, "g[data-node]", "data-node"),
                                _texts(driver, "g[data-node]", "data-status"),
                                strict=True)) == final[run_id], what
                # the node table, below the fold, is written as it comes into view
                driver.execute_script("document.getElementById('run-nodes').scrollIntoView()")
                wait_until(lambda want=final[run_id]: dict(zip(
                    _texts(driver, "tr[data-node]", "data-node"),
                    _texts(driver, "tr[data-node]", "data-status"), strict=True)) == want,
                           f"the node table current on {what}", timeout=30)
                assert _texts(driver, 'tr[data-node="flaky"] .attempts') == ["2"], what
                # below the fold it is drawn again once it comes into view
                driver.execute_script("document.getElementById('timeline').scrollIntoView()")
                wait_until(lambda: _texts(driver, '#timeline g[data-row="flaky"] rect.bar',
                                          "data-attempt") == ["1", "2"],
                           f"flaky's two bars, once each, in the timeline of {what}")
            else:
                wait_until(lambda: _texts(driver, "h1 .status") == ["SUCCEEDED"],
                           f"the node SUCCEEDED on {what}", timeout=30)
                attempts = _texts(driver, "#attempts tr[data-attempt]", "data-attempt")
                statuses = _texts(driver, "#attempts tr[data-attempt] .status")
                if "/nodes/flaky" in path:
                    assert (attempts, statuses) == (["1", "2"], ["FAILED", "SUCCEEDED"]), what
                else:
                    assert (attempts, statuses) == (["1"], ["SUCCEEDED"]), what
            if "/nodes/talk" in path or "#node=" in path:
                log = "#log" if "/nodes/" in path else "#panel-log"
                wait_until(lambda log=log: driver.find_element(
                    "css selector", log).get_attribute("data-ended") == "yes",
                    f"talk's log followed to its end on {what}", timeout=30)
                shown = driver.execute_script(
                    f"return document.querySelector('{log}').textContent")
                assert shown == TALK_LOG, (what, shown)  # each line once, none lost
            if index < len(tabs) - 1:  # hidden while the runs went on: paused, opened again
                assert _counter(driver, "streamsPaused") >= 1, what
                assert _counter(driver, "streamsOpened") >= 2, what
            assert not driver.find_elements("id", "live-notice"), what
        errors = browser_errors(driver)
        assert not errors, errors
    finally:
        driver.quit()


@needs_chromium
def test_eight_live_windows_in_one_browser_share_one_connection(
        served: tuple[Daemon, int, Path]) -> None:
    """Windows stay visible, so they keep their streams: 6 run pages of running runs and 2
    node pages (a log and the run's events each) in 8 windows of one browser, 10 streams
    against the browser's 6 connections to the daemon. Their SharedWorker gives the first 5
    a connection each, then, from the 6th on, leaves 4 theirs and follows the others in one:
    every window is live at once, none says it waits, and each shows its run's end and its
    whole log."""
    from selenium.webdriver.common.by import By

    daemon, port, tmp_path = served
    base = f"http://127.0.0.1:{port}"
    runs = _talking_runs(daemon, 6)
    pages = [f"/runs/{run_id}" for run_id in runs] + [
        f"/runs/{runs[0]}/nodes/talk", f"/runs/{runs[1]}/nodes/talk"]
    driver = _driver()
    driver.set_page_load_timeout(30)
    try:
        browser_login(driver, base, TOKENS["operator"])
        windows = _live_windows(driver, base, pages)
        live, shared = [], []
        for handle in windows:  # all live at once: 4 streams on their own, 6 shared
            driver.switch_to.window(handle)
            live.append(_counter(driver, "streamsLive"))
            shared.append(_counter(driver, "streamsShared"))
        assert live == [1] * 6 + [2, 2] and sum(shared) == 6, (live, shared)
        (tmp_path / "gate").touch()
        for handle, path in zip(windows, pages, strict=True):
            driver.switch_to.window(handle)
            if "/nodes/" in path:
                wait_until(lambda: _texts(driver, "h1 .status") == ["SUCCEEDED"],
                           f"talk SUCCEEDED on {path}", timeout=30)
                wait_until(lambda: driver.find_element(By.ID, "log").get_attribute(
                    "data-ended") == "yes", f"talk's log ended on {path}", timeout=30)
                assert driver.find_element(By.ID, "log").text + "\n" == TALK_LOG
            else:
                wait_until(lambda: _texts(driver, "#run-status", "data-status")
                           == ["SUCCEEDED"], f"the run SUCCEEDED on {path}", timeout=30)
                assert set(_texts(driver, "g[data-node]", "data-status")) == {"SUCCEEDED"}
            assert not driver.find_elements(By.ID, "live-notice"), path
            assert _counter(driver, "streamsPaused") == 0  # never hidden
        errors = browser_errors(driver)
        assert not errors, errors
    finally:
        driver.quit()


@needs_chromium
def test_a_shared_connection_refused_after_a_logout_fails_for_good(
        served: tuple[Daemon, int, Path]) -> None:
    """7 windows on 7 running runs: 4 streams on connections of their own, 3 shared. The
    7th logs out: its page leaves, so the worker opens the shared connection again for the
    5th and 6th, and the daemon refuses it (401, the session is gone): their streams fail
    for good, as an EventSource's would, and nothing asks again. The 4 connections of
    their own, open before the logout, are closed by the daemon within 2 s of it, and
    their EventSources' reconnections are refused alike."""
    from selenium.webdriver.common.by import By

    daemon, port, _ = served
    base = f"http://127.0.0.1:{port}"
    runs = _talking_runs(daemon, 7)
    driver = _driver()
    try:
        browser_login(driver, base, TOKENS["operator"])
        windows = _live_windows(driver, base, [f"/runs/{run_id}" for run_id in runs])
        assert _counter(driver, "streamsShared") == 1
        driver.find_element(By.CSS_SELECTOR, 'form[action="/logout"] button').click()
        wait_until(lambda: "/login" in driver.current_url, "the login page", timeout=30)
        for handle in windows[4:6]:
            driver.switch_to.window(handle)
            wait_until(lambda: _counter(driver, "streamsFailed") == 1,
                       "the shared stream refused for good", timeout=30)
            assert _counter(driver, "streamsLive") == 0
            assert _counter(driver, "streamsOpened") == 1
        for handle in windows[:4]:  # their own connections, open before the logout
            driver.switch_to.window(handle)
            wait_until(lambda: _counter(driver, "streamsLive") == 0,
                       "a stream of its own closed after the logout", timeout=30)
    finally:
        driver.quit()


@needs_chromium
def test_shared_streams_catch_up_after_the_daemon_restarts(make_repo: MakeRepo,
                                                           tmp_path: Path) -> None:
    """No tokens (loopback): 6 windows on 6 running runs, the 4 oldest streams on
    connections of their own (runs held until the end) and 2 through the worker's; the
    daemon stops, the 2 runs' talk nodes end meanwhile, and a daemon started again adopts
    them: the 2 windows show their run's end through the worker's connection, opened again,
    without a reload."""
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo({k: v.replace("GATE", str(tmp_path / "gate"))
                       .replace("MARK", str(tmp_path / "mark"))
                       .replace("HOLD", str(tmp_path / "hold")) for k, v in FILES.items()}),
            store)
    port, http_port = free_port(), free_port()
    extra = ["--http", f"127.0.0.1:{http_port}"]
    driver = _driver()
    try:
        with running_daemon(store, state, port=port, extra=extra) as daemon:
            runs = ([_start(daemon, "hold") for _ in range(4)] +
                    [_start(daemon, "live", str(i)) for i in range(2)])
            windows = _live_windows(driver, f"http://127.0.0.1:{http_port}",
                                    [f"/runs/{run_id}" for run_id in runs])
            for handle in windows:
                driver.switch_to.window(handle)
                driver.execute_script("document.body.dataset.loaded = 'once'")
            shared = []
            for handle in windows:
                driver.switch_to.window(handle)
                shared.append(_counter(driver, "streamsShared"))
            assert shared == [0, 0, 0, 0, 1, 1]
            assert daemon.stop() == 0
        (tmp_path / "gate").touch()  # talk ends while no daemon runs
        with running_daemon(store, state, port=port, extra=extra):
            for handle, run_id in zip(windows[4:], runs[4:], strict=True):
                driver.switch_to.window(handle)
                wait_until(lambda: _texts(driver, "#run-status", "data-status")
                           == ["SUCCEEDED"], f"{run_id} SUCCEEDED after the restart",
                           timeout=60)
                assert set(_texts(driver, "g[data-node]", "data-status")) == {"SUCCEEDED"}
                assert driver.execute_script("return document.body.dataset.loaded") == "once"
            for handle in windows[:4]:
                driver.switch_to.window(handle)
                assert _texts(driver, "#run-status", "data-status") == ["RUNNING"]
                assert _counter(driver, "streamsLive") == 1
    finally:
        driver.quit()
        _release(tmp_path)


@needs_chromium
def test_a_page_held_back_for_a_connection_says_so_until_it_gets_one(
        served: tuple[Daemon, int, Path]) -> None:
    """In a browser without SharedWorker (taken from each window's pages here) each page
    opens its own EventSources. Windows stay visible, so they keep their streams: 5 windows
    on running runs hold 5 of the browser's 6 connections to the daemon; a node page in a
    6th loads on the last and follows its log there, and its run's events wait for a
    connection: the page says so, and goes on once a window closes."""
    from selenium.webdriver.common.by import By

    daemon, port, tmp_path = served
    base = f"http://127.0.0.1:{port}"
    runs = _talking_runs(daemon, 6)
    driver = _driver()
    try:
        browser_login(driver, base, TOKENS["operator"])
        windows = []
        for index, run_id in enumerate(runs[:5]):
            if index:
                driver.switch_to.new_window("window")
            _without_shared_worker(driver)
            driver.get(f"{base}/runs/{run_id}")
            wait_until(lambda: _counter(driver, "streamsOpened") == 1, "the run page following",
                       timeout=30)
            windows.append(driver.current_window_handle)
        driver.switch_to.new_window("window")
        _without_shared_worker(driver)
        driver.get(f"{base}/runs/{runs[5]}/nodes/talk")
        wait_until(lambda: "first" in driver.find_element(By.ID, "log").text,
                   "talk's log on the 6th window", timeout=30)
        notice = wait_until(lambda: driver.find_elements(By.ID, "live-notice"),
                            "the notice on the 6th window", timeout=30)[0]
        assert notice.text.startswith("live updates paused: too many console pages open in"
                                      " this browser"), notice.text
        driver.save_screenshot(str(screenshots(tmp_path) / "live-paused.png"))
        page = driver.current_window_handle
        driver.switch_to.window(windows[0])
        driver.close()  # its connection is free
        driver.switch_to.window(page)
        wait_until(lambda: not driver.find_elements(By.ID, "live-notice"),
                   "the notice gone once a connection is free", timeout=30)
        (tmp_path / "gate").touch()
        wait_until(lambda: _texts(driver, "h1 .status") == ["SUCCEEDED"],
                   "talk SUCCEEDED on the 6th window, from its run's events", timeout=30)
        assert _counter(driver, "streamsPaused") == 0  # never hidden
        assert not driver.execute_script("return 'SharedWorker' in window")
    finally:
        driver.quit()


def _without_shared_worker(driver: Any) -> None:
    """The current window's pages from now on as in a browser without SharedWorker."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                           {"source": "delete window.SharedWorker;"})
