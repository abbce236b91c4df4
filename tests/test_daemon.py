"""`flowplan serve` as a real process, driven over real gRPC on loopback: every RPC, the error
codes, auth, health and reflection, SIGTERM, kill -9 with a run in flight, plans published
while it runs, and streams."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from certificates import certificates
from conftest import FLOWPLAN, ROOT, MakeRepo, marked, running, wait_until
from daemon_harness import Daemon, flowplan, free_port, publish, running_daemon
from google.protobuf import struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from flowplan.daemon.server.app import IN_USE
from flowplan.daemon.state.store import StateStore
from flowplan.v1 import workflow_service_pb2 as pb
from flowplan.v1 import workflow_service_pb2_grpc as pb_grpc

FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
    "workflows/chain.yaml": """
        name: chain
        tags: {team: data}
        params: {region: eu, code: "0"}
        nodes:
          - {name: a, command: "echo a ${params.region}"}
          - {name: b, command: "echo b; exit ${params.code}", upstream: [a]}
          - {name: c, command: "echo c", upstream: [b]}
        """,
    "workflows/slow.yaml": """
        name: slow
        nodes:
          - {name: wait, command: "echo started; sleep ${params.seconds}"}
        params: {seconds: "30", api_token: t0ps3cret}
        """,
    "workflows/daily.yaml": """
        name: daily
        schedule: {every: day, at: "02:00", timezone: UTC}
        max_active_runs: 2
        nodes:
          - {name: day, command: "echo ${ds}"}
        """,
}


@pytest.fixture
def deployed(make_repo: MakeRepo, tmp_path: Path) -> tuple[Path, Path, Path]:
    repo = make_repo(FILES)
    store = tmp_path / "store"
    publish(repo, store, remarks="first")
    return repo, store, tmp_path / "state"


def params(**values: str) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def ts(text: str) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromJsonString(text)
    return message


def error_of(call: object) -> tuple[grpc.StatusCode, str, list[str]]:
    """The status code, message and BadRequest field names of a failed call."""
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    error = caught.value
    fields = []
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields += [v.field for v in bad.field_violations]
    return error.code(), error.details(), fields  # type: ignore[attr-defined]


def test_every_rpc_end_to_end(deployed: tuple[Path, Path, Path]) -> None:
    _, store, state = deployed
    with running_daemon(store, state) as d:
        listed = d.call("ListWorkflows", pb.ListWorkflowsRequest())
        assert [w.name for w in listed.workflows] == ["chain", "daily", "slow"]
        page = d.call("ListWorkflows", pb.ListWorkflowsRequest(page_size=2))
        rest = d.call("ListWorkflows", pb.ListWorkflowsRequest(
            page_size=2, page_token=page.next_page_token))
        assert [w.name for w in page.workflows] + [w.name for w in rest.workflows] \
            == ["chain", "daily", "slow"] and not rest.next_page_token

        daily = d.call("GetWorkflow", pb.GetWorkflowRequest(workflow="daily")).workflow
        assert daily.schedule.kind == pb.SCHEDULE_KIND_DAILY and daily.scheduling_enabled
        assert daily.next_tick.ToDatetime().hour == 2
        chain = d.call("GetWorkflow", pb.GetWorkflowRequest(workflow="chain")).workflow
        assert [n.name for n in chain.nodes] == ["a", "b", "c"]
        assert [(e.upstream, e.downstream) for e in chain.edges] == [("a", "b"), ("b", "c")]
        versions = d.call("ListPlanVersions", pb.ListPlanVersionsRequest(workflow="chain"))
        assert [(v.version, v.remarks) for v in versions.plan_versions] == [(1, "first")]

        paused = d.call("SetSchedulingStatus", pb.SetSchedulingStatusRequest(
            workflow="daily", enabled=False)).workflow
        assert not paused.scheduling_enabled and not paused.HasField("next_tick")
        assert paused.schedule.enabled_in_git
        d.call("SetSchedulingStatus", pb.SetSchedulingStatusRequest(workflow="daily",
                                                                    enabled=True))

        started = d.call("StartRun", pb.StartRunRequest(
            workflow="chain", params=params(region="us"), remarks="by hand")).run
        assert started.trigger == pb.RUN_TRIGGER_MANUAL and started.remarks == "by hand"
        early = d.call("GetRun", pb.GetRunRequest(run_id=started.run_id, include_graph=True))
        assert early.run.status != pb.RUN_STATUS_SUCCEEDED  # answers are cached: see below
        events = list(d.stub.WatchRun(pb.WatchRunRequest(run_id=started.run_id), timeout=30))
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert events[-1].run_status == pb.RUN_STATUS_SUCCEEDED
        assert not events[-1].HasField("node")
        assert [e.node.name for e in events if e.node.status == pb.NODE_STATUS_SUCCEEDED] \
            == ["a", "b", "c"]
        run = d.call("GetRun", pb.GetRunRequest(run_id=started.run_id, include_graph=True)).run
        assert run.status == pb.RUN_STATUS_SUCCEEDED and run.params["region"] == "us"
        assert [n.attempts[0].exit_code for n in run.nodes] == [0, 0, 0]
        assert len(run.edges) == 2 and run.tags["team"] == "data"
        assert run.last_sequence == events[-1].sequence > early.run.last_sequence
        # a finished run's answer is final, served without the state store: an event written
        # behind the daemon's back (nothing in it writes one for a finished run) does not show
        with sqlite3.connect(state / "state.sqlite3") as db:
            db.execute("INSERT INTO run_events (run_id, sequence, node, status, attempt, at)"
                       " VALUES (?, ?, NULL, 'SUCCEEDED', NULL, '2026-01-01T00:00:00+00:00')",
                       (started.run_id, run.last_sequence + 1))
        assert d.call("GetRun", pb.GetRunRequest(run_id=started.run_id, include_graph=True)
                      ).run.last_sequence == run.last_sequence
        with sqlite3.connect(state / "state.sqlite3") as db:
            db.execute("DELETE FROM run_events WHERE run_id = ? AND sequence = ?",
                       (started.run_id, run.last_sequence + 1))
        again = list(d.stub.WatchRun(pb.WatchRunRequest(run_id=started.run_id,
                                                        after_sequence=3), timeout=10))
        assert [e.sequence for e in again] == [e.sequence for e in events[3:]]
        log = b"".join(c.data for c in d.stub.GetNodeLog(pb.GetNodeLogRequest(
            run_id=started.run_id, node_name="a"), timeout=10))
        assert log == b"a us\n"
        tail = list(d.stub.GetNodeLog(pb.GetNodeLogRequest(
            run_id=started.run_id, node_name="a", offset=-3), timeout=10))
        assert [(c.offset, c.data) for c in tail] == [(2, b"us\n")]

        failed = d.call("StartRun", pb.StartRunRequest(workflow="chain",
                                                       params=params(code="3"))).run
        failed = d.wait_run(failed.run_id)
        assert failed.status == pb.RUN_STATUS_FAILED
        assert [n.status for n in failed.nodes] == [
            pb.NODE_STATUS_SUCCEEDED, pb.NODE_STATUS_FAILED, pb.NODE_STATUS_SKIPPED]
        assert "exited with code 3" in failed.nodes[1].attempts[0].error
        dry = d.call("ResumeRun", pb.ResumeRunRequest(run_id=failed.run_id,
                                                      node_names=["b", "a"], dry_run=True))
        assert not dry.run_id and list(dry.node_names) == ["a"] and dry.plan_version == 1
        resumed = d.call("ResumeRun", pb.ResumeRunRequest(run_id=failed.run_id,
                                                          node_names=["b"]))
        second = d.wait_run(resumed.run_id)
        assert second.previous_run_id == failed.run_id
        assert second.trigger == pb.RUN_TRIGGER_RESUME
        assert second.nodes[0].copied_from_run_id == failed.run_id

        runs = d.call("ListRuns", pb.ListRunsRequest(workflow="chain"))
        assert len(runs.runs) == 3
        assert len(d.call("ListRuns", pb.ListRunsRequest(
            status=pb.RUN_STATUS_FAILED)).runs) == 2
        assert len(d.call("ListRuns", pb.ListRunsRequest(tag="team=data")).runs) == 3
        assert [r.run_id for r in d.call("ListRuns", pb.ListRunsRequest(
            trigger=pb.RUN_TRIGGER_RESUME)).runs] == [resumed.run_id]
        assert d.call("ListRuns", pb.ListRunsRequest(tag="team=none")).runs == []
        first = d.call("ListRuns", pb.ListRunsRequest(workflow="chain", page_size=2))
        last = d.call("ListRuns", pb.ListRunsRequest(workflow="chain", page_size=2,
                                                     page_token=first.next_page_token))
        assert len(first.runs) == 2 and len(last.runs) == 1 and not last.next_page_token

        slow = d.call("StartRun", pb.StartRunRequest(workflow="slow")).run
        assert slow.params["api_token"] == "********"  # secrets are never shown
        assert d.call("GetWorkflow", pb.GetWorkflowRequest(
            workflow="slow")).workflow.params["api_token"] == "********"
        follow = d.stub.GetNodeLog(pb.GetNodeLogRequest(run_id=slow.run_id, node_name="wait",
                                                        follow=True), timeout=30)
        assert next(follow).data == b"started\n"
        cancelled = d.call("CancelRun", pb.CancelRunRequest(run_id=slow.run_id)).run
        assert cancelled.HasField("cancel_requested_at")
        rest = list(follow)  # the follow ends with the attempt (the shell may say more first)
        assert all(c.offset == 8 + sum(len(p.data) for p in rest[:i])
                   for i, c in enumerate(rest))
        assert d.wait_run(slow.run_id).status == pb.RUN_STATUS_CANCELLED

        window = {"start_time": ts("2026-05-01T00:00:00Z"), "end_time": ts("2026-05-04T00:00:00Z")}
        preview = d.call("StartBackfill", pb.StartBackfillRequest(workflow="daily", dry_run=True,
                                                                   **window))
        assert not preview.backfill_id and len(preview.logical_times) == 3
        backfill = d.call("StartBackfill", pb.StartBackfillRequest(workflow="daily", **window))
        assert len(backfill.run_ids) == 3
        for run_id in backfill.run_ids:
            d.wait_run(run_id)
        deadline = time.monotonic() + 10
        while True:
            got = d.call("GetBackfill", pb.GetBackfillRequest(
                backfill_id=backfill.backfill_id)).backfill
            if got.status != pb.BACKFILL_STATUS_RUNNING or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert got.status == pb.BACKFILL_STATUS_SUCCEEDED and got.progress.succeeded == 3
        logs = [b"".join(c.data for c in d.stub.GetNodeLog(pb.GetNodeLogRequest(
            run_id=r, node_name="day"), timeout=10)) for r in backfill.run_ids]
        assert logs == [b"2026-05-01\n", b"2026-05-02\n", b"2026-05-03\n"]
        of_backfill = d.call("ListRuns", pb.ListRunsRequest(backfill_id=backfill.backfill_id))
        assert sorted(r.run_id for r in of_backfill.runs) == sorted(backfill.run_ids)
        listed_bf = d.call("ListBackfills", pb.ListBackfillsRequest(workflow="daily"))
        assert [b.backfill_id for b in listed_bf.backfills] == [backfill.backfill_id]

        big = d.call("StartBackfill", pb.StartBackfillRequest(
            workflow="daily", start_time=ts("2025-01-01T00:00:00Z"),
            end_time=ts("2025-12-31T00:00:00Z"), max_parallel_runs=1))
        stopped = d.call("CancelBackfill", pb.CancelBackfillRequest(
            backfill_id=big.backfill_id))
        assert stopped.backfill.status == pb.BACKFILL_STATUS_CANCELLED
        # 364 ticks (02:00 on 01-01 .. 12-30), one at a time: every run that had not ended is
        # cancelled. Nothing is left pending; a run that was running when the cancel came is
        # being killed (it counts as running until it ends). On a busy machine a run or two
        # may have succeeded first.
        assert set(stopped.cancelled_run_ids) <= set(big.run_ids) and len(big.run_ids) == 364
        progress = stopped.backfill.progress
        assert progress.total == 364 and progress.pending == 0 and progress.failed == 0
        assert len(stopped.cancelled_run_ids) == 364 - progress.succeeded >= 360
        assert progress.cancelled + progress.running == len(stopped.cancelled_run_ids)
        assert d.stop() == 0


def test_errors_carry_the_right_code_and_field(deployed: tuple[Path, Path, Path]) -> None:
    _, store, state = deployed
    with running_daemon(store, state) as d:
        code, message, fields = error_of(lambda: d.call("StartRun", pb.StartRunRequest(
            workflow="chain", params=params(regoin="us"))))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and fields == ["params.regoin"]
        assert "declared: code, region" in message
        code, _, fields = error_of(lambda: d.call("StartBackfill", pb.StartBackfillRequest(
            workflow="daily", start_time=ts("2026-05-04T00:00:00Z"),
            end_time=ts("2026-05-01T00:00:00Z"))))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and fields == ["end_time"]
        code, _, fields = error_of(lambda: d.call("ListRuns", pb.ListRunsRequest(
            page_token="garbage")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and fields == ["page_token"]
        code, _, _ = error_of(lambda: d.call("GetRun", pb.GetRunRequest(run_id="wr_nope")))
        assert code == grpc.StatusCode.NOT_FOUND
        code, _, _ = error_of(lambda: d.call("GetWorkflow", pb.GetWorkflowRequest(
            workflow="nope")))
        assert code == grpc.StatusCode.NOT_FOUND
        code, message, _ = error_of(lambda: d.call("StartBackfill", pb.StartBackfillRequest(
            workflow="chain", start_time=ts("2026-05-01T00:00:00Z"),
            end_time=ts("2026-05-02T00:00:00Z"))))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "no schedule" in message
        slow = d.call("StartRun", pb.StartRunRequest(workflow="slow")).run
        code, message, _ = error_of(lambda: d.call("ResumeRun", pb.ResumeRunRequest(
            run_id=slow.run_id, node_names=["wait"])))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        d.call("CancelRun", pb.CancelRunRequest(run_id=slow.run_id))
        d.wait_run(slow.run_id)
        code, _, _ = error_of(lambda: d.call("CancelRun", pb.CancelRunRequest(
            run_id=slow.run_id)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        code, _, fields = error_of(lambda: list(d.stub.WatchRun(pb.WatchRunRequest(),
                                                                timeout=5)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and fields == ["run_id"]
        health = health_pb2_grpc.HealthStub(d.channel)
        assert health.Check(health_pb2.HealthCheckRequest(
            service="flowplan.v1.WorkflowService"), timeout=5).status == 1
        assert d.process.poll() is None  # none of it hurt the daemon


def forged_token(position: str, scope: str) -> str:
    """A page token built by hand, in the form the daemon's tokens have."""
    raw = json.dumps({"p": position, "s": scope}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_values_past_what_exists_are_refused_as_the_api_docs_say(
        deployed: tuple[Path, Path, Path]) -> None:
    _, store, state = deployed
    with running_daemon(store, state) as d:
        done = d.call("StartRun", pb.StartRunRequest(workflow="chain"))
        done = d.wait_run(done.run.run_id)
        slow = d.call("StartRun", pb.StartRunRequest(workflow="slow")).run
        wait_until(lambda: d.call("GetRun", pb.GetRunRequest(
            run_id=slow.run_id, include_graph=True)).run.nodes[0].attempts, "slow's attempt")
        last = d.call("GetRun", pb.GetRunRequest(run_id=slow.run_id)).run.last_sequence
        # WatchRun: after_sequence negative or past the history, even of a running run
        for run, after in ((done, -1), (done, done.last_sequence + 1), (slow, last + 5)):
            code, message, fields = error_of(lambda r=run, a=after: list(d.stub.WatchRun(
                pb.WatchRunRequest(run_id=r.run_id, after_sequence=a), timeout=5)))
            assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["after_sequence"]), \
                (after, message)
        assert list(d.stub.WatchRun(pb.WatchRunRequest(
            run_id=done.run_id, after_sequence=done.last_sequence), timeout=5)) == []
        # page tokens whose position is not one the daemon gives out
        for name, request in [
                ("ListPlanVersions", pb.ListPlanVersionsRequest(
                    workflow="chain", page_token=forged_token("abc", "versions:chain"))),
                ("ListNotifications", pb.ListNotificationsRequest(
                    page_token=forged_token("abc", "notifications::0")))]:
            code, _, fields = error_of(lambda n=name, r=request: d.call(n, r))
            assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_token"]), name
        # plan_version: negative is INVALID_ARGUMENT, missing NOT_FOUND, neither shows a path
        for name, request in [
                ("GetWorkflow", pb.GetWorkflowRequest(workflow="chain", plan_version=-1)),
                ("ResumeRun", pb.ResumeRunRequest(run_id=done.run_id, node_names=["b"],
                                                  plan_version=-1, dry_run=True))]:
            code, _, fields = error_of(lambda n=name, r=request: d.call(n, r))
            assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["plan_version"]), name
        for name, request in [
                ("GetWorkflow", pb.GetWorkflowRequest(workflow="chain", plan_version=7)),
                ("ResumeRun", pb.ResumeRunRequest(run_id=done.run_id, node_names=["b"],
                                                  plan_version=7, dry_run=True))]:
            code, message, _ = error_of(lambda n=name, r=request: d.call(n, r))
            assert code == grpc.StatusCode.NOT_FOUND, name
            assert message == "version 7 of chain does not exist: its only version is 1", name
        # GetNodeLog: an attempt the node does not have
        for run, attempt, follow in ((done, 2, False), (done, 2, True), (slow, 2, False),
                                     (slow, 3, True)):
            code, message, _ = error_of(lambda r=run, a=attempt, f=follow: list(
                d.stub.GetNodeLog(pb.GetNodeLogRequest(
                    run_id=r.run_id, node_name=r.nodes[0].name,
                    attempt=a, follow=f), timeout=5)))
            assert code == grpc.StatusCode.NOT_FOUND, (attempt, follow, message)
            assert f"has no attempt {attempt}: its last attempt is 1" in message
        shown = flowplan("logs", done.run_id, "a", "--attempt", "5", "--address", d.address,
                         check=False)
        assert (shown.returncode, shown.stdout) == (1, "")
        assert shown.stderr.startswith("error: NOT_FOUND: node 'a' of run")
        # with follow, the attempt after the last one of a running node is waited for, and
        # NOT_FOUND once the node ends without it
        waiting = d.stub.GetNodeLog(pb.GetNodeLogRequest(
            run_id=slow.run_id, node_name="wait", attempt=2, follow=True), timeout=20)
        code, _, _ = error_of(lambda: list(d.stub.GetNodeLog(pb.GetNodeLogRequest(
            run_id=slow.run_id, node_name="wait", attempt=2, follow=True), timeout=1)))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        d.call("CancelRun", pb.CancelRunRequest(run_id=slow.run_id))
        code, _, _ = error_of(lambda: list(waiting))
        assert code == grpc.StatusCode.NOT_FOUND
        assert d.process.poll() is None


def test_backfills_and_runs_at_the_ends_of_the_calendar(
        deployed: tuple[Path, Path, Path]) -> None:
    _, store, state = deployed
    with running_daemon(store, state) as d:
        for start, end, tick, previous in (  # the first tick's interval starts at it
                ("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z", "0001-01-01T02:00:00Z",
                 "0001-01-01T02:00:00Z"),
                ("9999-12-31T00:00:00Z", "9999-12-31T23:59:59Z", "9999-12-31T02:00:00Z",
                 "9999-12-30T02:00:00Z")):
            answer = d.call("StartBackfill", pb.StartBackfillRequest(
                workflow="daily", start_time=ts(start), end_time=ts(end)))
            assert [t.ToJsonString() for t in answer.logical_times] == [tick]
            ran = d.wait_run(answer.run_ids[0])
            assert ran.status == pb.RUN_STATUS_SUCCEEDED
            assert ran.data_interval_start.ToJsonString() == previous
        code, _, fields = error_of(lambda: d.call("StartBackfill", pb.StartBackfillRequest(
            workflow="daily", start_time=ts("0001-01-01T00:00:00Z"),
            end_time=ts("0001-01-01T01:00:00Z"), dry_run=True)))
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["start_time"])  # no tick
        dry = flowplan("backfill", "daily", "--from", "0001-01-01", "--to", "0001-01-02",
                       "--dry-run", "--address", d.address)
        assert "would start 2 runs, first 0001-01-01T02:00:00Z" in dry.stdout


def test_bearer_token_health_and_reflection(deployed: tuple[Path, Path, Path]) -> None:
    _, store, state = deployed
    token = state.parent / "token"
    token.write_text("s3cret-token\n")
    with running_daemon(store, state, extra=["--token-file", str(token)],
                        token="s3cret-token") as d:
        assert d.call("ListWorkflows", pb.ListWorkflowsRequest()).workflows
        for metadata in ([], [("authorization", "Bearer wrong")]):
            code, _, _ = error_of(lambda m=metadata: d.call(
                "ListWorkflows", pb.ListWorkflowsRequest(), metadata=m))
            assert code == grpc.StatusCode.UNAUTHENTICATED
        code, _, _ = error_of(lambda: list(d.stub.WatchRun(pb.WatchRunRequest(run_id="x"),
                                                           timeout=5)))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(d.channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1  # open
        reflect = reflection_pb2_grpc.ServerReflectionStub(d.channel)
        answer = next(reflect.ServerReflectionInfo(iter([
            reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
        names = {s.name for s in answer.list_services_response.service}
        assert "flowplan.v1.WorkflowService" in names and "grpc.health.v1.Health" in names


def test_tls_with_client_certificates_end_to_end(deployed: tuple[Path, Path, Path],
                                                  tmp_path: Path) -> None:
    _, store, state = deployed
    pki = tmp_path / "pki"
    pems = certificates(pki)
    client = grpc.ssl_channel_credentials(root_certificates=pems["ca"],
                                          private_key=pems["client_key"],
                                          certificate_chain=pems["client_cert"])
    with running_daemon(store, state, credentials=client, extra=[
            "--tls-cert", str(pki / "server_cert.pem"), "--tls-key", str(pki / "server_key.pem"),
            "--tls-client-ca", str(pki / "ca.pem")]) as d:
        assert "chain" in [w.name for w in d.call("ListWorkflows",
                                                  pb.ListWorkflowsRequest()).workflows]
        tls = ["--address", d.address, "--tls-ca", pki / "ca.pem"]
        listed = flowplan("workflows", *tls, "--tls-cert", pki / "client_cert.pem",
                          "--tls-key", pki / "client_key.pem")
        assert "chain" in listed.stdout
        refused = flowplan("workflows", *tls, check=False)  # no client certificate
        assert refused.returncode != 0 and "UNAVAILABLE" in refused.stderr
        with grpc.insecure_channel(d.address) as plain:  # no TLS at all
            assert error_of(lambda: pb_grpc.WorkflowServiceStub(plain).ListWorkflows(
                pb.ListWorkflowsRequest(), timeout=5))[0] is grpc.StatusCode.UNAVAILABLE
        assert d.stop() == 0


@pytest.mark.parametrize(("settings", "message"), [
    (["--listen", "127.0.0.1:99999"], "--listen 127.0.0.1:99999: give host:port with a port"
                                      " from 0 to 65535"),
    (["--listen", "localhost"], "--listen localhost: give host:port"),
    (["--kill-grace", "-1"], "--kill-grace -1.0: give the seconds between SIGTERM and SIGKILL"),
    (["--kill-grace", "nan"], "--kill-grace nan: give the seconds"),
    (["--tls-cert", "{pki}/server_cert.pem", "--tls-key", "{pki}/client_key.pem"],
     "--tls-cert {pki}/server_cert.pem and --tls-key {pki}/client_key.pem do not load"
     " (KEY_VALUES_MISMATCH): give a PEM certificate and its matching private key"),
    (["--tls-cert", "{pki}/server_cert.pem", "--tls-key", "{pki}/server_key.pem",
      "--tls-client-ca", "{pki}/server_key.pem"], "--tls-client-ca {pki}/server_key.pem does"
                                                  " not load"),
], ids=["port", "no-port", "negative-grace", "nan-grace", "key-mismatch", "client-ca"])
def test_settings_it_cannot_serve_with_are_refused_by_name(
        deployed: tuple[Path, Path, Path], tmp_path: Path, settings: list[str], message: str
        ) -> None:
    _, store, state = deployed
    pki = tmp_path / "pki"
    certificates(pki)
    result = flowplan("serve", "--store", store, "--state", state,
                      *[s.format(pki=pki) for s in settings], check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(f"flowplan serve: {message.format(pki=pki)}")


def test_a_non_loopback_address_needs_auth_or_insecure(deployed: tuple[Path, Path, Path]
                                                       ) -> None:
    _, store, state = deployed
    result = subprocess.run([*FLOWPLAN, "serve", "--store", str(store),
                             "--state", str(state), "--listen", f"0.0.0.0:{free_port()}"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2 and "--insecure" in result.stderr
    with running_daemon(store, state, extra=["--http", "0.0.0.0:0", "--insecure"]) as daemon:
        daemon.call("ListWorkflows", pb.ListWorkflowsRequest())
        wait_until(lambda: "anyone who reaches --http 0.0.0.0:0 acts as an admin"
                   in daemon.output(), "the warning of an address open to all")


def test_a_second_daemon_on_the_same_state_is_refused(deployed: tuple[Path, Path, Path]
                                                       ) -> None:
    _, store, state = deployed
    with running_daemon(store, state) as first:
        second = subprocess.run(
            [*FLOWPLAN, "serve", "--store", str(store), "--state",
             str(state), "--listen", f"127.0.0.1:{free_port()}"],
            capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert second.returncode == 2
        assert f"in use by another flowplan daemon (pid {first.process.pid}," \
               f" --listen {first.address})" in second.stderr
        assert first.call("ListWorkflows", pb.ListWorkflowsRequest()).workflows  # unharmed
        assert first.stop() == 0
    with running_daemon(store, state) as again:  # a stopped daemon's state is free
        assert again.stop() == 0


def test_a_date_alone_as_backfill_end_includes_that_whole_day(
        deployed: tuple[Path, Path, Path]) -> None:
    """`--to 2026-11-05` is read as a person reads it: the day's 02:00 tick is in."""
    _, store, state = deployed
    with running_daemon(store, state) as d:
        dry = flowplan("backfill", "daily", "--from", "2026-11-03", "--to", "2026-11-05",
                       "--dry-run", "--address", d.address)
        assert dry.stdout.splitlines() == [
            "dry run: a backfill of daily would start 3 runs, first 2026-11-03T02:00:00Z,"
            " last 2026-11-05T02:00:00Z:",
            "  2026-11-03T02:00:00Z", "  2026-11-04T02:00:00Z", "  2026-11-05T02:00:00Z"]
        exact = flowplan("backfill", "daily", "--from", "2026-11-03", "--to",
                         "2026-11-05T00:00:00Z", "--dry-run", "--address", d.address)
        assert "would start 2 runs" in exact.stdout  # a time is exact: that day's 02:00 is out


@pytest.mark.parametrize("command", ["serve", "up"])
def test_a_second_daemon_on_the_same_address_is_refused(deployed: tuple[Path, Path, Path],
                                                        command: str) -> None:
    """gRPC binds with SO_REUSEPORT by default: both would listen and share the calls."""
    repo, store, state = deployed
    with running_daemon(store, state) as first:
        if command == "serve":
            argv = ["serve", "--store", str(store), "--state", str(state.parent / "other")]
        else:
            argv = ["up", str(repo), "--home", str(state.parent / "other")]
        second = subprocess.run([*FLOWPLAN, *argv, "--listen",
                                 first.address], capture_output=True, text=True, cwd=ROOT,
                                timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"cannot listen on {first.address}: address in use" in second.stderr
        assert "listening" not in second.stdout + second.stderr
        if command == "serve":  # JSON log lines and one refusal, gRPC's core not heard
            *logged, refusal = second.stderr.splitlines()
            assert refusal == f"flowplan serve: cannot listen on {first.address}: {IN_USE}"
            assert all(isinstance(json.loads(line), dict) for line in logged), logged
        assert first.call("ListWorkflows", pb.ListWorkflowsRequest()).workflows  # unharmed
        assert first.stop() == 0


@pytest.mark.parametrize("flag", ["--store", "--state"])
def test_a_file_where_a_folder_goes_is_refused(deployed: tuple[Path, Path, Path], flag: str
                                               ) -> None:
    _, store, state = deployed
    folders = {"--store": store, "--state": state}
    folders[flag] = state.parent / "a-file"
    folders[flag].write_text("")
    result = subprocess.run([*FLOWPLAN, "serve", "--store",
                             str(folders["--store"]), "--state", str(folders["--state"]),
                             "--listen", f"127.0.0.1:{free_port()}"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (f"flowplan serve: {flag} {folders[flag]} is a file: give a folder"
                             " (created if missing)\n")


def test_a_state_directory_that_cannot_be_made_is_refused(deployed: tuple[Path, Path, Path]
                                                           ) -> None:
    _, store, state = deployed
    (state.parent / "a-file").write_text("")
    inside = state.parent / "a-file" / "state"
    result = subprocess.run([*FLOWPLAN, "serve", "--store", str(store),
                             "--state", str(inside), "--listen", f"127.0.0.1:{free_port()}"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert f"cannot use {inside} as the state directory: Not a directory" in result.stderr


def damage_pages(path: Path) -> None:
    """A database with history whose pages after the schema are overwritten with noise."""
    db = sqlite3.connect(path)
    db.executemany("INSERT INTO run_events (run_id, sequence, status, at) VALUES (?,?,?,?)",
                   [(f"run-{i:05d}", 1, "SUCCEEDED", "2026-01-01") for i in range(5000)])
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = path.stat().st_size
    with open(path, "r+b") as file:
        for page in range(size // 4096 // 2, size // 4096, 3):
            file.seek(page * 4096)
            file.write(bytes(range(256)) * 16)


@pytest.mark.parametrize("damage", ["newer", "not-a-database", "random-pages", "a-folder",
                                    "empty-beside-runs", "missing-beside-runs"])
def test_a_state_database_it_cannot_use_stops_it_with_a_sentence(
        deployed: tuple[Path, Path, Path], damage: str) -> None:
    _, store, state = deployed
    state.mkdir()
    db_path = state / "state.sqlite3"
    if damage == "newer":
        db = sqlite3.connect(db_path)
        db.execute("PRAGMA user_version=999")
        db.close()
    elif damage == "not-a-database":
        db_path.write_text("junk\n" * 100)
    elif damage == "random-pages":
        StateStore(state).close()
        damage_pages(db_path)
    elif damage == "a-folder":
        db_path.mkdir()
    else:  # a database lost (or emptied) while the run folders stayed
        for n in range(3):
            (state / "runs" / f"20260101T000000-{n}" / "workspace").mkdir(parents=True)
        if damage == "empty-beside-runs":
            db_path.write_bytes(b"")
    result = subprocess.run([*FLOWPLAN, "serve", "--store", str(store),
                             "--state", str(state), "--listen", f"127.0.0.1:{free_port()}"],
                            capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    expected = {"newer": "upgrade flowplan", "a-folder": "a folder is where the database file"
                " goes: move it away and restore the database from a backup",
                "empty-beside-runs": f"holds 3 run folder(s): restore the database from a"
                f" backup (docs/operations.md), or, to start over without that history, move"
                f" {state / 'runs'} away",
                "missing-beside-runs": "the database is missing or empty but"
                }.get(damage, "restore the database from a backup")
    assert result.stderr.startswith(f"flowplan serve: {db_path}: ")
    assert expected in result.stderr


def attempt_pid(state: Path, run_id: str) -> int:
    db = sqlite3.connect(state / "state.sqlite3")
    try:
        for _ in range(100):
            row = db.execute("SELECT pid FROM attempts WHERE run_id = ? AND pid IS NOT NULL",
                             (run_id,)).fetchone()
            if row:
                return int(row[0])
            time.sleep(0.05)
    finally:
        db.close()
    raise AssertionError("no attempt pid recorded")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_run_in_flight_survives_a_daemon_stop(deployed: tuple[Path, Path, Path],
                                                signum: int) -> None:
    _, store, state = deployed
    d = Daemon(store, state)
    run = d.call("StartRun", pb.StartRunRequest(workflow="slow", params=params(seconds="2"))).run
    pid = attempt_pid(state, run.run_id)
    started = time.monotonic()
    code = d.stop(signum)
    if signum == signal.SIGTERM:
        assert code == 0 and time.monotonic() - started < 10
        assert '"message": "stopped"' in d.output()
    assert running(pid)  # the node outlives the daemon
    with running_daemon(store, state) as again:
        finished = again.wait_run(run.run_id)
        assert finished.status == pb.RUN_STATUS_SUCCEEDED
        assert [a.number for a in finished.nodes[0].attempts] == [1]  # adopted, not rerun
        assert again.stop() == 0


def test_a_run_whose_plan_was_edited_while_down_is_failed_with_its_node_stopped(
        deployed: tuple[Path, Path, Path]) -> None:
    """A run that cannot be recovered: the node it left running is stopped, its attempt and
    node are closed with the reason, and `status` still shows its nodes."""
    _, store, state = deployed
    d = Daemon(store, state)
    run = d.call("StartRun", pb.StartRunRequest(workflow="slow", params=params(seconds="60"))).run
    pid = attempt_pid(state, run.run_id)
    d.stop(signal.SIGKILL)
    plan_file = store / "slow" / "1.json"
    plan_file.chmod(0o644)
    plan_file.write_text(plan_file.read_text().replace("echo started", "echo edited"))
    assert running(pid)
    with running_daemon(store, state) as again:
        finished = again.wait_run(run.run_id)
        assert finished.status == pb.RUN_STATUS_FAILED
        wait_until(lambda: not running(pid), "the node process to be stopped")
        [node] = finished.nodes
        assert node.status == pb.NODE_STATUS_FAILED
        assert node.skip_reason.startswith("cannot recover: ")
        [attempt] = node.attempts
        assert attempt.status == pb.ATTEMPT_STATUS_FAILED
        assert attempt.exit_code == 143  # SIGTERM to its group, within the grace
        assert attempt.error.startswith("stopped: cannot recover: ")
        shown = cli(again.address, "status", run.run_id)
        assert shown.returncode == 0
        assert "wait" in shown.stdout and "stopped: cannot recover" in shown.stdout
        # its log's secrets and its resume need that plan: refused, naming the run, not INTERNAL
        for refused in (
                lambda: list(again.stub.GetNodeLog(pb.GetNodeLogRequest(
                    run_id=run.run_id, node_name="wait"), timeout=10,
                    metadata=again.metadata())),
                lambda: again.call("ResumeRun", pb.ResumeRunRequest(
                    run_id=run.run_id, node_names=["wait"], dry_run=True))):
            code, message, _ = error_of(refused)
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            assert message == (f"run {run.run_id} used version 1 of slow, which can no longer"
                               " be read (the daemon's log says why); restore that plan file,"
                               " or start a new run"), message
        assert again.stop() == 0


def test_a_plan_published_while_serving_is_runnable_within_a_second(
        deployed: tuple[Path, Path, Path], make_repo: MakeRepo) -> None:
    repo, store, state = deployed
    with running_daemon(store, state) as d:
        make_repo({"workflows/late.yaml": "name: late\nnodes:\n  - {name: x, command: 'true'}\n"},
                  root=repo)
        publish(repo, store, remarks="late")
        published = time.monotonic()
        while True:
            try:
                run = d.call("StartRun", pb.StartRunRequest(workflow="late")).run
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
                assert time.monotonic() - published < 1.0, "not runnable within a second"
                time.sleep(0.02)
        assert d.wait_run(run.run_id).status == pb.RUN_STATUS_SUCCEEDED
        (store / "late" / "1.json").chmod(0o644)
        tampered = store / "chain" / "2.json"
        tampered.write_text((store / "chain" / "1.json").read_text().replace('"eu"', '"us"'))
        wait_until(lambda: "chain version 2 skipped" in d.output(),
                   "the tampered version skipped", timeout=10)
        assert d.process.poll() is None
        workflow = d.call("GetWorkflow", pb.GetWorkflowRequest(workflow="chain")).workflow
        assert workflow.latest_version == 1  # the last good version stays active


def cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWPLAN, *args, "--address", address],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1",
                               "PYTHONPATH": str(ROOT)})


def test_the_cli_against_a_real_daemon(deployed: tuple[Path, Path, Path]) -> None:
    _, store, state = deployed
    with running_daemon(store, state) as d:
        listed = cli(d.address, "workflows")
        assert listed.returncode == 0 and "chain" in listed.stdout and "daily" in listed.stdout
        ran = cli(d.address, "run", "chain", "--param", "code=3", "--wait")
        assert ran.returncode == 1, ran.stdout + ran.stderr  # b exits 3: the run failed
        run_id = d.call("ListRuns", pb.ListRunsRequest(workflow="chain")).runs[0].run_id
        status = cli(d.address, "status", run_id)
        assert status.returncode == 0 and "FAILED" in status.stdout and "SKIPPED" in status.stdout
        logs = cli(d.address, "logs", run_id, "a")
        assert logs.stdout == "a eu\n"
        as_json = cli(d.address, "status", run_id, "--json")
        assert '"run_id": "' + run_id in as_json.stdout
        resumed = cli(d.address, "resume", run_id, "--node", "b", "--dry-run")
        assert resumed.returncode == 0 and "b" in resumed.stdout
        missing = cli(d.address, "status", "wr_nope")
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
        typo = cli(d.address, "run", "chain", "--param", "regoin=x")
        assert (typo.returncode, typo.stderr) == (1, "error: INVALID_ARGUMENT: 'regoin' is not"
                                                  " a param of chain (declared: code, region)\n")
        paused = cli(d.address, "pause", "daily")
        assert paused.returncode == 0
        assert not d.call("GetWorkflow", pb.GetWorkflowRequest(
            workflow="daily")).workflow.scheduling_enabled
        preview = cli(d.address, "backfill", "daily", "--from", "2026-05-01", "--to",
                      "2026-05-03", "--dry-run")
        assert preview.returncode == 0 and "2026-05-02" in preview.stdout
    gone = cli(f"127.0.0.1:{free_port()}", "workflows", "--timeout", "2")
    assert gone.returncode == 3


def test_a_cli_cancel_leaves_no_process_of_the_attempt(make_repo: MakeRepo,
                                                      tmp_path: Path) -> None:
    """The node's shell dies of the TERM, its children ignore it: `flowplan cancel` still
    leaves none of them running (SIGKILL to the whole group after the grace)."""
    mark = f"cancel-{tmp_path.name}-{time.monotonic_ns()}"
    repo = make_repo({"workflows/stubborn.yaml": f"""
        name: stubborn
        nodes:
          - name: body
            command: "for i in 1 2 3; do (trap '' TERM; exec sleep 60) & done; wait"
            env: {{FLOWPLAN_TEST_MARK: {mark}}}
        """})
    store = tmp_path / "store"
    publish(repo, store)
    with running_daemon(store, tmp_path / "state") as d:
        run = d.call("StartRun", pb.StartRunRequest(workflow="stubborn")).run
        wait_until(lambda: len(marked(mark)) == 4, "the node and its 3 children")
        cancelled = cli(d.address, "cancel", run.run_id)
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        assert d.wait_run(run.run_id).status == pb.RUN_STATUS_CANCELLED
        wait_until(lambda: not marked(mark), "every process of the attempt to be gone")


def test_get_run_shows_a_cancel_asked_for_before_it_acts(make_repo: MakeRepo,
                                                          tmp_path: Path) -> None:
    """A cancel writes no change of the run until a node ends: GetRun's answer, kept while
    the run's history stays the same, must still show the cancel asked for."""
    repo = make_repo({"workflows/deaf.yaml": """
        name: deaf
        nodes:
          - {name: body, command: "trap '' TERM; echo started; while :; do sleep 0.1; done"}
        """})
    store = tmp_path / "store"
    publish(repo, store)
    with running_daemon(store, tmp_path / "state", extra=["--kill-grace", "5"]) as d:
        run_id = d.call("StartRun", pb.StartRunRequest(workflow="deaf")).run.run_id

        def answers() -> list[pb.Run]:
            return [d.call("GetRun", pb.GetRunRequest(run_id=run_id, include_graph=graph)).run
                    for graph in (False, True)]

        wait_until(lambda: answers()[1].nodes[0].status == pb.NODE_STATUS_RUNNING,
                   "the node running")
        assert not any(run.HasField("cancel_requested_at") for run in answers())
        asked = d.call("CancelRun", pb.CancelRunRequest(run_id=run_id)).run
        assert asked.HasField("cancel_requested_at")
        shown = answers()  # within the grace: the node lives on, no change was written
        assert all(run.HasField("cancel_requested_at") for run in shown), shown
        assert shown[1].nodes[0].status == pb.NODE_STATUS_RUNNING
        assert d.wait_run(run_id).status == pb.RUN_STATUS_CANCELLED


def test_serve_git_publishes_the_branch_head_on_an_interval(make_repo: MakeRepo,
                                                            tmp_path: Path) -> None:
    repo = make_repo(FILES)
    env = {"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "first plans"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    store = tmp_path / "store"
    with running_daemon(store, tmp_path / "state",
                        extra=["--git", str(repo), "--sync-interval", "1s"]) as d:
        deadline = time.monotonic() + 20
        names: list[str] = []
        while time.monotonic() < deadline and not names:
            names = [w.name for w in d.call("ListWorkflows", pb.ListWorkflowsRequest()).workflows]
            time.sleep(0.1)
        assert names == ["chain", "daily", "slow"]
        versions = d.call("ListPlanVersions", pb.ListPlanVersionsRequest(workflow="chain"))
        assert versions.plan_versions[0].remarks == "first plans"
        assert len(versions.plan_versions[0].commit) == 40


def test_a_replayed_watch_shows_each_node_as_it_was_after_that_change(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    """WatchRun from 0 of a finished run: each node event carries the attempts as they were
    then (not the node as it is now), and a RETRYING the time its retry was due."""
    mark, store = tmp_path / "mark", tmp_path / "store"
    publish(make_repo({"workflows/flaky.yaml": f"""
name: flaky
nodes:
  - name: x
    command: test -e {mark} || {{ touch {mark}; exit 2; }}
    retries: 1
    retry_delay: 1s
"""}), store)
    with running_daemon(store, tmp_path / "state") as d:
        run = d.call("StartRun", pb.StartRunRequest(workflow="flaky")).run
        assert d.wait_run(run.run_id).status == pb.RUN_STATUS_SUCCEEDED
        events = [e for e in d.stub.WatchRun(pb.WatchRunRequest(run_id=run.run_id),
                                             timeout=10) if e.HasField("node")]
    seen = [(pb.NodeStatus.Name(e.node.status)[12:],
             [(a.number, pb.AttemptStatus.Name(a.status)[15:],
               a.exit_code if a.HasField("exit_code") else None) for a in e.node.attempts])
            for e in events]
    assert seen == [("RUNNING", [(1, "RUNNING", None)]),
                    ("RETRYING", [(1, "FAILED", 2)]),
                    ("RUNNING", [(1, "FAILED", 2), (2, "RUNNING", None)]),
                    ("SUCCEEDED", [(1, "FAILED", 2), (2, "SUCCEEDED", 0)])]
    retrying = events[1].node
    assert retrying.next_attempt_at.ToDatetime() - retrying.attempts[0].finished_at.ToDatetime(
        ) == timedelta(seconds=1)


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(
                    errors="replace"):
                found.append(int(entry.name))
    return found


def test_a_daemon_syncing_from_git_stops_at_once_in_the_middle_of_a_fetch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM while git fetches over ssh (here an ssh that hangs): the fetch is killed,
    ssh included, instead of waited for up to its 300 s timeout (systemd would SIGKILL)."""
    marker = f"flowplan-test-{os.getpid()}-{time.monotonic_ns()}"
    monkeypatch.setenv("GIT_SSH_COMMAND", f"sleep 60; : {marker}")
    d = Daemon(tmp_path / "store", tmp_path / "state",
               extra=["--git", "ssh://git.invalid/repo.git"])
    try:
        wait_until(lambda: _processes_with(marker), "the fetch's ssh to start")
        started = time.monotonic()
        assert d.stop() == 0
        assert time.monotonic() - started < 10
        assert "git sync failed" not in d.output()  # a stop is not a failure
        wait_until(lambda: not _processes_with(marker), "the fetch's ssh to be gone")
    finally:
        if d.process.poll() is None:
            d.stop(signal.SIGKILL)


def test_a_fifo_in_the_store_neither_stalls_the_daemon_nor_hides_other_plans(
        deployed: tuple[Path, Path, Path], make_repo: MakeRepo) -> None:
    repo, store, state = deployed
    os.mkfifo(store / "chain" / "2.json")  # read at start: the daemon would never serve
    with running_daemon(store, state) as d:
        os.mkfifo(store / "daily" / "2.json")  # read by a rescan, on the event loop
        wait_until(lambda: "daily version 2 skipped" in d.output(), "the rescan to skip it")
        for workflow in ("chain", "daily"):  # the last good version stays active
            got = d.call("GetWorkflow", pb.GetWorkflowRequest(workflow=workflow)).workflow
            assert got.latest_version == 1
        assert "chain version 2 skipped: " in d.output()
        assert "2.json: cannot read plan: not a regular file (a FIFO)" in d.output()
        make_repo({"workflows/late.yaml": "name: late\nnodes:\n  - {name: x, command: 'true'}\n"},
                  root=repo)
        publish(repo, store, remarks="late")  # passes over the FIFOs: version 3 of both

        def names() -> list[str]:
            listed = d.call("ListWorkflows", pb.ListWorkflowsRequest()).workflows
            return [w.name for w in listed]

        wait_until(lambda: "late" in names(), "the plan published after the FIFOs to load")
        assert sorted(names()) == ["chain", "daily", "late", "slow"]


def test_serve_git_publishes_the_valid_workflows_beside_an_oversized_integer(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    huge = "name: huge\nnodes:\n  - name: a\n    command: echo\n    retries: " + "9" * 5000
    repo = make_repo({**FILES, "workflows/huge.yaml": huge + "\n"})
    env = {"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "huge"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    with running_daemon(tmp_path / "store", tmp_path / "state",
                        extra=["--git", str(repo), "--sync-interval", "1s"]) as d:
        wait_until(lambda: d.call("ListWorkflows", pb.ListWorkflowsRequest()).workflows,
                   "the valid workflows to be published from git", timeout=20)
        names = [w.name for w in d.call("ListWorkflows", pb.ListWorkflowsRequest()).workflows]
        assert names == ["chain", "daily", "slow"]
        located = ("from git: workflows/huge.yaml:5:14: FP108 nodes.0.retries: integer with"
                   " 5000 digits is out of range")
        wait_until(lambda: located in d.output(), "the located diagnostic in the log")
        make_repo({"workflows/late.yaml": "name: late\nnodes:\n  - {name: x, command: 'true'}\n"},
                  root=repo)
        for args in (["add", "-A"], ["commit", "-qm", "late"]):
            subprocess.run(["git", *args], cwd=repo, env=env, check=True)
        wait_until(lambda: "late" in [w.name for w in d.call(
            "ListWorkflows", pb.ListWorkflowsRequest()).workflows], "the next commit's plans")
        output = d.output()
        assert output.count(located) == 2  # once per commit, not once per sync
        assert "git sync failed" not in output and "Traceback" not in output
