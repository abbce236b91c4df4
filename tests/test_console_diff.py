"""The diff of two plan versions (console/diff.py) and the durations the console shows
(console/present.py): first as pure functions over the API's messages, then on the pages of
a real daemon serving a workflow published in three versions from a real git repository
(over HTTP, and in headless Chromium when it is installed)."""

from __future__ import annotations

import os
import re
import subprocess
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeRepo, wait_until
from daemon_harness import Daemon, flowplan, free_port, running_daemon
from google.protobuf import struct_pb2, timestamp_pb2
from test_web_console import Browser, _chromium, _driver, browser_errors, screenshots

from flowplan.daemon.server.console.diff import Change, Line, Span, diff_versions, line_diff
from flowplan.daemon.server.console.present import (
    breakable_name,
    duration,
    run_duration,
    schedule_words,
    when,
)
from flowplan.v1 import workflow_service_pb2 as pb


def node(name: str, *, upstream: tuple[str, ...] = (), **fields: Any) -> pb.NodeDefinition:
    base: dict[str, Any] = {"type": pb.NODE_TYPE_SHELL, "queue": "default", "retries": 0,
                            "trigger": pb.TRIGGER_RULE_ALL_SUCCEEDED,
                            "retry_delay_seconds": 30.0, "retry_backoff": 1.0,
                            "command": f"echo {name}",
                            "tags": {"workflow_name": "sales", "task_name": name}}
    return pb.NodeDefinition(name=name, upstream=list(upstream), **{**base, **fields})


def workflow(*nodes: pb.NodeDefinition, params: dict[str, Any] | None = None,
             **fields: Any) -> pb.Workflow:
    """A workflow as GetWorkflow answers it; the edges follow the nodes' upstream."""
    struct = struct_pb2.Struct()
    struct.update(params or {})
    base: dict[str, Any] = {"name": "sales", "description": "Daily sales",
                            "timezone": "UTC", "queue": "default", "max_active_runs": 1,
                            "file": "workflows/sales.yaml"}
    edges = [pb.Edge(upstream=up, downstream=n.name) for n in nodes for up in n.upstream]
    return pb.Workflow(nodes=list(nodes), edges=edges, params=struct, **{**base, **fields})


def daily(at: str, zone: str = "Europe/Paris") -> pb.Schedule:
    return pb.Schedule(kind=pb.SCHEDULE_KIND_DAILY, at=at, timezone=zone,
                       enabled_in_git=True, catchup=pb.CATCHUP_NONE)


def by_field(changes: tuple[Change, ...]) -> dict[str, tuple[str | None, str | None]]:
    return {c.field: (c.old, c.new) for c in changes}


def test_identical_versions_say_so() -> None:
    one = workflow(node("a"), node("b", upstream=("a",)), params={"day": "x"})
    diff = diff_versions(one, workflow(node("a"), node("b", upstream=("a",)),
                                       params={"day": "x"}))
    assert diff.identical and diff.summary() == "nothing"


def test_workflow_fields_old_to_new() -> None:
    old = workflow(node("a"), schedule=daily("02:00"), failure_emails=["ops@example.com"],
                   tags={"team": "sales"})
    new = workflow(node("a"), schedule=daily("03:30"), description="Sales, daily",
                   timezone="Asia/Shanghai", queue="heavy", max_active_runs=3,
                   failure_emails=["ops@example.com", "oncall@example.com"],
                   tags={"team": "finance", "tier": "gold"}, file="workflows/s.yaml")
    diff = diff_versions(old, new)
    assert by_field(diff.workflow) == {
        "description": ("Daily sales", "Sales, daily"),
        "workflow file": ("workflows/sales.yaml", "workflows/s.yaml"),
        "time zone": ("UTC", "Asia/Shanghai"),
        "queue": ("default", "heavy"),
        "max active runs": ("1", "3"),
        "schedule": ("every day at 02:00 (Europe/Paris)",
                     "every day at 03:30 (Europe/Paris)"),
        "failure e-mails": ("ops@example.com", "ops@example.com, oncall@example.com"),
        "tag team": ("sales", "finance"),
        "tag tier": (None, "gold")}
    assert diff.nodes == () and diff.summary() == "9 fields of the workflow"


def test_schedule_added_with_its_switch_catch_up_and_start() -> None:
    start = timestamp_pb2.Timestamp()
    start.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
    schedule = pb.Schedule(kind=pb.SCHEDULE_KIND_CRON, cron="0 * * * *", timezone="UTC",
                           start=start, enabled_in_git=False, catchup=pb.CATCHUP_ALL)
    diff = diff_versions(workflow(node("a")), workflow(node("a"), schedule=schedule))
    assert by_field(diff.workflow) == {
        "schedule": ("manual only", "cron 0 * * * * (UTC)"),
        "scheduling on in git": (None, "no"),
        "catch-up": (None, "all"),
        "schedule start": (None, "2026-01-01 00:00:00 UTC")}
    back = diff_versions(workflow(node("a"), schedule=schedule), workflow(node("a")))
    assert by_field(back.workflow)["catch-up"] == ("all", None)


def test_params_added_removed_changed_and_a_masked_secret_stays_masked() -> None:
    old = workflow(node("a"), params={"day": "today", "limit": 10, "gone": True,
                                      "db_password": "********"})
    new = workflow(node("a"), params={"day": "yesterday", "limit": 12, "extra": [1, 2.5],
                                      "db_password": "********"})
    assert by_field(diff_versions(old, new).workflow) == {
        "param day": ('"today"', '"yesterday"'), "param limit": ("10", "12"),
        "param extra": (None, "[1, 2.5]"),
        "param gone": ("true", None)}


def test_a_tombstone_removes_every_node_and_edge() -> None:
    old = workflow(node("a"), node("b", upstream=("a",)))
    new = pb.Workflow(name="sales", tombstone=True)
    diff = diff_versions(old, new)
    assert by_field(diff.workflow)["removed from the repository"] == ("no", "yes")
    assert [(n.name, n.kind) for n in diff.nodes] == [("a", "removed"), ("b", "removed")]
    assert diff.nodes[1].upstream_removed == ("a",)
    assert by_field(diff.nodes[0].changes)["command"] == ("echo a", None)
    assert diff.edges_removed == (("a", "b"),) and diff.edges_added == ()


def test_nodes_added_removed_and_changed_with_each_field() -> None:
    old = workflow(
        node("extract", retries=1, tags={"workflow_name": "sales", "task_name": "extract",
                                          "team": "sales", "owner": "ann"}),
        node("load", upstream=("extract",), command="load.sh --day ${ds}\nvacuum\ncheck"),
        node("report", upstream=("load",)),
        node("legacy", upstream=("extract",)), tags={"team": "sales"})
    new = workflow(
        node("extract", retries=3, timeout_seconds=600, queue="heavy", queue_pinned=True,
             trigger=pb.TRIGGER_RULE_ALL_DONE, retry_delay_seconds=90,
             retry_backoff=2, description="From the shop",
             tags={"workflow_name": "sales", "task_name": "extract", "team": "finance",
                   "owner": "bob"}),
        node("clean", upstream=("extract",), type=pb.NODE_TYPE_PYTHON, command="",
             source_path="jobs/clean.py", source_sha256="ab" * 32),
        node("load", upstream=("clean",), command="load.sh --day ${ds} --full\nvacuum\ncheck"),
        node("report", upstream=("load",)), tags={"team": "finance"})
    diff = diff_versions(old, new)
    assert [(n.name, n.kind) for n in diff.nodes] == [
        ("extract", "changed"), ("clean", "added"), ("load", "changed"), ("legacy", "removed")]
    extract, clean, load, legacy = diff.nodes
    # `team` follows the workflow's tag (its change shows once, on the workflow); `owner`
    # is extract's own
    assert by_field(extract.changes) == {
        "queue": ("default", "heavy (pinned)"), "trigger": ("all_succeeded", "all_done"),
        "retries": ("1", "3"), "retry delay": ("30s", "1m30s"),
        "retry backoff": ("1x", "2x"), "timeout": ("(none)", "10m"),
        "description": ("(none)", "From the shop"), "tag owner": ("ann", "bob")}
    assert by_field(diff.workflow) == {"tag team": ("sales", "finance")}
    assert by_field(clean.changes) == {  # what says something: nothing unset, no retry delay
        "type": (None, "python"), "queue": (None, "default"),
        "trigger": (None, "all_succeeded"), "retries": (None, "0"),
        "source": (None, "jobs/clean.py"), "source content (sha256)": (None, "abababababab")}
    assert clean.upstream_added == ("extract",)
    assert (load.upstream_added, load.upstream_removed) == (("clean",), ("extract",))
    command = load.changes[0]
    assert command.field == "command" and command.code
    assert command.lines == (
        Line("-", "load.sh --day ${ds}", (Span("load.sh --day ${ds}", False),)),
        Line("+", "load.sh --day ${ds} --full",
             (Span("load.sh --day ${ds}", False), Span(" --full", True))),
        Line(" ", "vacuum"), Line(" ", "check"))
    assert legacy.upstream_removed == ("extract",)
    assert diff.edges_added == (("extract", "clean"), ("clean", "load"))
    assert diff.edges_removed == (("extract", "load"), ("extract", "legacy"))
    assert diff.summary() == ("1 field of the workflow, 1 node added, 1 node removed,"
                              " 2 nodes changed, 2 edges added, 2 edges removed")


def test_a_source_whose_content_changed_shows_its_new_digest() -> None:
    old = workflow(node("a", command="", source_path="jobs/a.sql", source_sha256="1" * 64))
    new = workflow(node("a", command="", source_path="jobs/a.sql", source_sha256="2" * 64))
    (a,) = diff_versions(old, new).nodes
    assert by_field(a.changes) == {"source content (sha256)": ("1" * 12, "2" * 12)}


def test_a_line_diff_keeps_two_lines_of_context_and_marks_what_it_leaves_out() -> None:
    old = "\n".join(f"line {i}" for i in range(1, 13))
    new = old.replace("line 2\n", "line two\n").replace("line 11", "line eleven")
    assert [(line.mark, line.text) for line in line_diff(old, new)] == [
        (" ", "line 1"), ("-", "line 2"), ("+", "line two"), (" ", "line 3"),
        (" ", "line 4"), ("…", ""), (" ", "line 9"), (" ", "line 10"), ("-", "line 11"),
        ("+", "line eleven"), (" ", "line 12")]
    assert line_diff("echo a", "echo a") == ()
    assert line_diff("", "echo b") == (Line("+", "echo b"),)
    assert line_diff("a\nb", "c") == (Line("-", "a"), Line("-", "b"), Line("+", "c"))


def test_a_changed_line_marks_the_words_that_differ() -> None:
    old = "spark-submit --conf spark.executor.memory=4g --class Load job.jar ${ds}"
    new = "spark-submit --conf spark.executor.memory=8g --class Load job.jar ${ds}"
    removed, added = line_diff(old, new)
    assert [s for s in removed.spans if s.changed] == [Span("4g", True)]
    assert [s for s in added.spans if s.changed] == [Span("8g", True)]
    assert "".join(s.text for s in added.spans) == new


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0 ms"), (0.85, "850 ms"), (0.9994, "999 ms"), (0.9996, "1.0 s"), (12.44, "12.4 s"),
    (59.94, "59.9 s"), (59.96, "1m 00s"), (185, "3m 05s"), (3599.9, "59m 59s"),
    (3600, "1h 00m"), (7265, "2h 01m"), (90000, "25h 00m"), (-2, "0 ms")])
def test_durations_read_at_a_glance(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


@pytest.mark.parametrize(("schedule", "words"), [
    (None, "manual only"),
    (pb.Schedule(kind=pb.SCHEDULE_KIND_DAILY, at="02:00", timezone="Europe/Paris"),
     "every day at 02:00 (Europe/Paris)"),
    (pb.Schedule(kind=pb.SCHEDULE_KIND_INTERVAL, every_seconds=3600, window_start="00:00",
                 window_end="23:59", timezone="UTC"), "every hour from 00:00 to 23:59 (UTC)"),
    (pb.Schedule(kind=pb.SCHEDULE_KIND_INTERVAL, every_seconds=7200, window_start="06:00",
                 window_end="18:00"), "every 2 hours from 06:00 to 18:00"),
    (pb.Schedule(kind=pb.SCHEDULE_KIND_INTERVAL, every_seconds=60, window_start="09:00",
                 window_end="17:00"), "every minute from 09:00 to 17:00"),
    (pb.Schedule(kind=pb.SCHEDULE_KIND_INTERVAL, every_seconds=900, window_start="09:00",
                 window_end="17:00"), "every 15 minutes from 09:00 to 17:00"),
    (pb.Schedule(kind=pb.SCHEDULE_KIND_CRON, cron="0 3 * * 1", timezone="UTC"),
     "cron 0 3 * * 1 (UTC)")])
def test_a_schedule_in_words(schedule: pb.Schedule | None, words: str) -> None:
    workflow = pb.Workflow(name="w")
    if schedule is not None:
        workflow.schedule.CopyFrom(schedule)
    assert schedule_words(workflow) == words


@pytest.mark.parametrize(("name", "shown"), [
    ("day", "day"),
    ("transform_orders", "transform_<wbr>orders"),
    ("team=warehouse-ops", "team=<wbr>warehouse-<wbr>ops"),
    ("a" * 40, "a" * 16 + "<wbr>" + "a" * 16 + "<wbr>" + "a" * 8),
    ("<b>&", "&lt;b&gt;&amp;")])  # escaped
def test_a_long_name_may_wrap_after_its_separators(name: str, shown: str) -> None:
    assert str(breakable_name(name)) == shown


def test_a_runs_duration_finished_running_or_not_started() -> None:
    started = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)

    def run(**times: datetime) -> pb.Run:
        message = pb.Run(run_id="wr_1")
        for name, value in times.items():
            getattr(message, name).FromDatetime(value)
        return message

    assert run_duration(run(started_at=started,
                            finished_at=started + timedelta(seconds=12.4))) == "12.4 s"
    assert run_duration(run(started_at=started), now=started + timedelta(seconds=72)
                        ) == "running 1m 12s"
    assert run_duration(run()) == ""  # still PENDING
    assert run_duration(run(finished_at=started)) == ""  # cancelled before it started


# ---- against a real daemon: three versions published from a real git repository ----------

V1 = """
    name: sales
    description: Daily sales
    schedule: {every: day, at: "02:00", timezone: Europe/Paris, catchup: none}
    params: {day: today, db_password: hunter2-first-secret}
    tags: {team: sales}
    nodes:
      - {name: extract, command: "echo extract ${params.day}", retries: 1}
      - name: load
        upstream: [extract]
        command: |
          echo load ${params.day}
          echo vacuum
          echo check
      - {name: legacy, upstream: [extract], command: "echo old"}
    """
V2 = """
    name: sales
    description: Daily sales, from the shop and the app
    schedule: {every: day, at: "03:30", timezone: Europe/Paris, catchup: none}
    params: {day: yesterday, db_password: hunter2-first-secret}
    tags: {team: finance}
    on_failure: {email: [oncall@example.com]}
    nodes:
      - {name: extract, command: "echo extract ${params.day}", retries: 3, timeout: 10m}
      - {name: clean, upstream: [extract], command: "echo clean"}
      - name: load
        upstream: [clean]
        command: |
          echo load ${params.day} --full
          echo vacuum
          echo check
    """
GATE_FLOW = """
    name: gate
    nodes:
      - {name: wait, command: "while [ ! -e GATE ]; do sleep 0.02; done"}
    """


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=Flow Tester",
                           "-c", "user.email=tester@example.com", *args], cwd=repo,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1"})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def sales(make_repo: MakeRepo, tmp_path: Path) -> Iterator[tuple[Daemon, int, Path, list[str]]]:
    """A daemon serving `sales` in three versions, each a commit published with
    `publish --git`: v2 changes much, v3 only the secret param's value."""
    store, state, gate = tmp_path / "store", tmp_path / "state", tmp_path / "go"
    repo = make_repo({"flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
                      "workflows/gate.yaml": GATE_FLOW.replace("GATE", str(gate))})
    _git(repo, "init", "--quiet", "-b", "main")
    commits = []
    for text, subject in [(V1, "Daily sales"), (V2, "Clean before the load, retry three times"),
                          (V2.replace("hunter2-first", "hunter2-second"), "Rotate the password")]:
        (repo / "workflows" / "sales.yaml").write_text(textwrap.dedent(text).lstrip("\n"))
        _git(repo, "add", "--all")
        _git(repo, "commit", "--quiet", "-m", subject)
        commits.append(_git(repo, "rev-parse", "HEAD"))
        flowplan("publish", "--git", repo, "--store", store)
    port = free_port()
    with running_daemon(store, state, extra=["--http", f"127.0.0.1:{port}"]) as daemon:
        yield daemon, port, tmp_path, commits


def test_the_diff_page_of_two_published_versions(
        sales: tuple[Daemon, int, Path, list[str]]) -> None:
    daemon, port, _, commits = sales
    local = Browser(port)  # no tokens: loopback, no login
    status, _, page = local.request("GET", "/workflows/sales")
    assert status == 200 and 'id="compare-form"' in page
    links = re.findall(r'href="(/workflows/sales/diff\?[^"]+)" class="compare-previous"', page)
    assert links == ["/workflows/sales/diff?from=2&amp;to=3",
                     "/workflows/sales/diff?from=1&amp;to=2"]

    status, _, page = local.request("GET", "/workflows/sales/diff?from=1&to=2")
    assert status == 200, page
    text = _text(page)
    # the header of both versions: published at, commit, digest, remarks
    answer = daemon.call("ListPlanVersions", pb.ListPlanVersionsRequest(workflow="sales"))
    for version in answer.plan_versions[1:]:
        assert version.commit[:12] in page and version.digest[:16] in page
        assert version.remarks in page and when(version, "published_at") in page
    assert [v.commit for v in reversed(answer.plan_versions)] == commits
    assert ("Changed from version 1 to 2: 5 fields of the workflow, 1 node added, 1 node"
            " removed, 2 nodes changed, 2 edges added, 2 edges removed.") in text
    assert "schedule every day at 02:00 (Europe/Paris) → every day at 03:30 (Europe/Paris)" \
        in text
    assert 'param day "today" → "yesterday"' in text
    assert "failure e-mails (none) → oncall@example.com" in text
    assert "tag team sales → finance" in text
    extract = _section(page, "extract")
    assert 'data-kind="changed"' in extract
    assert "retries 1 → 3" in _text(extract) and "timeout (none) → 10m" in _text(extract)
    load = _section(page, "load")
    assert 'data-upstream-added="clean"' in load and 'data-upstream-removed="extract"' in load
    lines = re.findall(r'<span class="line" data-mark="([-+ ])">[-+ ] (.*?)</span>', load)
    assert [(mark, _text(html)) for mark, html in lines] == [
        ("-", "echo load ${params.day}"), ("+", "echo load ${params.day} --full"),
        (" ", "echo vacuum"), (" ", "echo check")]
    assert "<b> --full</b>" in load
    assert 'data-kind="added"' in _section(page, "clean")
    assert 'data-kind="removed"' in _section(page, "legacy")
    assert re.findall(r'data-edge="(\w+) (\w+)" data-kind="(\w+)"', page) == [
        ("extract", "clean", "added"), ("clean", "load", "added"),
        ("extract", "load", "removed"), ("extract", "legacy", "removed")]
    assert "hunter2" not in page

    # only the secret's value changed: nothing shown differs, but the digests do
    status, _, page = local.request("GET", "/workflows/sales/diff?from=2&to=3")
    assert status == 200 and 'data-identical="yes"' in page and "digests do" in page
    assert "hunter2" not in page and "data-node-diff" not in page
    status, _, page = local.request("GET", "/workflows/sales/diff?from=3&to=1")  # backwards
    assert status == 200 and "Changed from version 3 to 1" in page and "hunter2" not in page

    for query, code, reason in [
            ("from=1", 400, "to must be a version number such as 3, not &#39;&#39;"),
            ("from=x&to=2", 400, "from must be a version number such as 3, not &#39;x&#39;"),
            ("from=-1&to=2", 400, "from must be a version number"),
            ("from=%C2%B2&to=2", 400, "from must be a version number"),
            ("from=2&to=2", 400, "from and to are both version 2"),
            ("from=1&to=9", 404, "to: sales has no version 9 (its versions are 1 to 3)"),
            ("from=99999999999&to=1", 400, "from must be a version number")]:
        status, _, page = local.request("GET", f"/workflows/sales/diff?{query}")
        assert (status, reason in page) == (code, True), (query, page)
    status, _, page = local.request("GET", "/workflows/nothing/diff?from=1&to=2")
    assert status == 404 and "workflow &#39;nothing&#39; does not exist" in page


def test_run_durations_in_the_history_and_on_the_run_page(
        sales: tuple[Daemon, int, Path, list[str]]) -> None:
    daemon, port, tmp_path, _ = sales
    local = Browser(port)
    run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="gate")).run.run_id
    wait_until(lambda: daemon.call("GetRun", pb.GetRunRequest(run_id=run_id)).run.status
               == pb.RUN_STATUS_RUNNING, "the gate run RUNNING")
    running = re.compile(r'<td class="duration">running (\d+ ms|\d+\.\d s)</td>')
    _, _, page = local.request("GET", "/workflows/gate")
    assert running.search(page), page
    _, _, page = local.request("GET", f"/runs/{run_id}")
    assert re.search(r'<span id="run-duration" data-started="[\d.]+" data-seconds="[\d.]+">'
                     r"running (\d+ ms|\d+\.\d s)</span>", page), page
    (tmp_path / "go").touch()
    run = daemon.wait_run(run_id)
    took = (run.finished_at.ToDatetime() - run.started_at.ToDatetime()).total_seconds()
    _, _, page = local.request("GET", "/workflows/gate")
    assert f'<td class="duration">{duration(took)}</td>' in page, page
    _, _, page = local.request("GET", f"/runs/{run_id}")
    assert re.search(rf'<span id="run-duration"[^>]*>{re.escape(duration(took))}</span>', page)
    other = daemon.call("StartRun", pb.StartRunRequest(workflow="sales")).run.run_id
    daemon.wait_run(other)
    _, _, page = local.request("GET", "/workflows/sales")
    assert re.search(rf'<tr data-run="{other}">.*?<td class="duration">(\d+ ms|\d+\.\d s)'
                     r"</td>", page, re.S), page


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver"
                    " (.ci/run installs them)")
def test_in_a_browser_compare_with_the_previous_version(
        sales: tuple[Daemon, int, Path, list[str]]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    daemon, port, tmp_path, _ = sales
    shots = screenshots(tmp_path)
    base = f"http://127.0.0.1:{port}"
    run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="sales")).run.run_id
    daemon.wait_run(run_id)
    driver = _driver()
    try:
        driver.get(f"{base}/workflows/sales")
        history = driver.find_element(By.ID, "history")
        driver.execute_script("arguments[0].scrollIntoView()", history)
        assert history.find_element(By.CSS_SELECTOR, f'tr[data-run="{run_id}"] td.duration'
                                    ).text.endswith((" ms", " s"))
        driver.save_screenshot(str(shots / "history.png"))
        driver.find_element(By.CSS_SELECTOR, 'tr[data-version="2"] a.compare-previous').click()
        wait_until(lambda: driver.find_elements(By.ID, "diff-summary"), "the diff page")
        assert driver.current_url == f"{base}/workflows/sales/diff?from=1&to=2"
        driver.set_window_size(1100, 1500)
        driver.save_screenshot(str(shots / "diff.png"))
        # the page's own form: pick two other versions
        Select(driver.find_element(By.NAME, "from")).select_by_value("3")
        Select(driver.find_element(By.NAME, "to")).select_by_value("2")
        driver.find_element(By.CSS_SELECTOR, "#compare-form button").click()
        wait_until(lambda: driver.current_url.endswith("/diff?from=3&to=2"), "the other diff")
        assert driver.find_element(By.ID, "diff-summary").get_attribute("data-identical") \
            == "yes"

        # a running run's page counts its duration, and ends on the one a reload shows; a
        # run waiting for it (gate's max_active_runs is 1) shows none until it starts
        gate = daemon.call("StartRun", pb.StartRunRequest(workflow="gate")).run.run_id
        wait_until(lambda: daemon.call("GetRun", pb.GetRunRequest(run_id=gate)).run.status
                   == pb.RUN_STATUS_RUNNING, "the first gate run RUNNING")
        queued = daemon.call("StartRun", pb.StartRunRequest(workflow="gate")).run.run_id
        driver.get(f"{base}/runs/{gate}")
        shown = driver.find_element(By.ID, "run-duration")
        wait_until(lambda: shown.text.startswith("running "), "the gate run counting")
        first = shown.text
        wait_until(lambda: shown.text != first, "the count going on without a reload")
        driver.switch_to.new_window("tab")
        driver.get(f"{base}/runs/{queued}")
        assert driver.find_element(By.ID, "run-status").text == "PENDING"
        later = driver.find_element(By.ID, "run-duration")
        assert later.text == ""
        (tmp_path / "go").touch()

        def ends_on_its_duration(element: Any, run_id: str) -> None:
            run = daemon.wait_run(run_id)
            took = (run.finished_at.ToDatetime() - run.started_at.ToDatetime()
                    ).total_seconds()
            wait_until(lambda: element.text and not element.text.startswith("running"),
                       f"{run_id}'s final duration")
            assert abs(_seconds(element.text) - took) < 0.11, (element.text, took)

        ends_on_its_duration(later, queued)
        driver.close()
        driver.switch_to.window(driver.window_handles[0])
        ends_on_its_duration(shown, gate)
        errors = browser_errors(driver)
    finally:
        (tmp_path / "go").touch()  # the gate run's shell must not outlive the test
        driver.quit()
    assert not errors, errors  # e.g. a CSP violation


def _seconds(shown: str) -> float:
    """`850 ms` or `12.4 s` as seconds."""
    number, unit = shown.split()
    return float(number) / (1000 if unit == "ms" else 1)


def _section(page: str, node: str) -> str:
    found = re.search(rf'<section class="node-diff" data-node-diff="{node}".*?</section>',
                      page, re.S)
    assert found, page
    return found.group(0)


def _text(html: str) -> str:
    """The page's words: tags dropped, entities decoded, spaces folded."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())
