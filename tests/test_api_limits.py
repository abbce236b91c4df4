"""The API's limits against a real `flowplan serve`: the size of params and of list pages,
idle connections under a low open-file limit, malformed request bodies and oversized ids."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import MakeRepo, wait_until
from daemon_harness import Daemon, flowplan, publish, running_daemon
from google.protobuf import struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from flowplan.daemon.server.service import MAX_PARAMS_BYTES, MAX_REMARKS_CHARS, PAGE_BYTES
from flowplan.v1 import workflow_service_pb2 as pb
from flowplan.v1 import workflow_service_pb2_grpc as pb_grpc

FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
    "workflows/echo.yaml": "name: echo\nparams: {blob: ''}\nnodes:\n"
                           "  - {name: a, command: 'true'}\n",
    "workflows/yearly.yaml": "name: yearly\nschedule: {cron: '0 2 1 1 *', timezone: UTC,"
                             " enabled: false}\nnodes:\n  - {name: y, command: 'true'}\n",
    # 20,000 ticks of 10 nodes: the largest backfill, seconds to create
    "workflows/minutely.yaml": "name: minutely\nschedule: {every: 1m, timezone: UTC, enabled:"
                               " false}\nnodes:\n" + "".join(
                                   f"  - {{name: n{i}, command: 'true'}}\n" for i in range(10)),
    # 16 MB of log, then it stays running (followed) until cancelled
    "workflows/chatty.yaml": "name: chatty\nnodes:\n  - {name: talk, command: 'head -c"
                             " 16000000 /dev/zero | tr \"\\\\0\" x; sleep 120'}\n",
}


@pytest.fixture
def deployed(make_repo: MakeRepo, tmp_path: Path) -> tuple[Path, Path, Path]:
    repo = make_repo(FILES)
    publish(repo, tmp_path / "store")
    return repo, tmp_path / "store", tmp_path / "state"


def blob(size: int) -> struct_pb2.Struct:
    """Params of exactly `size` bytes of compact JSON."""
    params = struct_pb2.Struct()
    params.update({"blob": "x" * (size - len('{"blob":""}'))})
    return params


def refusal(error: grpc.RpcError) -> tuple[grpc.StatusCode, str, list[str]]:
    """The code, message and BadRequest field names of a failed call."""
    fields = []
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return error.code(), error.details() or "", fields  # type: ignore[attr-defined]


def every_page(d: Daemon, method: str, request: type[Any], field: str
               ) -> tuple[list[Any], int]:
    """Every item of a list RPC, 1000 asked a page, each page checked to stay under
    PAGE_BYTES (give or take the answer's own fields); and how many pages came."""
    listed: list[Any] = []
    token, pages = "", 0
    while True:
        page = d.call(method, request(page_size=1000, page_token=token))
        assert page.ByteSize() <= PAGE_BYTES + 64 * 1024
        listed += getattr(page, field)
        pages += 1
        token = page.next_page_token
        if not token:
            return listed, pages


def test_a_page_of_long_notifications_fits_a_default_client(
        deployed: tuple[Path, Path, Path]) -> None:
    """An on_failure e-mail may hold 50 nodes' log tails (~200 KB): 60 of 100 KB, over 6 MB
    together, come on pages under 1 MiB each, newest first, none lost or repeated."""
    _, store, state = deployed
    with running_daemon(store, state) as d:  # the state database, made
        assert d.stop() == 0
    db = sqlite3.connect(state / "state.sqlite3")
    with db:
        for n in range(60):
            db.execute(
                "INSERT INTO outbox (key, kind, run_id, recipients, subject, body, message_id,"
                " status, created_at) VALUES (?, 'on_failure', 'wr_1', '[\"a@example.com\"]',"
                " ?, ?, ?, 'SENT', '2026-01-01T00:00:00.000000+00:00')",
                (f"k{n}", f"failed {n}", "log tail\n" * 12_500, f"<m{n}@flowplan>"))
    db.close()
    with running_daemon(store, state) as d:  # the harness's channel: a default client
        listed, pages = every_page(d, "ListNotifications", pb.ListNotificationsRequest,
                                   "notifications")
        assert [n.subject for n in listed] == [f"failed {n}" for n in reversed(range(60))]
        assert pages >= 6


def test_params_are_capped_and_pages_fit_a_default_client(
        deployed: tuple[Path, Path, Path]) -> None:
    _, store, state = deployed
    with running_daemon(store, state) as d:
        with pytest.raises(grpc.RpcError) as refused:
            d.call("StartRun", pb.StartRunRequest(workflow="echo",
                                                  params=blob(MAX_PARAMS_BYTES + 1)))
        code, message, fields = refusal(refused.value)
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["params"])
        assert f"{MAX_PARAMS_BYTES:,}" in message
        for name, request, field in [
                ("StartRun", pb.StartRunRequest(workflow="echo", remarks="r" * 4097), "remarks"),
                ("StartBackfill", pb.StartBackfillRequest(
                    workflow="echo", failure_emails=["a@example.com"] * 101, dry_run=True,
                    start_time=Timestamp(seconds=0), end_time=Timestamp(seconds=86_400)),
                 "failure_emails")]:
            with pytest.raises(grpc.RpcError) as refused:
                d.call(name, request)
            assert refusal(refused.value)[::2] == (grpc.StatusCode.INVALID_ARGUMENT, [field])
        run = d.call("StartRun", pb.StartRunRequest(workflow="echo",
                                                    params=blob(MAX_PARAMS_BYTES))).run
        d.wait_run(run.run_id)
        assert d.stop() == 0
    # 90 runs at the cap (5.9 MB together) and 3 stored before it with 3 MB params each:
    # one page of them is more than a default client (4 MB) receives; 150 small ones after
    db = sqlite3.connect(state / "state.sqlite3")
    columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    copy = ", ".join(":run_id" if c == "run_id" else "coalesce(:params, params)"
                     if c == "params" else c for c in columns)
    huge = json.dumps({"blob": "y" * 3_000_000})
    with db:
        for n in range(243):
            db.execute(f"INSERT INTO runs ({', '.join(columns)}) SELECT {copy} FROM runs"
                       " WHERE run_id = :original",
                       {"run_id": f"{run.run_id}{n:03d}", "original": run.run_id,
                        "params": huge if 90 <= n < 93 else '{"blob": ""}' if n >= 93
                        else None})
    db.close()
    with running_daemon(store, state) as d:  # the harness's channel: a default client
        newest = d.call("ListRuns", pb.ListRunsRequest()).runs  # 150 small ones first
        assert len(newest) == 100  # page_size 0: the default the proto states
        listed, pages = every_page(d, "ListRuns", pb.ListRunsRequest, "runs")
        assert len(listed) == 244 and len({r.run_id for r in listed}) == 244 and pages > 5
        assert [r.run_id for r in listed] == sorted((r.run_id for r in listed), reverse=True)
        by_id = {r.run_id: r for r in listed}
        for n in range(90, 93):  # listed without the params too big to list
            assert not by_id[f"{run.run_id}{n:03d}"].params.fields
        assert by_id[f"{run.run_id}000"].params.ByteSize() > 60_000
        whole = d.call("GetRun", pb.GetRunRequest(run_id=f"{run.run_id}090")).run
        assert len(whole.params["blob"]) == 3_000_000
        shown = flowplan("runs", "--limit", "0", "--json", "--address", d.address)
        assert len(json.loads(shown.stdout)["runs"]) == 244


def test_a_backfill_whose_caller_timed_out_before_its_commit_is_not_created(
        deployed: tuple[Path, Path, Path]) -> None:
    """Told DEADLINE_EXCEEDED, a client would start it again: it must not exist twice."""
    _, store, state = deployed
    with running_daemon(store, state) as d:
        request = pb.StartBackfillRequest(workflow="minutely", start_time=Timestamp(
            seconds=86_400), end_time=Timestamp(seconds=86_400 + 60 * 19_999))
        with pytest.raises(grpc.RpcError) as late:
            d.call("StartBackfill", request, timeout=0.3)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
        wait_until(lambda: "none was created" in d.output(), "the abandoned backfill rolled back",
                   timeout=60)
        assert not d.call("ListBackfills", pb.ListBackfillsRequest()).backfills
        assert not d.call("ListRuns", pb.ListRunsRequest()).runs
        answer = d.call("StartBackfill", request, timeout=60)  # with time enough: created
        assert len(answer.run_ids) == 20_000


def test_remarks_stored_before_the_cap_are_cut_in_lists(
        deployed: tuple[Path, Path, Path]) -> None:
    _, store, state = deployed
    with running_daemon(store, state) as d:
        at_cap = "r" * MAX_REMARKS_CHARS  # what StartRun accepts at most: listed whole
        run = d.call("StartRun", pb.StartRunRequest(workflow="echo", remarks=at_cap)).run
        d.wait_run(run.run_id)
        backfill = d.call("StartBackfill", pb.StartBackfillRequest(
            workflow="yearly", start_time=Timestamp(seconds=0),
            end_time=Timestamp(seconds=86_400), remarks=at_cap))
        for run_id in backfill.run_ids:
            d.wait_run(run_id)
        assert d.stop() == 0
    huge = "é" * 1_000_000  # stored before the cap existed
    db = sqlite3.connect(state / "state.sqlite3")
    columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    copy = ", ".join({"run_id": ":run_id", "remarks": ":remarks"}.get(c, c) for c in columns)
    with db:
        db.execute(f"INSERT INTO runs ({', '.join(columns)}) SELECT {copy} FROM runs"
                   " WHERE run_id = :original",
                   {"run_id": run.run_id + "x", "original": run.run_id, "remarks": huge})
        db.execute("UPDATE backfills SET remarks = ?", (huge,))
    db.close()
    with running_daemon(store, state) as d:
        listed: dict[str, str] = {}
        token = ""
        while True:  # every page: a 1 MB remark listed whole would take one to itself
            page = d.call("ListRuns", pb.ListRunsRequest(workflow="echo", page_token=token))
            listed.update((r.run_id, r.remarks) for r in page.runs)
            token = page.next_page_token
            if not token:
                break
        assert listed[run.run_id] == at_cap
        assert listed[run.run_id + "x"] == huge[:MAX_REMARKS_CHARS] + "…"
        assert d.call("GetRun", pb.GetRunRequest(run_id=run.run_id + "x")).run.remarks == huge
        [shown] = d.call("ListBackfills", pb.ListBackfillsRequest()).backfills
        assert shown.remarks == huge[:MAX_REMARKS_CHARS] + "…"
        whole = d.call("GetBackfill", pb.GetBackfillRequest(backfill_id=backfill.backfill_id))
        assert whole.backfill.remarks == huge


def test_a_malformed_body_is_invalid_argument_and_long_ids_are_not_echoed_whole(
        deployed: tuple[Path, Path, Path]) -> None:
    _, store, state = deployed
    with running_daemon(store, state) as d:
        for method in ("GetRun", "ListRuns", "WatchRun"):
            path = f"/flowplan.v1.WorkflowService/{method}"
            call = (d.channel.unary_stream if method == "WatchRun" else d.channel.unary_unary)(
                path, request_serializer=lambda raw: raw, response_deserializer=lambda b: b)
            with pytest.raises(grpc.RpcError) as refused:
                answer = call(b"\x0a\xff\xff\xff", timeout=10)  # field 1, a broken length
                list(answer) if method == "WatchRun" else None
            code, message, _ = refusal(refused.value)
            assert code is grpc.StatusCode.INVALID_ARGUMENT, (method, code, message)
            assert f"not a valid flowplan.v1.{method}Request" in message
        long_id = "wr_" + "9" * 1_000_000  # under the 16 MB request cap, far above a name
        for name, request in [("GetRun", pb.GetRunRequest(run_id=long_id)),
                              ("CancelRun", pb.CancelRunRequest(run_id=long_id)),
                              ("GetBackfill", pb.GetBackfillRequest(backfill_id=long_id)),
                              ("GetWorkflow", pb.GetWorkflowRequest(workflow=long_id)),
                              ("StartRun", pb.StartRunRequest(workflow=long_id))]:
            with pytest.raises(grpc.RpcError) as refused:
                d.call(name, request)
            code, message, _ = refusal(refused.value)
            assert code is grpc.StatusCode.NOT_FOUND, (name, code)
            assert long_id[:128] + "…" in message and len(message) < 400, (name, message)
        for name, request in [("StartRun", pb.StartRunRequest(workflow="echo", queue=long_id)),
                              ("ListRuns", pb.ListRunsRequest(tag="=" + long_id))]:
            with pytest.raises(grpc.RpcError) as refused:  # any message is cut at 1,024
                d.call(name, request)
            code, message, _ = refusal(refused.value)
            assert code is grpc.StatusCode.INVALID_ARGUMENT and len(message) <= 1025, name
        assert d.process.poll() is None


def test_health_and_reflection_refuse_a_malformed_body_as_invalid_argument(
        deployed: tuple[Path, Path, Path]) -> None:
    _, store, state = deployed
    with running_daemon(store, state) as d:
        raw = {"request_serializer": lambda raw: raw, "response_deserializer": lambda b: b}
        broken = b"\x0a\xff\xff\xff"  # field 1, a broken length
        calls = {
            "grpc.health.v1.HealthCheckRequest": lambda: d.channel.unary_unary(
                "/grpc.health.v1.Health/Check", **raw)(broken, timeout=10),
            "grpc.health.v1.HealthCheckRequest (Watch)": lambda: list(d.channel.unary_stream(
                "/grpc.health.v1.Health/Watch", **raw)(broken, timeout=10)),
            "grpc.reflection.v1alpha.ServerReflectionRequest": lambda: list(
                d.channel.stream_stream(
                    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", **raw)(
                    iter([broken]), timeout=10)),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as refused:
                call()
            code, message, _ = refusal(refused.value)
            assert code is grpc.StatusCode.INVALID_ARGUMENT, (name, code, message)
            assert f"not a valid {name.split()[0]}" in message
        # the well-formed calls still answer
        assert d.channel.unary_unary("/grpc.health.v1.Health/Check", **raw)(
            b"", timeout=10) == b"\x08\x01"  # status: SERVING
        listed = list(d.channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", **raw)(
            iter([b"\x3a\x00"]), timeout=10))  # list_services: ""
        assert b"flowplan.v1.WorkflowService" in listed[0]
        assert d.process.poll() is None


def log_fds(pid: int, state: Path) -> int:
    """The daemon's open file descriptors on attempt logs under `state`."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            count += target.startswith(str(state)) and target.endswith("/log")
    return count


def test_log_streams_to_slow_readers_hold_no_file_descriptor(
        deployed: tuple[Path, Path, Path]) -> None:
    _, store, state = deployed
    with running_daemon(store, state) as d:
        run = d.call("StartRun", pb.StartRunRequest(workflow="chatty")).run
        log_request = pb.GetNodeLogRequest(run_id=run.run_id, node_name="talk", follow=True)
        wait_until(lambda: sum(len(c.data) for c in d.stub.GetNodeLog(
            pb.GetNodeLogRequest(run_id=run.run_id, node_name="talk"), timeout=10))
                   >= 16_000_000, "the node's 16 MB of log", timeout=30)
        readers = [d.stub.GetNodeLog(log_request, timeout=60) for _ in range(5)]
        try:
            for reader in readers:  # one chunk each, then they read no more: gRPC's flow
                assert next(reader).offset == 0  # control holds each stream in mid-log
            time.sleep(1)  # the streams fill their windows and wait
            samples = []
            for _ in range(20):
                samples.append(log_fds(d.process.pid, state))
                time.sleep(0.05)
            assert max(samples) <= 1, samples  # 5 while each stream kept its file open
            assert next(readers[0]).offset > 0  # a reader that reads again goes on
        finally:
            for reader in readers:
                reader.cancel()
            d.call("CancelRun", pb.CancelRunRequest(run_id=run.run_id))
        assert d.process.poll() is None


BUSY = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_idle_connections_do_not_starve_the_daemon_of_file_descriptors(
        deployed: tuple[Path, Path, Path], make_repo: MakeRepo) -> None:
    repo, store, state = deployed
    # 256 files, soft and hard: raising the soft limit cannot help
    d = Daemon(store, state, extra=["--handshake-timeout", "1s"], open_files=(256, 256))
    idle: list[socket.socket] = []
    try:
        for _ in range(400):  # TCP connections that never send a byte
            idle.append(socket.create_connection(("127.0.0.1", d.port), timeout=5))

        def answers() -> bool:
            with grpc.insecure_channel(d.address) as channel:  # a new connection
                try:
                    pb_grpc.WorkflowServiceStub(channel).ListWorkflows(
                        pb.ListWorkflowsRequest(), timeout=2)
                    return True
                except grpc.RpcError as error:  # refused beyond the cap, or slow to accept
                    assert error.code() in BUSY, error  # type: ignore[attr-defined]
                    return False

        wait_until(answers, "an answer while 400 idle connections are open", timeout=20)
        make_repo({"workflows/late.yaml": "name: late\nnodes:\n  - {name: x, command: 'true'}\n"},
                  root=repo)
        publish(repo, store)

        def rescanned() -> bool:
            try:
                return d.call("GetWorkflow", pb.GetWorkflowRequest(workflow="late")
                              ).workflow.name == "late"
            except grpc.RpcError as error:
                assert error.code() in {grpc.StatusCode.NOT_FOUND, *BUSY}, error  # type: ignore[attr-defined]
                return False

        wait_until(rescanned, "the plan published meanwhile", timeout=20)
        wait_until(lambda: all(closed_by_peer(s) for s in idle),
                   "the daemon closing every idle connection", timeout=20)
        assert d.process.poll() is None
        assert "Too many open files" not in d.output()
        assert '"max_connections": 128' in d.output()  # 256 files, 128 kept for its own
    finally:
        for sock in idle:
            sock.close()
        assert d.stop() == 0


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(
        deployed: tuple[Path, Path, Path]) -> None:
    _, store, state = deployed
    with running_daemon(store, state, open_files=(256, 2048)) as d:
        limits = Path(f"/proc/{d.process.pid}/limits").read_text()
        assert [line.split()[3:5] for line in limits.splitlines()
                if line.startswith("Max open files")] == [["2048", "2048"]]
        assert '"max_connections": 1000' in d.output()  # 2048 files leave room for all


@pytest.mark.parametrize(("settings", "message"), [
    (["--max-connections", "0"], "flowplan serve: --max-connections 0: give a whole number"),
    (["--http-max-connections", "0"],
     "flowplan serve: --http-max-connections 0: give a whole number"),
    (["--idle-timeout", "nan"], "flowplan serve: --idle-timeout nan: give the seconds"),
    (["--handshake-timeout", "0"], "the interval must be positive"),
], ids=["connections", "http-connections", "idle", "handshake"])
def test_connection_settings_it_cannot_serve_with_are_refused_by_name(
        deployed: tuple[Path, Path, Path], settings: list[str], message: str) -> None:
    _, store, state = deployed
    result = flowplan("serve", "--store", store, "--state", state, *settings, check=False)
    assert result.returncode == 2 and message in result.stderr
