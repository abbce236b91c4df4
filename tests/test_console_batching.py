"""A run's changes reach its pages in batches: the daemon writes the changes recorded within
FLUSH_SECONDS of each other to a page's stream in one write, each event keeping its own `id:`
(so `?after=` and `Last-Event-ID` resume exactly after the last one read, even in the middle
of a batch), or with `?batch=1` (the pages' own) as one `changes` event whose id is its last
change's; and a page applies each batch's changes, in order, without losing one. Against
a real `flowplan serve --http`: the stream's HTTP chunks read off a socket (aiohttp writes
each write as one chunk), then a real headless Chromium (skipped without chromium and
chromedriver) on the page of a 40-node run that starts and ends while it watches."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator
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
)

from flowplan.daemon.server.console.feeds import FLUSH_SECONDS

CHAIN = 40
needs_chromium = pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and"
                                    " chromium-driver (.ci/run installs them)")


def _fast(gate: Path) -> str:
    """A gate waiting for its file, then a chain of CHAIN `true` nodes: ~10 changes in
    each FLUSH_SECONDS. One run at a time: a second one waits for the first."""
    nodes = [f"  - {{name: gate, command: 'while [ ! -e {gate} ]; do sleep 0.02; done'}}"]
    nodes += [f"  - {{name: n{i}, command: 'true', upstream: [{f'n{i - 1}' if i else 'gate'}]}}"
              for i in range(CHAIN)]
    return "\n".join(["name: fast", "max_active_runs: 1", "nodes:", *nodes]) + "\n"


@pytest.fixture
def served(make_repo: MakeRepo, tmp_path: Path) -> Iterator[tuple[Daemon, int, Path]]:
    store = tmp_path / "store"
    publish(make_repo({"flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
                       "workflows/fast.yaml": _fast(tmp_path / "gate")}), store)
    with console_daemon(store, tmp_path) as (daemon, port):
        yield daemon, port, tmp_path


def _ids(stream: str) -> list[int]:
    return [int(n) for n in re.findall(r"^id: (\d+)\nevent: change$", stream, re.M)]


def _chunks(port: int, cookie: str, path: str, deadline: float) -> Iterator[bytes]:
    """The body of a chunked answer to GET `path`, chunk by chunk, as the daemon wrote it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
                           "\r\n".encode())
        buffer = b""

        def until(mark: bytes) -> bytes:
            nonlocal buffer
            while mark not in buffer:
                assert time.monotonic() < deadline, f"no {mark!r} in time: {buffer!r}"
                received = connection.recv(65536)
                assert received, f"the daemon closed the stream: {buffer!r}"
                buffer += received
            head, _, buffer = buffer.partition(mark)
            return head

        headers = until(b"\r\n\r\n").decode().lower()
        assert headers.startswith("http/1.1 200") and "transfer-encoding: chunked" in headers
        while size := int(until(b"\r\n"), 16):
            while len(buffer) < size + 2:
                assert time.monotonic() < deadline, "a chunk cut short"
                buffer += connection.recv(65536)
            yield buffer[:size]
            buffer = buffer[size + 2:]


def test_a_stream_writes_the_changes_of_each_spell_at_once_and_resumes_inside_one(
        served: tuple[Daemon, int, Path]) -> None:
    """Watching a 40-node run from its start: fewer writes than changes, several changes in
    one write, every change once and in order; then a stream resumed after any change, one
    in the middle of a write too, goes on with exactly the changes after it."""
    daemon, port, tmp_path = served
    operator = Browser(port)
    assert operator.login(TOKENS["operator"]) == 303
    cookie = "; ".join(f"{k}={v}" for k, v in operator.cookies.items())
    run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="fast")).run.run_id
    chunks = _chunks(port, cookie, f"/runs/{run_id}/events", time.monotonic() + 60)
    assert next(chunks) == b"retry: 1000\n\n"
    (tmp_path / "gate").touch()
    raw = list(chunks)
    assert raw[-1].endswith(b"event: end\ndata: {}\n\n")
    writes = [_ids(chunk.decode()) for chunk in raw]
    ids = [i for write in writes for i in write]
    assert ids == sorted(set(ids)) and len(ids) >= 2 * CHAIN, writes
    assert daemon.call("GetRun", pb.GetRunRequest(run_id=run_id)).run.status \
        == pb.RUN_STATUS_SUCCEEDED
    _, _, whole = operator.request("GET", f"/runs/{run_id}/events")
    assert _ids(whole) == ids and whole.endswith("event: end\ndata: {}\n\n")
    batched = [write for write in writes if len(write) > 1]
    assert batched and len([w for w in writes if w]) < len(ids), writes
    print(f"{len(ids)} changes in {len([w for w in writes if w])} writes"
          f" (FLUSH_SECONDS {FLUSH_SECONDS})")

    inside = batched[0][0]  # the first change of a write that carried more
    for after in (inside, ids[0], ids[len(ids) // 2], ids[-1]):
        rest = ids[ids.index(after) + 1:]
        _, _, stream = operator.request("GET", f"/runs/{run_id}/events?after={after}")
        assert _ids(stream) == rest and "event: end" in stream, after
        _, _, stream = operator.request("GET", f"/runs/{run_id}/events?after=0",
                                        headers={"Last-Event-ID": str(after)})
        assert _ids(stream) == rest, after


def _together(stream: str) -> list[tuple[int, list[dict[str, Any]]]]:
    """(id, changes) of each `changes` event of a `?batch=1` stream."""
    return [(int(i), json.loads(d)) for i, d in
            re.findall(r"^id: (\d+)\nevent: changes\ndata: (\[.*\])$", stream, re.M)]


def _key(change: dict[str, Any]) -> tuple[int, str, str | None, str | None]:
    node = change.get("node")
    return (change["sequence"], change["run_status"], node["name"] if node else None,
            node["status"] if node else None)


def test_with_batch_1_each_write_is_one_changes_event_and_resumes_after_its_id(
        served: tuple[Daemon, int, Path]) -> None:
    """`?batch=1` (what the console's pages ask for): each write is one `changes` event, a
    JSON array of the changes the plain stream sends as events of their own, its id its
    last change's sequence; `?after=` and `Last-Event-ID` resume after it; another value
    is a 400 that says what is right, on the stream's own URL and in `/events`."""
    daemon, port, tmp_path = served
    operator = Browser(port)
    assert operator.login(TOKENS["operator"]) == 303
    cookie = "; ".join(f"{k}={v}" for k, v in operator.cookies.items())
    run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="fast")).run.run_id
    url = f"/runs/{run_id}/events?batch=1"
    chunks = _chunks(port, cookie, url, time.monotonic() + 60)
    assert next(chunks) == b"retry: 1000\n\n"
    (tmp_path / "gate").touch()
    raw = [chunk.decode() for chunk in chunks]
    assert raw[-1].endswith("event: end\ndata: {}\n\n")
    writes = [_together(chunk) for chunk in raw]
    assert all(len(write) == 1 for write in writes if write), writes  # one event a write
    events = [event for write in writes for event in write]
    assert all(i == changes[-1]["sequence"] for i, changes in events), events
    assert any(len(changes) > 1 for _, changes in events)
    # the plain stream, read now, gives each node as it is now (WatchRun): the same changes
    _, _, plain = operator.request("GET", f"/runs/{run_id}/events")
    one_each = [json.loads(d) for d in re.findall(r"^data: (\{.+\})$", plain, re.M)]
    assert [_key(c) for _, changes in events for c in changes] == [_key(c) for c in one_each]
    assert len(one_each) >= 2 * CHAIN
    _, _, again = operator.request("GET", url)
    assert [c for _, changes in _together(again) for c in changes] == one_each

    middle = events[len(events) // 2][0]
    rest = [c for c in one_each if c["sequence"] > middle]
    for query, headers in ((f"&after={middle}", {}), ("&after=0", {"Last-Event-ID": str(middle)})):
        _, _, stream = operator.request("GET", url + query, headers=headers)
        assert [c for _, changes in _together(stream) for c in changes] == rest, query
        assert stream.endswith("event: end\ndata: {}\n\n")

    status, _, page = operator.request("GET", f"/runs/{run_id}/events?batch=yes")
    assert status == 400 and "batch must be 1" in page and "not &#39;yes&#39;" in page, page
    query = urllib.parse.urlencode([("s", f"/runs/{run_id}/events?batch=2"), ("last", "")])
    _, _, shared = operator.request("GET", "/events?" + query)
    failed = re.search(r"^event: failed\ndata: (.*)\nstream: 0$", shared, re.M)
    assert failed and json.loads(failed.group(1))["status"] == 400, shared
    assert "batch must be 1" in json.loads(failed.group(1))["message"]


# ---- in a browser ---------------------------------------------------------------------------

RECORD = """
window.__changes = [];
window.__bars = new Set();  // every bar element the timeline ever added
window.__rowWrites = 0;  // the node table's rows' data-status written
new MutationObserver((records) => { window.__rowWrites += records.length; }).observe(
  document.getElementById('run-nodes'),
  { subtree: true, attributes: true, attributeFilter: ['data-status'] });
// console.js writes the rows it owes (if the table is in view), then sends flowplan:end,
// in one task: the observer above hears of those writes only after this
document.addEventListener('flowplan:end', () => {
  window.__rowWritesBeforeEnd = window.__rowWrites;
});
window.__events = 0;  // flowplan:changes events: one a write the page read
document.addEventListener('flowplan:changes', (event) => {
  window.__events += 1;
  for (const c of event.detail) {
    window.__changes.push([c.sequence, c.run_status, c.node ? c.node.name : null,
                           c.node ? c.node.status : null]);
  }
});
new MutationObserver((records) => {
  for (const record of records) {
    for (const added of record.addedNodes) {
      if (added.nodeType === 1) {
        for (const bar of added.matches('rect.bar') ? [added] :
                          added.querySelectorAll('rect.bar')) {
          window.__bars.add(bar);
        }
      }
    }
  }
}).observe(document.getElementById('timeline'), {childList: true, subtree: true});
return Number(document.getElementById('run-nodes').dataset.sequence);
"""
GRAPH_TOP = "return document.getElementById('graph').getBoundingClientRect().top"
SHOWN = """
const texts = (selector) => [...document.querySelectorAll(selector)].map((e) => e.textContent);
return {
  rows: [...document.querySelectorAll('#run-nodes tr[data-node]')].map((row) =>
    [row.dataset.node, row.dataset.status, row.querySelector('.status').textContent,
     row.querySelector('.attempts').textContent, row.querySelector('.exit').textContent]),
  graph: [...document.querySelectorAll('#graph g[data-node]')].map((g) => g.dataset.status),
  run: [document.getElementById('run-status').dataset.status,
        document.getElementById('run-status').textContent],
  duration: document.getElementById('run-duration').textContent,
  bars: [...document.querySelectorAll('#timeline rect.bar')].map((bar) =>
    [bar.closest('g[data-row]').dataset.row, bar.dataset.status]),
  added: window.__bars.size, changes: window.__changes, events: window.__events,
  rowWritesBeforeEnd: window.__rowWritesBeforeEnd,
  cancel: document.getElementById('cancel-form') !== null};
"""


@needs_chromium
def test_a_run_page_shows_every_change_of_a_run_that_starts_and_ends_while_it_watches(
        served: tuple[Daemon, int, Path]) -> None:
    """The page of a run waiting behind another: when it runs, its 41 nodes' changes come
    ~10 to a write. Every row and graph node ends SUCCEEDED with one attempt, each change is
    handed on to the page's other scripts once, in order, a write's changes in one event;
    the run's duration is the one a reload shows (its start and end came in the same few
    batches); the timeline drew each bar once and then moved it (no SVG made again at each
    draw); Cancel went, and the graph stayed where it was."""
    from selenium.webdriver.common.by import By

    daemon, port, tmp_path = served
    base = f"http://127.0.0.1:{port}"
    first = daemon.call("StartRun", pb.StartRunRequest(workflow="fast")).run.run_id
    wait_until(lambda: daemon.call("GetRun", pb.GetRunRequest(run_id=first)).run.status
               == pb.RUN_STATUS_RUNNING, "the first run running")
    second = daemon.call("StartRun", pb.StartRunRequest(workflow="fast")).run.run_id
    driver = _driver()
    try:
        browser_login(driver, base, TOKENS["operator"])
        driver.get(f"{base}/runs/{second}")
        wait_until(lambda: driver.execute_script(
            "return document.documentElement.dataset.streamsOpened === '1' &&"
            " document.getElementById('graph').dataset.drawn === 'yes'"), "the page following")
        assert driver.find_element(By.ID, "run-status").text == "PENDING"
        rendered = int(driver.execute_script(RECORD))
        top = driver.execute_script(GRAPH_TOP)
        # the table and the timeline are below the fold (a 1100x700 window): written only
        # when they come into view, and the table when the run ends; the timeline's first
        # draw comes after the page's first frame
        wait_until(lambda: driver.execute_script(
            "return document.getElementById('timeline').dataset.drawn === 'yes'"),
            "the timeline's first draw")
        draws = driver.execute_script("return document.getElementById('timeline')"
                                      ".dataset.draws")
        (tmp_path / "gate").touch()
        wait_until(lambda: driver.execute_script(
            "return document.getElementById('run-nodes').dataset.finished === 'yes'"),
            "the page showing the run's end", timeout=60)
        shown: dict[str, Any] = driver.execute_script(SHOWN)
        names = ["gate", *(f"n{i}" for i in range(CHAIN))]
        # out of view, the rows wait (also past the run's end) with the state they were
        # rendered with, and are written when the table comes into view
        assert shown["rows"] == [[n, "PENDING", "PENDING", "0", ""] for n in names]
        assert shown["rowWritesBeforeEnd"] == 0, "rows written out of view"
        assert driver.execute_script("return window.__rowWrites") == 0, "written at the end"
        assert shown["graph"] == ["SUCCEEDED"] * len(names)
        assert shown["run"] == ["SUCCEEDED", "SUCCEEDED"] and not shown["cancel"]
        # Cancel gone, its place kept: the graph did not move (the whole page not drawn
        # again at the run's end)
        assert driver.execute_script(GRAPH_TOP) == top
        _, _, stream = _operator(port).request("GET", f"/runs/{second}/events?after={rendered}")
        sent = [json.loads(d) for d in re.findall(r"^data: (\{.+\})$", stream, re.M)]
        assert shown["changes"] == [
            [c["sequence"], c["run_status"], c["node"]["name"] if "node" in c else None,
             c["node"]["status"] if "node" in c else None] for c in sent]
        assert len(sent) >= 2 * len(names)
        # handed on a write at a time: each flowplan:changes event carries a write's changes
        assert 0 < shown["events"] < len(sent), (shown["events"], len(sent))
        _, _, page = _operator(port).request("GET", f"/runs/{second}")
        again = re.search(r'<span id="run-duration"[^>]*>([^<]*)</span>', page)
        # the same text, but for the page's times being whole milliseconds (the daemon's
        # are not): a run this short reads "176 ms", and may read "177 ms" on the page (or,
        # slowed down past a second, "1.3 s" for "1.2 s")
        assert again, page
        slack = 0.002 if again.group(1).endswith(" ms") else 0.1
        assert abs(_seconds(shown["duration"]) - _seconds(again.group(1))) <= slack, \
            (shown["duration"], again.group(1))
        assert driver.execute_script("return document.getElementById('timeline')"
                                     ".dataset.draws") == draws, "drawn out of view"
        # printed, the page writes them first (tests/test_console_streams.py scrolls the
        # table into view instead)
        driver.execute_script("window.dispatchEvent(new Event('beforeprint'))")
        assert driver.execute_script(SHOWN)["rows"] == [
            [n, "SUCCEEDED", "SUCCEEDED", "1", "0"] for n in names]
        driver.execute_script("document.getElementById('timeline').scrollIntoView()")
        bars = sorted([n, "SUCCEEDED"] for n in names)
        wait_until(lambda: sorted(driver.execute_script(SHOWN)["bars"]) == bars,
                   "the timeline's last draw (at most 4 a second)")
        draws = int(driver.execute_script(
            "window.dispatchEvent(new Event('resize'));"
            " return Number(document.getElementById('timeline').dataset.draws)"))
        wait_until(lambda: int(driver.execute_script(
            "return Number(document.getElementById('timeline').dataset.draws)")) > draws,
            "the timeline drawn again")
        shown = driver.execute_script(SHOWN)
        assert shown["added"] == len(names), shown["added"]  # each bar made once
        errors = browser_errors(driver)
        assert not errors, errors
    finally:
        driver.quit()


def _seconds(shown: str) -> float:
    """A duration as the console shows it under a minute ("850 ms", "12.4 s"), in seconds."""
    found = re.fullmatch(r"(\d+) ms|(\d+\.\d) s", shown)
    assert found, f"not a duration under a minute: {shown!r}"
    return int(found.group(1)) / 1000 if found.group(1) else float(found.group(2))


def _operator(port: int) -> Browser:
    browser = Browser(port)
    assert browser.login(TOKENS["operator"]) == 303
    return browser
