"""The `flowplan` client commands against a fake daemon: real gRPC on loopback, a servicer
that answers canned messages and records each request and its metadata, and the CLI run in
this process (`flowplan.daemon.cli.main`)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from certificates import certificates
from google.protobuf import any_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from flowplan.client import AsyncClient, Client, ClientError, Retry
from flowplan.daemon import cli
from flowplan.daemon.client import commands, connection, render
from flowplan.v1 import workflow_service_pb2 as pb
from flowplan.v1 import workflow_service_pb2_grpc as pb_grpc

NOW = datetime(2026, 1, 2, 3, 0, 0, tzinfo=UTC)
SERVICE = pb.DESCRIPTOR.services_by_name["WorkflowService"]
ESC = "\033["


class FakeDaemon(pb_grpc.WorkflowServiceServicer):
    """Answers each RPC from `answers[name]`: a message (unary), a list of messages (stream),
    or a function of (request, context) that returns either. Records what was asked."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.answers: dict[str, Any] = {}
        self.calls: list[tuple[str, Message]] = []
        self.metadata: list[dict[str, str]] = []

    def requests(self, name: str) -> list[Any]:
        return [request for called, request in self.calls if called == name]

    def answer(self, name: str, request: Message, context: grpc.ServicerContext) -> Any:
        self.calls.append((name, request))
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata()})
        if name not in self.answers:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"no answer for {name}")
        answer = self.answers[name]
        if callable(answer):
            answer = answer(request, context)
        return iter(answer) if isinstance(answer, list) else answer


def _rpc(name: str) -> Callable[[FakeDaemon, Message, grpc.ServicerContext], Any]:
    def call(self: FakeDaemon, request: Message, context: grpc.ServicerContext) -> Any:
        return self.answer(name, request, context)
    return call


for _method in SERVICE.methods:
    setattr(FakeDaemon, _method.name, _rpc(_method.name))


@pytest.fixture(scope="module")
def daemon_server() -> Iterator[tuple[FakeDaemon, int]]:
    daemon = FakeDaemon()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_WorkflowServiceServicer_to_server(daemon, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield daemon, port
    server.stop(grace=None)


@pytest.fixture
def fake(daemon_server: tuple[FakeDaemon, int], monkeypatch: pytest.MonkeyPatch) -> FakeDaemon:
    daemon, port = daemon_server
    daemon.reset()
    monkeypatch.setenv("FLOWPLAN_ADDRESS", f"127.0.0.1:{port}")
    for name in ("FLOWPLAN_TOKEN_FILE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(cli, "tune_gc", lambda: None)  # keep this process's GC as it is
    monkeypatch.setattr(commands, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(commands, "_now", lambda: NOW)
    monkeypatch.setattr(connection, "RECONNECT_FIRST_DELAY", 0.01)
    return daemon


def flowplan(*args: str) -> int:
    return cli.main(list(args))


def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdout (pytest's capture) says it is a terminal."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)


def ts(text: str) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(text)
    return stamp


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


def abort_bad_request(context: grpc.ServicerContext, message: str,
                      *violations: tuple[str, str]) -> None:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
        for f, d in violations]))
    context.abort_with_status(rpc_status.to_status(status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message=message, details=[detail])))


DAILY = pb.Workflow(
    name="daily_sales", description="Sales by region\nsecond line", latest_version=3,
    schedule=pb.Schedule(kind=pb.SCHEDULE_KIND_DAILY, at="02:00", timezone="Asia/Shanghai"),
    scheduling_enabled=True, next_tick=ts("2026-01-02T18:00:00Z"))
ADHOC = pb.Workflow(name="adhoc", latest_version=1)
HOURLY = pb.Workflow(
    name="hourly", latest_version=7,
    schedule=pb.Schedule(kind=pb.SCHEDULE_KIND_INTERVAL, every_seconds=7200,
                         window_start="08:00", window_end="20:00", timezone="UTC"))


def attempt(number: int, status: int, start: str, end: str | None = None, **fields: Any
            ) -> pb.Attempt:
    made = pb.Attempt(number=number, status=status, plan_version=3,
                      started_at=ts(f"2026-01-02T{start}Z"), **fields)
    if end is not None:
        made.finished_at.CopyFrom(ts(f"2026-01-02T{end}Z"))
    return made


GRAPH_RUN = pb.Run(
    run_id="wr_01JG", workflow="daily_sales", plan_version=3, plan_digest="0123456789abcdef",
    status=pb.RUN_STATUS_FAILED, trigger=pb.RUN_TRIGGER_SCHEDULE,
    logical_time=ts("2026-01-02T02:00:00Z"), created_at=ts("2026-01-02T02:00:00Z"),
    started_at=ts("2026-01-02T02:00:01Z"), finished_at=ts("2026-01-02T02:05:04Z"),
    data_interval_start=ts("2026-01-01T02:00:00Z"), data_interval_end=ts("2026-01-02T02:00:00Z"),
    params=struct({"region": "us", "days": 5}),
    nodes=[
        pb.NodeRun(name="extract", status=pb.NODE_STATUS_SUCCEEDED, queue="default",
                   attempts=[attempt(1, pb.ATTEMPT_STATUS_SUCCEEDED, "02:00:01", "02:00:13",
                                     exit_code=0)]),
        pb.NodeRun(name="transform", status=pb.NODE_STATUS_FAILED, queue="spark",
                   attempts=[attempt(1, pb.ATTEMPT_STATUS_FAILED, "02:00:13", "02:00:33",
                                     exit_code=1, error="exited with code 1"),
                             attempt(2, pb.ATTEMPT_STATUS_FAILED, "02:01:00", "02:05:03",
                                     error="timed out after 240s")]),
        pb.NodeRun(name="load", status=pb.NODE_STATUS_SKIPPED, queue="default",
                   skip_reason="upstream transform failed"),
        pb.NodeRun(name="cleanup", status=pb.NODE_STATUS_SUCCEEDED, queue="default",
                   attempts=[attempt(1, pb.ATTEMPT_STATUS_SUCCEEDED, "02:05:03", "02:05:04",
                                     exit_code=0)]),
    ],
    edges=[pb.Edge(upstream="extract", downstream="transform"),
           pb.Edge(upstream="transform", downstream="load"),
           pb.Edge(upstream="extract", downstream="cleanup"),
           pb.Edge(upstream="transform", downstream="cleanup")])


def change(sequence: int, run_status: int, node: pb.NodeRun | None = None
           ) -> pb.WatchRunResponse:
    made = pb.WatchRunResponse(sequence=sequence, run_status=run_status,
                               event_time=ts(f"2026-01-02T02:00:{sequence:02d}Z"))
    if node is not None:
        made.node.CopyFrom(node)
    return made


# -- listing -----------------------------------------------------------------------------

@pytest.mark.parametrize("leading", [["--address", "{address}", "--json"],
                                     ["--json", "--address={address}"]])
def test_connection_options_may_come_before_the_command(fake, capsys, monkeypatch, leading):
    address = os.environ["FLOWPLAN_ADDRESS"]
    monkeypatch.setenv("FLOWPLAN_ADDRESS", "127.0.0.1:1")  # only --address reaches the daemon
    fake.answers["ListWorkflows"] = pb.ListWorkflowsResponse(workflows=[ADHOC])
    assert flowplan(*[a.format(address=address) for a in leading], "workflows", "--all") == 0
    assert fake.requests("ListWorkflows")[0].include_tombstones  # the command's own option
    assert json_format.Parse(capsys.readouterr().out, pb.ListWorkflowsResponse()) == \
        pb.ListWorkflowsResponse(workflows=[ADHOC])


def test_connection_options_before_a_command_that_calls_no_daemon_are_refused(capsys):
    with pytest.raises(SystemExit) as exited:
        flowplan("--address", "h:1", "check", ".")
    assert exited.value.code == 2
    assert ("flowplan check does not call a daemon: it takes none of --address h:1 (see"
            " flowplan check --help)") in capsys.readouterr().err


@pytest.mark.parametrize("address", ["127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1", ":50051",
                                     "h:port"])
def test_an_address_grpc_would_wrap_or_misread_is_a_usage_error(capsys, address):
    """gRPC takes port 99999 as 34463: whatever listens there would get the call."""
    assert flowplan("runs", "--address", address) == 2
    assert f"address {address!r}: give HOST:PORT with a port from 1 to 65535" in \
        capsys.readouterr().err


@pytest.mark.parametrize(("argv", "expected"), [
    (["runs", "--address", "h:1"], ["runs", "--address", "h:1"]),
    (["--timeout", "5", "--token-file=t", "logs", "r", "n"],
     ["logs", "--timeout", "5", "--token-file=t", "r", "n"]),
    (["--json"], ["--json"]),  # no command: argparse says so
    (["--version"], ["--version"]),
])
def test_options_after_command(argv, expected):
    assert cli.options_after_command(argv, {"runs", "logs"}) == expected


def test_workflows_reads_every_page_and_prints_a_table(fake, capsys):
    def pages(request, context):
        if not request.page_token:
            return pb.ListWorkflowsResponse(workflows=[ADHOC, DAILY], next_page_token="p2")
        return pb.ListWorkflowsResponse(workflows=[HOURLY])
    fake.answers["ListWorkflows"] = pages

    assert flowplan("workflows") == 0
    assert [r.page_token for r in fake.requests("ListWorkflows")] == ["", "p2"]
    assert not fake.requests("ListWorkflows")[0].include_tombstones
    assert capsys.readouterr().out.splitlines() == [
        "NAME         VERSION  SCHEDULE                      SCHEDULING  NEXT TICK"
        "             DESCRIPTION",
        "adhoc        1        manual                        -           -",
        "daily_sales  3        daily at 02:00 Asia/Shanghai  on          2026-01-02T18:00:00Z"
        "  Sales by region",
        "hourly       7        every 2h 08:00-20:00 UTC      off         -",
    ]

    assert flowplan("workflows", "--all", "--json") == 0
    assert fake.requests("ListWorkflows")[-1].include_tombstones
    printed = json_format.Parse(capsys.readouterr().out, pb.ListWorkflowsResponse())
    assert printed == pb.ListWorkflowsResponse(workflows=[ADHOC, DAILY, HOURLY])


def test_versions_lists_a_workflows_plan_versions(fake, capsys):
    versions = [
        pb.PlanVersion(workflow="daily_sales", version=2, digest="ab" * 32,
                       published_at=ts("2026-01-01T10:00:00Z"), remarks="Fix the join",
                       commit="c0ffee" * 6),
        pb.PlanVersion(workflow="daily_sales", version=1, digest="cd" * 32,
                       published_at=ts("2025-12-31T10:00:00.250Z"), remarks="first"),
    ]
    fake.answers["ListPlanVersions"] = pb.ListPlanVersionsResponse(plan_versions=versions)
    assert flowplan("versions", "daily_sales") == 0
    assert fake.requests("ListPlanVersions")[0].workflow == "daily_sales"
    assert capsys.readouterr().out.splitlines() == [
        "VERSION  PUBLISHED                 DIGEST        COMMIT        REMARKS",
        "2        2026-01-01T10:00:00Z      abababababab  c0ffeec0ffee  Fix the join",
        "1        2025-12-31T10:00:00.250Z  cdcdcdcdcdcd  -             first",
    ]


def test_runs_sends_the_filters_and_pages_up_to_the_limit(fake, capsys):
    def run(n: int) -> pb.Run:
        return pb.Run(run_id=f"wr_{n}", workflow="daily_sales", status=pb.RUN_STATUS_FAILED,
                      trigger=pb.RUN_TRIGGER_SCHEDULE, logical_time=ts("2026-01-02T02:00:00Z"),
                      started_at=ts("2026-01-02T02:00:00Z"),
                      finished_at=ts("2026-01-02T02:01:30Z"))

    def pages(request, context):
        start = int(request.page_token or 0)
        return pb.ListRunsResponse(runs=[run(start + i) for i in range(min(2, request.page_size))],
                                   next_page_token=str(start + 2))
    fake.answers["ListRuns"] = pages

    assert flowplan("runs", "--workflow", "daily_sales", "--status", "FAILED", "--trigger",
                    "schedule", "--tag", "team=data", "--backfill", "bf_9", "--limit", "3") == 0
    requests = fake.requests("ListRuns")
    assert [(r.page_size, r.page_token) for r in requests] == [(3, ""), (1, "2")]
    for request in requests:
        assert (request.workflow, request.status, request.trigger, request.tag,
                request.backfill_id) == ("daily_sales", pb.RUN_STATUS_FAILED,
                                         pb.RUN_TRIGGER_SCHEDULE, "team=data", "bf_9")
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "RUN   WORKFLOW     STATUS  TRIGGER   LOGICAL TIME          STARTED"
        "               DURATION  NODES  PREVIOUS  REMARKS",
        *[f"wr_{n}  daily_sales  FAILED  schedule  2026-01-02T02:00:00Z  2026-01-02T02:00:00Z"
          "  1m30s     -      -" for n in (0, 1, 2)],
    ]
    assert "more runs" in captured.err

    assert flowplan("runs", "--limit", "2", "--json") == 0
    assert fake.requests("ListRuns")[-1].workflow == ""
    printed = json_format.Parse(capsys.readouterr().out, pb.ListRunsResponse())
    assert [r.run_id for r in printed.runs] == ["wr_0", "wr_1"]
    assert printed.next_page_token == "2"  # the limit fell on a page boundary: continue there


# -- runs --------------------------------------------------------------------------------

def test_run_parses_params_as_json_scalars_and_sends_the_fields(fake, capsys):
    fake.answers["StartRun"] = pb.StartRunResponse(run=pb.Run(
        run_id="wr_7", workflow="daily_sales", plan_version=3, status=pb.RUN_STATUS_PENDING,
        logical_time=ts("2026-01-02T00:00:00Z")))
    assert flowplan("run", "daily_sales", "--param", "days=5", "--param", "full=true",
                    "--param", "region=us", "--param", 'code="007"', "--param", "ratio=2.5",
                    "--param", "note=a=b", "--param", "big=123456789012345678901",
                    "--param", "list=[1, 2]", "--param", "none=null", "--queue", "adhoc",
                    "--remarks", "rerun for finance", "--logical-time", "2026-01-02") == 0
    request = fake.requests("StartRun")[0]
    assert (request.workflow, request.queue, request.remarks) == (
        "daily_sales", "adhoc", "rerun for finance")
    assert dict(request.params.items()) == {
        "days": 5.0, "full": True, "region": "us", "code": "007", "ratio": 2.5, "note": "a=b",
        "big": "123456789012345678901", "list": "[1, 2]", "none": None}
    assert request.logical_time.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 2, tzinfo=UTC)
    assert capsys.readouterr().out == (
        "started run wr_7 of daily_sales (plan version 3, logical time 2026-01-02T00:00:00Z)\n")

    assert flowplan("run", "daily_sales", "--logical-time", "2026-01-02T10:30+08:00") == 0
    request = fake.requests("StartRun")[-1]
    assert request.logical_time.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 2, 2, 30,
                                                                   tzinfo=UTC)
    assert not request.HasField("params") or not request.params.fields
    assert flowplan("run", "daily_sales") == 0
    assert not fake.requests("StartRun")[-1].HasField("logical_time")  # the daemon's now


def test_run_wait_follows_the_run_and_exits_by_its_status(fake, capsys):
    fake.answers["StartRun"] = pb.StartRunResponse(run=pb.Run(run_id="wr_7",
                                                              workflow="daily_sales"))
    node = pb.NodeRun(name="extract", status=pb.NODE_STATUS_SUCCEEDED,
                      attempts=[attempt(1, pb.ATTEMPT_STATUS_SUCCEEDED, "02:00:02", "02:00:03",
                                        exit_code=0)])
    final = {"status": pb.RUN_STATUS_SUCCEEDED}
    fake.answers["WatchRun"] = lambda request, context: [
        change(1, pb.RUN_STATUS_RUNNING), change(2, pb.RUN_STATUS_RUNNING, node),
        change(3, final["status"])]

    assert flowplan("run", "daily_sales", "--wait") == 0
    assert [(r.run_id, r.after_sequence) for r in fake.requests("WatchRun")] == [("wr_7", 0)]
    assert capsys.readouterr().out.splitlines()[1:] == [
        "2026-01-02T02:00:01Z  #1  run RUNNING",
        "2026-01-02T02:00:02Z  #2  node extract SUCCEEDED attempt 1",
        "2026-01-02T02:00:03Z  #3  run SUCCEEDED",
        "run wr_7 SUCCEEDED",
    ]

    final["status"] = pb.RUN_STATUS_FAILED
    assert flowplan("run", "daily_sales", "--wait", "--json") == 1
    lines = capsys.readouterr().out.splitlines()
    assert json_format.Parse(lines[0], pb.StartRunResponse()).run.run_id == "wr_7"
    assert [json_format.Parse(line, pb.WatchRunResponse()).sequence
            for line in lines[1:]] == [1, 2, 3]


def test_watch_reconnects_after_the_last_sequence_when_the_stream_breaks(fake, capsys):
    running = pb.NodeRun(name="transform", status=pb.NODE_STATUS_RUNNING,
                         attempts=[attempt(2, pb.ATTEMPT_STATUS_RUNNING, "02:00:02")])
    retrying = pb.NodeRun(name="transform", status=pb.NODE_STATUS_RETRYING,
                          next_attempt_at=ts("2026-01-02T02:01:00Z"),
                          attempts=[attempt(1, pb.ATTEMPT_STATUS_FAILED, "02:00:01", "02:00:02",
                                            exit_code=3)])

    def watch(request, context):
        if request.after_sequence == 0:
            def broken():
                yield change(1, pb.RUN_STATUS_RUNNING, retrying)
                yield change(2, pb.RUN_STATUS_RUNNING, running)
                context.abort(grpc.StatusCode.UNAVAILABLE, "daemon shutting down")
            return broken()
        assert request.after_sequence == 2
        return [change(3, pb.RUN_STATUS_RUNNING, pb.NodeRun(
                    name="transform", status=pb.NODE_STATUS_FAILED,
                    attempts=[attempt(2, pb.ATTEMPT_STATUS_FAILED, "02:00:02", "02:00:03",
                                      error="timed out after 1s")])),
                change(4, pb.RUN_STATUS_FAILED)]
    fake.answers["WatchRun"] = watch

    assert flowplan("watch", "wr_1") == 1
    assert [r.after_sequence for r in fake.requests("WatchRun")] == [0, 2]
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "2026-01-02T02:00:01Z  #1  node transform RETRYING attempt 1 (exit 3)"
        " next at 2026-01-02T02:01:00Z",
        "2026-01-02T02:00:02Z  #2  node transform RUNNING attempt 2",
        "2026-01-02T02:00:03Z  #3  node transform FAILED attempt 2 (timed out after 1s)",
        "2026-01-02T02:00:04Z  #4  run FAILED",
        "run wr_1 FAILED",
    ]
    assert "UNAVAILABLE: daemon shutting down" in captured.err
    assert "reconnected" in captured.err


def test_watch_of_a_run_that_already_ended(fake, capsys):
    # after_sequence 0 replays the history; the stream ends at once after the final change
    fake.answers["WatchRun"] = [change(1, pb.RUN_STATUS_RUNNING),
                                change(2, pb.RUN_STATUS_SUCCEEDED)]
    assert flowplan("watch", "wr_1", "--json") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json_format.Parse(line, pb.WatchRunResponse()) for line in lines] == [
        change(1, pb.RUN_STATUS_RUNNING), change(2, pb.RUN_STATUS_SUCCEEDED)]


def test_status_prints_the_header_and_the_graph_without_colour(fake, capsys):
    fake.answers["GetRun"] = pb.GetRunResponse(run=GRAPH_RUN)
    assert flowplan("status", "wr_01JG") == 0
    request = fake.requests("GetRun")[0]
    assert (request.run_id, request.include_graph) == ("wr_01JG", True)
    out = capsys.readouterr().out
    assert ESC not in out
    assert out.splitlines() == [
        "run wr_01JG  daily_sales  FAILED",
        "  trigger    schedule, logical time 2026-01-02T02:00:00Z (data interval"
        " 2026-01-01T02:00:00Z .. 2026-01-02T02:00:00Z)",
        "  plan       version 3 (digest 0123456789ab)",
        "  times      created 2026-01-02T02:00:00Z, started 2026-01-02T02:00:01Z,"
        " finished 2026-01-02T02:05:04Z (took 5m03s)",
        "  params     days=5 region=us",
        "",
        "NODE       STATUS     ATTEMPTS  DURATION  QUEUE    UPSTREAM",
        "extract    SUCCEEDED  1         12.0s     default  -",
        "transform  FAILED     2         4m50s     spark    extract",
        "    └ attempt 1  FAILED  20.0s: exited with code 1",
        "    └ attempt 2  FAILED  4m03s: timed out after 240s",
        "load       SKIPPED    -         -         default  transform",
        "    └ upstream transform failed",
        "cleanup    SUCCEEDED  1         1.0s      default  extract, transform",
        "4 nodes: 2 succeeded, 1 failed, 1 skipped",
    ]

    assert flowplan("status", "wr_01JG", "--json") == 0
    assert json_format.Parse(capsys.readouterr().out, pb.GetRunResponse()) == (
        pb.GetRunResponse(run=GRAPH_RUN))


def test_status_keeps_the_lines_of_multi_line_remarks_in_the_header(fake, capsys):
    run = pb.Run()
    run.CopyFrom(GRAPH_RUN)
    run.remarks = "rerun after the fix\nticket OPS-12"
    fake.answers["GetRun"] = pb.GetRunResponse(run=run)
    assert flowplan("status", "wr_01JG") == 0
    out = capsys.readouterr().out.splitlines()
    at = out.index("  remarks    rerun after the fix")
    assert out[at + 1] == "             ticket OPS-12"


def test_status_colours_each_node_status_on_a_terminal(fake, capsys, monkeypatch):
    statuses = {"RUNNING": "34", "SUCCEEDED": "32", "FAILED": "31", "RETRYING": "33",
                "PENDING": "35", "SKIPPED": "90", "CANCELLED": "90"}
    run = pb.Run(run_id="wr_2", workflow="w", status=pb.RUN_STATUS_RUNNING, nodes=[
        pb.NodeRun(name=name.lower(), status=pb.NodeStatus.Value(f"NODE_STATUS_{name}"))
        for name in statuses])
    fake.answers["GetRun"] = pb.GetRunResponse(run=run)
    terminal(monkeypatch)

    assert flowplan("status", "wr_2") == 0
    out = capsys.readouterr().out
    assert f"{ESC}34mRUNNING{ESC}0m" in out.splitlines()[0]  # the run's own status
    lines = out.splitlines()
    graph = lines[lines.index("") + 2:-1]  # below the header, a blank line and the titles
    rows = {line.split()[0]: line for line in graph}
    for name, color in statuses.items():
        assert f"{ESC}{color}m{name}" in rows[name.lower()], name

    monkeypatch.setenv("NO_COLOR", "1")
    assert flowplan("status", "wr_2") == 0
    assert ESC not in capsys.readouterr().out


def test_logs_follow_writes_the_bytes_in_order_across_a_reconnect(fake, capsysbinary):
    def log(request, context):
        if request.offset == 0:
            def broken():
                yield pb.GetNodeLogResponse(offset=0, data=b"line 1\n\xff\xfe", attempt=2)
                yield pb.GetNodeLogResponse(offset=9, data=b"line 2", attempt=2)
                context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")
            return broken()
        return [pb.GetNodeLogResponse(offset=15, data=b" end\n", attempt=2)]
    fake.answers["GetNodeLog"] = log

    assert flowplan("logs", "wr_1", "transform", "--follow") == 0
    assert capsysbinary.readouterr().out == b"line 1\n\xff\xfeline 2 end\n"
    requests = fake.requests("GetNodeLog")
    assert [(r.run_id, r.node_name, r.attempt, r.offset, r.follow) for r in requests] == [
        ("wr_1", "transform", 0, 0, True), ("wr_1", "transform", 2, 15, True)]


def test_logs_without_follow_and_as_json(fake, capsysbinary):
    chunks = [pb.GetNodeLogResponse(offset=0, data=b"a\n", attempt=1),
              pb.GetNodeLogResponse(offset=2, data=b"b\n", attempt=1)]
    fake.answers["GetNodeLog"] = chunks
    assert flowplan("logs", "wr_1", "extract", "--attempt", "1") == 0
    assert capsysbinary.readouterr().out == b"a\nb\n"
    request = fake.requests("GetNodeLog")[0]
    assert (request.attempt, request.follow) == (1, False)

    assert flowplan("logs", "wr_1", "extract", "--json") == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert [json_format.Parse(line, pb.GetNodeLogResponse()) for line in lines] == chunks


def test_logs_of_a_node_that_never_started_say_why_there_is_none(fake, capsysbinary):
    fake.answers["GetNodeLog"] = []
    nodes = [pb.NodeRun(name="alert", status=pb.NODE_STATUS_SKIPPED,
                        skip_reason="trigger any_failed: upstream load SUCCEEDED"),
             pb.NodeRun(name="load", status=pb.NODE_STATUS_CANCELLED),
             pb.NodeRun(name="later", status=pb.NODE_STATUS_PENDING),
             pb.NodeRun(name="quiet", status=pb.NODE_STATUS_SUCCEEDED, attempts=[
                 pb.Attempt(number=1, status=pb.ATTEMPT_STATUS_SUCCEEDED)])]
    fake.answers["GetRun"] = pb.GetRunResponse(run=pb.Run(run_id="wr_1", nodes=nodes))
    for node, follow, said in [
            ("alert", False, "it was skipped (trigger any_failed: upstream load SUCCEEDED)"),
            ("alert", True, "it was skipped (trigger any_failed: upstream load SUCCEEDED)"),
            ("load", False, "it was cancelled before it started"),
            ("later", False, "it has not started yet (--follow waits for it)"),
            ("quiet", False, None),  # an empty log: nothing to explain
            ("later", True, None)]:  # --follow ended without it: the daemon stopped
        assert flowplan("logs", "wr_1", node, *(["--follow"] if follow else [])) == 0
        captured = capsysbinary.readouterr()
        assert captured.out == b""
        assert captured.err.decode() == (
            f"flowplan logs: node {node} has no log: {said}\n" if said else ""), node


def test_cancel_resume_pause_and_unpause_send_their_requests(fake, capsys):
    fake.answers["CancelRun"] = pb.CancelRunResponse(run=pb.Run(
        run_id="wr_1", status=pb.RUN_STATUS_RUNNING,
        cancel_requested_at=ts("2026-01-02T03:00:00Z")))
    assert flowplan("cancel", "wr_1") == 0
    assert fake.requests("CancelRun")[0].run_id == "wr_1"
    assert capsys.readouterr().out == (
        "run wr_1: cancel requested, its running nodes are stopping (flowplan watch wr_1)\n")

    fake.answers["ResumeRun"] = lambda request, context: pb.ResumeRunResponse(
        run_id="" if request.dry_run else "wr_2", node_names=["transform"], plan_version=4)
    assert flowplan("resume", "wr_1", "--node", "transform", "--node", "load",
                    "--plan-version", "4", "--dry-run") == 0
    request = fake.requests("ResumeRun")[0]
    assert (request.run_id, list(request.node_names), request.plan_version,
            request.dry_run) == ("wr_1", ["transform", "load"], 4, True)
    assert flowplan("resume", "wr_1", "--node", "transform", "--remarks", "fixed") == 0
    request = fake.requests("ResumeRun")[1]
    assert (request.plan_version, request.dry_run, request.remarks) == (0, False, "fixed")
    assert capsys.readouterr().out.splitlines() == [
        "dry run: resuming run wr_1 would start transform and every node downstream, with"
        " plan version 4",
        "resumed run wr_1 as wr_2: starting transform and every node downstream, with plan"
        " version 4",
    ]

    fake.answers["SetSchedulingStatus"] = lambda request, context: pb.SetSchedulingStatusResponse(
        workflow=pb.Workflow(name=request.workflow, schedule=DAILY.schedule,
                             scheduling_enabled=request.enabled,
                             next_tick=DAILY.next_tick if request.enabled else None))
    assert flowplan("pause", "daily_sales") == 0
    assert flowplan("unpause", "daily_sales") == 0
    assert [(r.workflow, r.enabled) for r in fake.requests("SetSchedulingStatus")] == [
        ("daily_sales", False), ("daily_sales", True)]
    assert capsys.readouterr().out.splitlines() == [
        "daily_sales: scheduling off",
        "daily_sales: scheduling on, next tick 2026-01-02T18:00:00Z",
    ]

    fake.answers["CancelBackfill"] = pb.CancelBackfillResponse(
        backfill=pb.Backfill(backfill_id="bf_1", status=pb.BACKFILL_STATUS_CANCELLED),
        cancelled_run_ids=["wr_5", "wr_6"])
    assert flowplan("cancel-backfill", "bf_1", "--json") == 0
    assert fake.requests("CancelBackfill")[0].backfill_id == "bf_1"
    assert json_format.Parse(capsys.readouterr().out, pb.CancelBackfillResponse()) == (
        fake.answers["CancelBackfill"])
    assert flowplan("cancel-backfill", "bf_1") == 0
    assert capsys.readouterr().out.splitlines() == [
        "backfill bf_1 CANCELLED: cancelling 2 unfinished runs", "  wr_5", "  wr_6"]


# -- backfills ---------------------------------------------------------------------------

def test_backfill_sends_the_range_and_options_and_lists_a_dry_run(fake, capsys):
    times = [ts("2026-01-01T18:00:00Z"), ts("2026-01-02T18:00:00Z")]
    fake.answers["StartBackfill"] = pb.StartBackfillResponse(logical_times=times)
    assert flowplan("backfill", "daily_sales", "--from", "2026-01-01", "--to",
                    "2026-01-03T12:00+08:00", "--parallel", "2", "--queue", "batch",
                    "--remarks", "Q4 fix", "--failure-email", "a@example.com",
                    "--failure-email", "b@example.com", "--dry-run",
                    "--reprocess", "failed") == 0
    request = fake.requests("StartBackfill")[0]
    assert request.start_time.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 1, tzinfo=UTC)
    assert request.end_time.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 3, 4, tzinfo=UTC)
    assert (request.workflow, request.max_parallel_runs, request.queue, request.remarks,
            list(request.failure_emails), request.dry_run, request.reprocess) == (
        "daily_sales", 2, "batch", "Q4 fix", ["a@example.com", "b@example.com"], True,
        pb.REPROCESS_FAILED)
    assert capsys.readouterr().out.splitlines() == [
        "dry run: a backfill of daily_sales would start 2 runs, first 2026-01-01T18:00:00Z,"
        " last 2026-01-02T18:00:00Z:",
        "  2026-01-01T18:00:00Z",
        "  2026-01-02T18:00:00Z",
    ]

    assert flowplan("backfill", "daily_sales", "--from", "2026-01-01T00:00:00Z",
                    "--to", "2026-01-02") == 0
    request = fake.requests("StartBackfill")[1]
    assert (request.max_parallel_runs, request.dry_run, request.reprocess) == (
        0, False, pb.REPROCESS_ALL)
    # a date alone as --to is that whole day
    assert request.end_time.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 2, 23, 59, 59, 999999,
                                                               tzinfo=UTC)
    assert capsys.readouterr().out.startswith("nothing to backfill")

    fake.answers["StartBackfill"] = pb.StartBackfillResponse(logical_times=times[:1])
    assert flowplan("backfill", "daily_sales", "--from", "2026-01-01", "--to", "2026-01-01",
                    "--dry-run") == 0
    assert capsys.readouterr().out.startswith(
        "dry run: a backfill of daily_sales would start 1 run, first")


def _backfill_progress(fake: FakeDaemon, final: int) -> None:
    fake.answers["StartBackfill"] = pb.StartBackfillResponse(
        backfill_id="bf_1", run_ids=["wr_1", "wr_2", "wr_3"],
        logical_times=[ts("2026-01-01T00:00:00Z"), ts("2026-01-02T00:00:00Z"),
                       ts("2026-01-03T00:00:00Z")])
    steps = [
        (pb.BACKFILL_STATUS_RUNNING, pb.BackfillProgress(total=3, pending=3)),
        (pb.BACKFILL_STATUS_RUNNING, pb.BackfillProgress(total=3, succeeded=1, running=1,
                                                         pending=1)),
        (pb.BACKFILL_STATUS_RUNNING, pb.BackfillProgress(total=3, succeeded=1, running=1,
                                                         pending=1)),
        (final, pb.BackfillProgress(total=3, succeeded=2, failed=1)
         if final == pb.BACKFILL_STATUS_FAILED else pb.BackfillProgress(total=3, succeeded=3)),
    ]

    def get(request, context):
        status, progress = steps[min(len(fake.requests("GetBackfill")) - 1, len(steps) - 1)]
        return pb.GetBackfillResponse(backfill=pb.Backfill(
            backfill_id=request.backfill_id, status=status, progress=progress))
    fake.answers["GetBackfill"] = get


def test_backfill_wait_prints_progress_lines_when_not_a_terminal(fake, capsys):
    _backfill_progress(fake, pb.BACKFILL_STATUS_SUCCEEDED)
    assert flowplan("backfill", "daily_sales", "--from", "2026-01-01", "--to", "2026-01-03",
                    "--wait") == 0
    assert {r.backfill_id for r in fake.requests("GetBackfill")} == {"bf_1"}
    assert len(fake.requests("GetBackfill")) == 4
    assert capsys.readouterr().out.splitlines() == [
        "started backfill bf_1 of daily_sales: 3 runs, 2026-01-01T00:00:00Z .."
        " 2026-01-03T00:00:00Z",
        "2026-01-02T03:00:00Z backfill bf_1 RUNNING: 0/3 finished (0 succeeded, 0 failed,"
        " 0 running, 3 pending)",
        "2026-01-02T03:00:00Z backfill bf_1 RUNNING: 1/3 finished (1 succeeded, 0 failed,"
        " 1 running, 1 pending)",
        "2026-01-02T03:00:00Z backfill bf_1 SUCCEEDED: 3/3 finished (3 succeeded, 0 failed,"
        " 0 running, 0 pending)",
        "backfill bf_1 SUCCEEDED: 3 runs (3 succeeded, 0 failed, 0 running, 0 pending)",
    ]


def test_backfill_wait_draws_a_bar_on_a_terminal_and_fails_with_a_failed_run(
        fake, capsys, monkeypatch):
    _backfill_progress(fake, pb.BACKFILL_STATUS_FAILED)
    terminal(monkeypatch)
    assert flowplan("backfill", "daily_sales", "--from", "2026-01-01", "--to", "2026-01-03",
                    "--wait") == 1
    out = capsys.readouterr().out
    assert out.count(f"{ESC}?25l") == out.count(f"{ESC}?25h") == 1  # no cursor while drawing
    bar, after = out.split(f"{ESC}?25l", 1)[1].split(f"{ESC}?25h", 1)
    draws = bar.split(f"\r{ESC}2K")  # redrawn in place on its line
    assert len(draws) == 5  # one per poll, and the last one again as it ends
    assert draws[0].startswith(f"[{ESC}2m" + "░" * 40)
    assert draws[-1].startswith("[" + f"{ESC}32m" + "█" * 27 + f"{ESC}0m{ESC}31m" + "█" * 13)
    assert draws[-1].endswith("] 3/3  2 succeeded, 1 failed, 0 running, 0 pending\n")
    assert after.splitlines() == [
        f"backfill bf_1 {ESC}31mFAILED{ESC}0m: 3 runs (2 succeeded, 1 failed, 0 running,"
        " 0 pending)",
        "failed runs: flowplan runs --backfill bf_1 --status failed"]


def test_backfill_wait_json_prints_one_object_per_change(fake, capsys):
    _backfill_progress(fake, pb.BACKFILL_STATUS_SUCCEEDED)
    assert flowplan("backfill", "daily_sales", "--from", "2026-01-01", "--to", "2026-01-03",
                    "--wait", "--json") == 0
    lines = capsys.readouterr().out.splitlines()
    assert json_format.Parse(lines[0], pb.StartBackfillResponse()).backfill_id == "bf_1"
    progress = [json_format.Parse(line, pb.GetBackfillResponse()).backfill.progress.succeeded
                for line in lines[1:]]
    assert progress == [0, 1, 3]


# -- errors, authentication, transport ---------------------------------------------------

def test_errors_print_the_code_the_message_and_each_field_violation(fake, capsys):
    fake.answers["StartBackfill"] = lambda request, context: abort_bad_request(
        context, "2 fields are invalid", ("end_time", "before start_time"),
        ("failure_emails[1]", "not an e-mail address: 'bob'"))
    assert flowplan("backfill", "daily_sales", "--from", "2026-01-01", "--to", "2026-01-05",
                    "--failure-email", "a@example.com", "--failure-email", "bob") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "error: INVALID_ARGUMENT: 2 fields are invalid",
        "  end_time: before start_time",
        "  failure_emails[1]: not an e-mail address: 'bob'",
    ]

    # one bad field: the daemon's message is its description, printed once
    fake.answers["ResumeRun"] = lambda request, context: abort_bad_request(
        context, "node 'buidl' is not a node of run wr_1",
        ("node_names[0]", "node 'buidl' is not a node of run wr_1"))
    assert flowplan("resume", "wr_1", "--node", "buidl") == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: INVALID_ARGUMENT: node 'buidl' is not a node of run wr_1"]

    fake.answers["GetRun"] = lambda request, context: context.abort(
        grpc.StatusCode.NOT_FOUND, f"no run {request.run_id}")
    assert flowplan("status", "wr_nope") == 1
    assert capsys.readouterr().err == "error: NOT_FOUND: no run wr_nope\n"


def test_a_backfill_range_given_backwards_is_refused_in_the_options_names(fake, capsys):
    assert flowplan("backfill", "daily_sales", "--from", "2026-01-05", "--to",
                    "2026-01-01") == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "flowplan backfill: error: --to 2026-01-01T23:59:59.999Z is before --from"
        " 2026-01-05T00:00:00Z: give the earlier time as --from"), err
    assert not fake.requests("StartBackfill")  # nothing sent


def test_the_bearer_token_comes_from_the_token_file(fake, capsys, tmp_path, monkeypatch):
    fake.answers["ListWorkflows"] = pb.ListWorkflowsResponse()
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    assert flowplan("workflows", "--token-file", str(token)) == 0
    assert fake.metadata[-1]["authorization"] == "Bearer s3cret"

    monkeypatch.setenv("FLOWPLAN_TOKEN_FILE", str(token))
    assert flowplan("workflows") == 0
    assert fake.metadata[-1]["authorization"] == "Bearer s3cret"
    monkeypatch.delenv("FLOWPLAN_TOKEN_FILE")
    assert flowplan("workflows") == 0
    assert "authorization" not in fake.metadata[-1]
    assert capsys.readouterr().out == "no workflows\n" * 3


def test_unauthenticated_exits_1_with_a_hint(fake, capsys, tmp_path):
    def check(request, context):
        if dict(context.invocation_metadata()).get("authorization") != "Bearer right":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        return pb.ListWorkflowsResponse()
    fake.answers["ListWorkflows"] = check
    assert flowplan("workflows") == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: UNAUTHENTICATED: missing or wrong bearer token",
        "hint: the daemon wants a bearer token: --token-file FILE or $FLOWPLAN_TOKEN_FILE",
    ]
    (tmp_path / "token").write_text("wrong")
    assert flowplan("workflows", "--token-file", str(tmp_path / "token")) == 1
    assert f"refused the token in {tmp_path / 'token'}" in capsys.readouterr().err


def test_no_value_people_gave_reaches_the_terminal_as_a_control_code(fake, capsys,
                                                                     monkeypatch):
    """Remarks, params and a daemon's message are what someone typed: an escape in them
    would retitle, clear or recolour the reader's terminal, or hide text behind a \\r.
    Each is shown as its escape; on a terminal only Paint's colour codes go through."""
    hostile = "ok\x1b]0;pwned\x07\x1b[2J\x08X\x9b\x1b[8mhidden"  # 8m: concealed
    shown = "ok\\x1b]0;pwned\\x07\\x1b[2J\\x08X\\x9b\\x1b[8mhidden"
    fake.answers["GetRun"] = pb.GetRunResponse(run=pb.Run(
        run_id="wr_1", workflow="w", status=pb.RUN_STATUS_FAILED, remarks=hostile,
        trigger=pb.RUN_TRIGGER_MANUAL, logical_time=ts("2026-01-02T02:00:00Z")))

    def refuse(request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, f"no workflow '{hostile}\rX'")
    fake.answers["StartRun"] = refuse
    assert flowplan("status", "wr_1") == 0
    assert flowplan("run", "w") == 1
    captured = capsys.readouterr()
    assert f"remarks    {shown}" in captured.out
    assert f"error: NOT_FOUND: no workflow '{shown}\\rX'" in captured.err
    assert not any(c in captured.out + captured.err for c in "\x1b\x07\x08\r\x9b")
    terminal(monkeypatch)
    assert flowplan("status", "wr_1") == 0
    out = capsys.readouterr().out
    assert f"remarks    {shown}" in out and "\x1b[" in out  # the status's colour


def test_exit_3_with_a_hint_when_nothing_listens(fake, capsys):
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert flowplan("runs", "--address", f"127.0.0.1:{port}") == 3
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: UNAVAILABLE: ")
    assert err[1] == (f"hint: no answer from 127.0.0.1:{port} (plaintext); is the daemon"
                      " running? Start one with 'flowplan up' or 'flowplan serve'")


def test_exit_3_when_the_daemon_that_answered_goes_away_for_good(fake, capsys, monkeypatch):
    """`watch` (as `logs -f`, `run --wait`) had an answer, then the daemon died and never
    came back: when the retries give up, that is 'nothing listens' (3), not a failed run
    (1), so a CI job can tell the two apart."""
    monkeypatch.setattr(connection, "RECONNECT_GIVE_UP_SECONDS", 1.0)
    own = FakeDaemon()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_WorkflowServiceServicer_to_server(own, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    gone = threading.Event()

    def watch(request, context):
        def then_gone():
            yield change(1, pb.RUN_STATUS_RUNNING)
            gone.set()
            while context.is_active():
                time.sleep(0.01)
        return then_gone()
    own.answers["WatchRun"] = watch
    threading.Thread(target=lambda: (gone.wait(30), server.stop(grace=None)),
                     daemon=True).start()
    assert flowplan("watch", "wr_1", "--address", f"127.0.0.1:{port}") == 3
    err = capsys.readouterr().err
    assert f"hint: no answer from 127.0.0.1:{port} (plaintext); is the daemon running?" in err


def test_exit_3_when_the_deadline_passes_before_a_connection(fake, capsys):
    with socket.socket() as silent:  # accepts TCP (the backlog) but never speaks HTTP/2
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        assert flowplan("workflows", "--address", address, "--timeout", "0.3") == 3
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: DEADLINE_EXCEEDED")
    assert err[1].startswith(f"hint: no answer from {address} (plaintext); is the daemon")


def test_a_deadline_after_connecting_is_a_server_error(fake, capsys):
    def slow(request, context):
        while context.is_active():
            time.sleep(0.01)
        return pb.GetRunResponse()
    fake.answers["GetRun"] = slow
    fake.answers["ListWorkflows"] = pb.ListWorkflowsResponse()
    assert flowplan("status", "wr_1", "--timeout", "0.3") == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: DEADLINE_EXCEEDED")
    assert err[1] == "hint: no answer within 0.3s; a longer --timeout may help"


def test_usage_errors_exit_2(fake, capsys, tmp_path):
    for args in (["run", "w", "--param", "novalue"], ["run", "w", "--logical-time", "soon"],
                 ["backfill", "w", "--from", "2026-01-01"], ["runs", "--status", "done"],
                 ["runs", "--limit", "-1"], ["logs", "wr_1", "n", "--attempt", "0"],
                 ["status", "wr_1", "--timeout", "0"]):
        with pytest.raises(SystemExit) as exited:
            flowplan(*args)
        assert exited.value.code == 2, args
    capsys.readouterr()
    for flag, value, args in (  # times that are not within the calendar once in UTC
            ("--logical-time", "0001-01-01T00:00+01:00", ["run", "w"]),
            ("--from", "0001-01-01T00:00+05:00", ["backfill", "w", "--to", "0001-01-02"]),
            ("--to", "9999-12-31T23:00-05:00", ["backfill", "w", "--from", "9999-12-31"])):
        with pytest.raises(SystemExit) as exited:
            flowplan(*args, flag, value)
        assert exited.value.code == 2, flag
        assert f"argument {flag}: '{value}' is outside 0001-01-01T00:00Z.." \
            in capsys.readouterr().err, flag
    assert flowplan("runs", "--token-file", str(tmp_path / "missing")) == 2
    assert "token file" in capsys.readouterr().err
    (tmp_path / "empty").write_text("\n")
    assert flowplan("runs", "--token-file", str(tmp_path / "empty")) == 2
    assert flowplan("runs", "--tls-cert", str(tmp_path / "empty")) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    (tmp_path / "accented").write_text("tok\u00e9n\n")  # gRPC takes ASCII in a header only
    assert flowplan("runs", "--token-file", str(tmp_path / "accented")) == 2
    assert "the token must be one line of ASCII characters" in capsys.readouterr().err
    (tmp_path / "hostname").write_text("box\n")  # not a certificate at all
    assert flowplan("runs", "--tls-ca", str(tmp_path / "hostname")) == 2
    assert f"--tls-ca {tmp_path / 'hostname'}: not a PEM file with a certificate" \
        in capsys.readouterr().err
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\nx\n"
                                       "-----END CERTIFICATE-----\n")
    (tmp_path / "key.pem").write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nx\n"
                                      "-----END ENCRYPTED PRIVATE KEY-----\n")
    assert flowplan("runs", "--tls-cert", str(tmp_path / "cert.pem"),
                    "--tls-key", str(tmp_path / "key.pem")) == 2
    assert "the key is encrypted, and gRPC takes no passphrase" in capsys.readouterr().err
    assert fake.calls == []


def test_a_mistyped_command_is_refused_with_the_one_meant(capsys):
    for argv, hint in [(["rnu", "daily_sales"], "; did you mean 'run'?"),
                       (["backfils"], "; did you mean 'backfills'?"), (["xyzzy"], ""),
                       (["--address", "127.0.0.1:1", "stauts", "wr_1"],  # options first
                        "; did you mean 'status'?")]:
        with pytest.raises(SystemExit) as exited:
            flowplan(*argv)
        assert exited.value.code == 2
        last = capsys.readouterr().err.splitlines()[-1]
        word = next(a for a in argv if a.isalpha())
        assert last.startswith(f"flowplan: error: unknown command '{word}'{hint} (the"
                               " commands: check, compile,"), last
        assert last.endswith("; flowplan --help says what each does)")
    with pytest.raises(SystemExit):  # a command's own commands alike
        flowplan("hooks", "instal", ".git")
    assert capsys.readouterr().err.splitlines()[-1] == (
        "flowplan hooks: error: unknown command 'instal'; did you mean 'install'? (the"
        " commands: install; flowplan hooks --help says what each does)")


def test_a_usage_error_prints_that_commands_usage(fake, capsys, tmp_path):
    (tmp_path / "empty").write_text("\n")
    assert flowplan("backfill-status", "bf_1", "--token-file", str(tmp_path / "empty")) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: flowplan backfill-status [-h]"), err
    assert "\nflowplan backfill-status: error: token file" in err
    with pytest.raises(SystemExit):
        flowplan("notifications", "--status", "lost")
    err = capsys.readouterr().err
    assert err.startswith("usage: flowplan notifications [-h]"), err
    assert "argument --status: invalid choice: 'lost'" in err
    assert fake.calls == []


def test_mutual_tls(tmp_path, capsys, monkeypatch):
    pems = certificates(tmp_path)
    monkeypatch.setattr(cli, "tune_gc", lambda: None)
    daemon = FakeDaemon()
    daemon.answers["ListWorkflows"] = pb.ListWorkflowsResponse(workflows=[ADHOC])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_WorkflowServiceServicer_to_server(daemon, server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [(pems["server_key"], pems["server_cert"])], root_certificates=pems["ca"],
        require_client_auth=True))
    server.start()
    try:
        tls = ["--address", f"127.0.0.1:{port}", "--tls-ca", str(tmp_path / "ca.pem")]
        assert flowplan("workflows", *tls, "--tls-cert", str(tmp_path / "client_cert.pem"),
                        "--tls-key", str(tmp_path / "client_key.pem"), "--json") == 0
        assert json_format.Parse(capsys.readouterr().out, pb.ListWorkflowsResponse()) == (
            daemon.answers["ListWorkflows"])
        assert flowplan("workflows", *tls) == 3  # no client certificate: the handshake fails
        assert "(TLS)" in capsys.readouterr().err
    finally:
        server.stop(grace=None)


@pytest.mark.parametrize(("moment", "shown"), [
    (datetime(2026, 1, 2, 2, 0, tzinfo=UTC), "2026-01-02T02:00:00Z"),
    (datetime(2026, 1, 2, 2, 0, 0, 250_000, tzinfo=UTC), "2026-01-02T02:00:00.250Z"),
    (datetime(2026, 1, 2, 2, 0, 0, 999, tzinfo=UTC), "2026-01-02T02:00:00Z"),  # under 1 ms
    (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z"),
])
def test_times_are_shown_with_milliseconds_only_when_not_zero(moment, shown):
    assert render.stamp(moment) == shown


def _lost_then_refused(tries: list[str], field: str
                       ) -> Callable[[Message, grpc.ServicerContext], Any]:
    """A cancel whose first try reached the daemon, which went down before answering
    (UNAVAILABLE); tried again, it is refused: the run or backfill has finished now. Each
    request's `field` goes into `tries`."""
    def cancel(request: Message, context: grpc.ServicerContext) -> Any:
        tries.append(getattr(request, field))
        if len(tries) == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the daemon is shutting down")
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "already finished (CANCELLED)")

    return cancel


def test_a_cancel_whose_answer_a_restart_lost_answers_the_cancelled_run(
        daemon_server: tuple[FakeDaemon, int]) -> None:
    """The first CancelRun reached the daemon, which went down before answering; the call
    tried again is refused (the run is finished now): the client answers the run."""
    fake, port = daemon_server
    fake.reset()
    tries: list[str] = []
    fake.answers["CancelRun"] = _lost_then_refused(tries, "run_id")
    fake.answers["GetRun"] = pb.GetRunResponse(run=pb.Run(run_id="wr_1",
                                                          status=pb.RUN_STATUS_CANCELLED))
    quick = Retry(first_delay=0.01, max_delay=0.01, give_up_after=5)
    with Client(f"127.0.0.1:{port}", retry=quick, environ={}) as client:
        run = client.cancel_run("wr_1")
        assert (run.run_id, run.status, tries) == ("wr_1", pb.RUN_STATUS_CANCELLED,
                                                   ["wr_1", "wr_1"])
        fake.answers["GetRun"] = pb.GetRunResponse(run=pb.Run(
            run_id="wr_1", status=pb.RUN_STATUS_SUCCEEDED))  # it ended otherwise: the error
        tries.clear()
        with pytest.raises(ClientError) as refused:
            client.cancel_run("wr_1")
        assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION
        tries[:] = ["first"]  # not tried again: a refusal is the answer
        with pytest.raises(ClientError):
            client.cancel_run("wr_1")
        assert len(fake.requests("GetRun")) == 2


def test_a_backfill_cancel_whose_answer_a_restart_lost_answers_the_cancelled_backfill(
        daemon_server: tuple[FakeDaemon, int]) -> None:
    """As for a run: the repeat is refused (the backfill is CANCELLED now); the client
    answers the backfill with its CANCELLED runs, read page by page."""
    fake, port = daemon_server
    fake.reset()
    tries: list[str] = []

    def runs(request: Message, context: grpc.ServicerContext) -> Any:
        assert (request.backfill_id, request.status) == (  # type: ignore[attr-defined]
            "bf_1", pb.RUN_STATUS_CANCELLED)
        if request.page_token:  # type: ignore[attr-defined]
            return pb.ListRunsResponse(runs=[pb.Run(run_id="wr_1")])
        return pb.ListRunsResponse(runs=[pb.Run(run_id="wr_3"), pb.Run(run_id="wr_2")],
                                   next_page_token="more")

    fake.answers["CancelBackfill"] = _lost_then_refused(tries, "backfill_id")
    fake.answers["ListRuns"] = runs
    fake.answers["GetBackfill"] = pb.GetBackfillResponse(backfill=pb.Backfill(
        backfill_id="bf_1", status=pb.BACKFILL_STATUS_CANCELLED))
    quick = Retry(first_delay=0.01, max_delay=0.01, give_up_after=5)
    with Client(f"127.0.0.1:{port}", retry=quick, environ={}) as client:
        answer = client.cancel_backfill("bf_1")
        assert (answer.backfill.status, list(answer.cancelled_run_ids), tries) == (
            pb.BACKFILL_STATUS_CANCELLED, ["wr_1", "wr_2", "wr_3"], ["bf_1", "bf_1"])
        fake.answers["GetBackfill"] = pb.GetBackfillResponse(backfill=pb.Backfill(
            backfill_id="bf_1", status=pb.BACKFILL_STATUS_SUCCEEDED))  # ended otherwise
        tries.clear()
        with pytest.raises(ClientError) as refused:
            client.cancel_backfill("bf_1")
        assert refused.value.code is grpc.StatusCode.FAILED_PRECONDITION


def test_the_async_client_settles_a_repeated_backfill_cancel_alike(
        daemon_server: tuple[FakeDaemon, int]) -> None:
    fake, port = daemon_server
    fake.reset()
    tries: list[str] = []
    fake.answers["CancelBackfill"] = _lost_then_refused(tries, "backfill_id")
    fake.answers["ListRuns"] = pb.ListRunsResponse(runs=[pb.Run(run_id="wr_9")])
    fake.answers["GetBackfill"] = pb.GetBackfillResponse(backfill=pb.Backfill(
        backfill_id="bf_1", status=pb.BACKFILL_STATUS_CANCELLED))
    quick = Retry(first_delay=0.01, max_delay=0.01, give_up_after=5)

    async def cancel_twice() -> pb.CancelBackfillResponse:
        async with AsyncClient(f"127.0.0.1:{port}", retry=quick, environ={}) as client:
            return await client.cancel_backfill("bf_1")

    answer = asyncio.run(cancel_twice())
    assert (list(answer.cancelled_run_ids), tries) == (["wr_9"], ["bf_1", "bf_1"])


def test_the_async_client_cancels_a_stream_given_up_before_its_headers(
        daemon_server: tuple[FakeDaemon, int]) -> None:
    """A watch cancelled while it waits for the stream's headers (a daemon that sends none
    before its first change) cancels the call, so the daemon stops following for it."""
    fake, port = daemon_server
    fake.reset()
    ended = threading.Event()

    def hold(request: Message, context: grpc.ServicerContext) -> list[Any]:
        context.add_callback(ended.set)  # the call's end: cancelled, here
        ended.wait(10)
        return []

    fake.answers["WatchRun"] = hold

    async def give_up() -> None:
        async with AsyncClient(f"127.0.0.1:{port}", environ={}) as client:
            watch = asyncio.create_task(anext(aiter(client.watch_run("wr_1"))))
            deadline = time.monotonic() + 10
            while not fake.requests("WatchRun"):
                assert time.monotonic() < deadline, "the watch never reached the daemon"
                await asyncio.sleep(0.01)
            watch.cancel()
            while not ended.is_set():  # the channel is still open: only a cancel ends it
                assert time.monotonic() < deadline, "the call was not cancelled"
                await asyncio.sleep(0.01)

    asyncio.run(give_up())
