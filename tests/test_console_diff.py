"""The diff of two plan versions (console/diff.py) and the durations the console shows
(console/present.py): pure functions over the API's messages, no daemon needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from flowplan.daemon.server.console.diff import Change, Line, diff_versions, line_diff
from flowplan.daemon.server.console.present import duration, run_duration
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
    assert by_field(clean.changes) == {
        "type": (None, "python"), "queue": (None, "default"),
        "trigger": (None, "all_succeeded"), "retries": (None, "0"),
        "retry delay": (None, "30s"), "retry backoff": (None, "1x"),
        "timeout": (None, "(none)"), "description": (None, "(none)"),
        "source": (None, "jobs/clean.py"), "source content (sha256)": (None, "abababababab")}
    assert clean.upstream_added == ("extract",)
    assert (load.upstream_added, load.upstream_removed) == (("clean",), ("extract",))
    command = load.changes[0]
    assert command.field == "command" and command.code
    assert command.lines == (Line("-", "load.sh --day ${ds}"),
                             Line("+", "load.sh --day ${ds} --full"),
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
    assert line_diff(old, new) == (
        Line(" ", "line 1"), Line("-", "line 2"), Line("+", "line two"),
        Line(" ", "line 3"), Line(" ", "line 4"), Line("…", ""),
        Line(" ", "line 9"), Line(" ", "line 10"), Line("-", "line 11"),
        Line("+", "line eleven"), Line(" ", "line 12"))
    assert line_diff("echo a", "echo a") == ()
    assert line_diff("", "echo b") == (Line("+", "echo b"),)


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0 ms"), (0.85, "850 ms"), (0.9994, "999 ms"), (0.9996, "1.0 s"), (12.44, "12.4 s"),
    (59.94, "59.9 s"), (59.96, "1m 00s"), (185, "3m 05s"), (3599.9, "59m 59s"),
    (3600, "1h 00m"), (7265, "2h 01m"), (90000, "25h 00m"), (-2, "0 ms")])
def test_durations_read_at_a_glance(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


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
