"""`flowplan serve --http`: GET /metrics scraped from a real daemon while runs (one failing
with a retry), a schedule's catch-up tick, a backfill and a failed e-mail happen; parsed with
prometheus_client's parser. And the HTTP listener's exposure rules and token."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from certificates import certificates
from conftest import FLOWPLAN, ROOT, MakeRepo, wait_until
from daemon_harness import free_port, publish, running_daemon
from google.protobuf import timestamp_pb2
from prometheus_client.parser import text_string_to_metric_families

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.repo import read_repo
from flowplan.compiler.store import PlanStore
from flowplan.daemon.state.store import StateStore
from flowplan.v1 import workflow_service_pb2 as pb

FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n  small: {concurrency: 1}\n",
    "workflows/flaky.yaml": """
        name: flaky
        nodes:
          - {name: first, command: "echo one"}
          - name: flaky
            queue: small
            retries: 1
            retry_delay: 0
            command: "test -f marker || { touch marker; exit 1; }"
            upstream: [first]
        """,
    "workflows/broken.yaml": """
        name: broken
        on_failure: {email: [ops@example.com]}
        nodes:
          - {name: fails, command: "exit 3"}
        """,
    "workflows/daily.yaml": """
        name: daily
        schedule: {every: day, at: "TICK", timezone: UTC}
        nodes:
          - {name: day, command: "echo ${ds}"}
        """,
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _files(tick: str = "02:00") -> dict[str, str]:
    """FILES with the daily tick at `tick` (HH:MM, UTC)."""
    return {k: v.replace("TICK", tick) for k, v in FILES.items()}


def scrape(url: str, token: str | None = None) -> Samples:
    """Every sample of GET /metrics by (name, sorted labels), parsed by prometheus_client."""
    request = urllib.request.Request(f"{url}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the samples of `name` that carry `labels` (and any others)."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


def stamp(text: str) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromJsonString(text)
    return message


def test_counters_move_with_runs_retries_a_backfill_a_tick_and_a_failed_email(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    store, state = tmp_path / "store", tmp_path / "state"
    # the daily tick ~12 hours before now: its catch-up below is hours late at any time of
    # day; at half past, so that the backfills' ranges (midnight to midnight) hold the same
    # ticks whatever the hour
    tick = (datetime.now(UTC) - timedelta(hours=12)).strftime("%H:30")
    ago = datetime.now(UTC) - timedelta(days=2)
    result = compile_repo(read_repo(make_repo(_files(tick))))  # published three days ago,
    PlanStore(store).publish(result.plans, now=ago - timedelta(days=1))
    database = StateStore(state)  # and its schedule last looked at two days ago: the
    database.record_ticks("daily", [], considered_until=ago, at=ago)  # start catches up
    database.close()  # its latest missed tick, hours late
    smtp_port = free_port()  # nothing listens there: every send fails
    http_port = free_port()
    with running_daemon(store, state, extra=["--http", f"127.0.0.1:{http_port}",
                                             "--smtp-host", "127.0.0.1",
                                             "--smtp-port", str(smtp_port),
                                             "--smtp-timeout", "2s"]) as d:
        url = f"http://127.0.0.1:{http_port}"
        caught_up = wait_until(lambda: d.call("ListRuns", pb.ListRunsRequest(
            workflow="daily")).runs, "the catch-up run of the missed tick")
        d.wait_run(caught_up[0].run_id)
        before = scrape(url)
        assert value(before, "flowplan_scheduler_lag_seconds_count") == 1
        assert value(before, "flowplan_scheduler_lag_seconds_sum") > 3600
        assert value(before, "flowplan_plans_active") == 3
        assert value(before, "flowplan_plans_skipped") == 0
        assert value(before, "flowplan_queue_slots", queue="small") == 1

        flaky = d.call("StartRun", pb.StartRunRequest(workflow="flaky")).run
        broken = d.call("StartRun", pb.StartRunRequest(workflow="broken")).run
        assert d.wait_run(flaky.run_id).status == pb.RUN_STATUS_SUCCEEDED
        assert d.wait_run(broken.run_id).status == pb.RUN_STATUS_FAILED
        backfill = d.call("StartBackfill", pb.StartBackfillRequest(
            workflow="daily", start_time=stamp("2026-05-01T00:00:00Z"),
            end_time=stamp("2026-05-03T00:00:00Z")))
        for run_id in backfill.run_ids:
            d.wait_run(run_id)
        big = d.call("StartBackfill", pb.StartBackfillRequest(  # one run at a time
            workflow="daily", start_time=stamp("2025-01-01T00:00:00Z"),
            end_time=stamp("2025-12-31T00:00:00Z"), max_parallel_runs=1))
        waiting = value(scrape(url), "flowplan_runs_pending", lane="backfill", workflow="daily")
        d.call("CancelBackfill", pb.CancelBackfillRequest(backfill_id=big.backfill_id))
        assert waiting > 300  # of its 364 runs

        def settled() -> Samples | None:  # the e-mail was tried and the backfill is done
            samples = scrape(url)
            done = (value(samples, "flowplan_backfills", status="succeeded") == 1
                    and value(samples, "flowplan_backfills", status="cancelled") == 1
                    and not total(samples, "flowplan_runs_pending")
                    and value(samples, "flowplan_outbox_oldest_unsent_age_seconds") > 0
                    and value(samples, "flowplan_event_loop_lag_seconds_count") > 0)
            return samples if done else None

        after = wait_until(settled, "the backfill's end and the e-mail's failed send")

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("flowplan_runs_started_total", workflow="flaky", trigger="manual") == 1
    assert moved("flowplan_runs_finished_total", workflow="flaky", trigger="manual",
                 status="succeeded") == 1
    assert moved("flowplan_runs_finished_total", workflow="broken", trigger="manual",
                 status="failed") == 1
    # the big backfill: the runs that ended before the cancel, one maybe cancelled running,
    # and the pending rest cancelled without a start
    big_done = moved("flowplan_runs_finished_total", workflow="daily", trigger="backfill",
                     status="succeeded") - 2
    big_started = moved("flowplan_runs_started_total", workflow="daily", trigger="backfill") - 2
    assert big_done >= 0 and big_started in (big_done, big_done + 1)
    assert moved("flowplan_runs_finished_total", workflow="daily", trigger="backfill",
                 status="cancelled") == 364 - big_done
    assert total(after, "flowplan_runs_finished_total", workflow="daily",
                 trigger="schedule", status="succeeded") == 1
    # the flaky node: one failed attempt, then one that succeeded, on queue small
    assert moved("flowplan_node_attempts_finished_total", queue="small", status="failed") == 1
    assert moved("flowplan_node_attempts_finished_total", queue="small",
                 status="succeeded") == 1
    assert moved("flowplan_node_attempts_finished_total", queue="default",
                 status="failed") == 1  # broken's
    # flaky's first node, the backfill days (the big one's last attempt: either way)
    assert 3 + big_done <= moved("flowplan_node_attempts_finished_total", queue="default",
                                 status="succeeded") <= 3 + big_started
    assert moved("flowplan_node_attempt_duration_seconds_count", queue="small") == 2
    assert moved("flowplan_node_attempt_duration_seconds_count", queue="default") == moved(
        "flowplan_node_attempts_finished_total", queue="default")  # each one timed
    assert value(after, "flowplan_queue_slots_in_use", queue="small") == 0
    assert value(after, "flowplan_queue_nodes_waiting", queue="default") == 0
    # on_failure of broken: still to send after a failed try (refused connection)
    assert value(after, "flowplan_outbox_messages", state="pending") >= 1
    assert value(after, "flowplan_outbox_messages", state="sent") == 0
    assert moved("flowplan_outbox_send_attempts_total", outcome="retried") >= 1
    assert value(after, "flowplan_outbox_send_attempts_total", outcome="sent") == 0
    assert moved("flowplan_grpc_requests_total", method="/flowplan.v1.WorkflowService/StartRun",
                 code="OK") == 2
    assert moved("flowplan_grpc_request_duration_seconds_count",
                 method="/flowplan.v1.WorkflowService/StartBackfill") == 2
    assert value(after, "process_resident_memory_bytes") > 0
    assert not any("run_" in v or v.startswith("2026") for (_, labels) in after
                   for _, v in labels), "a label value is a run id or a time"


MAIL_FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
    **{f"workflows/{name}.yaml": f"name: {name}\non_failure: {{email: [{name}@example.com]}}\n"
                                 "nodes:\n  - {name: fails, command: 'exit 3'}\n"
       for name in ("accepted", "refused", "later")},
}


class Mailbox:
    """An aiosmtpd handler: 550 (permanent) for refused@, 450 (try later) for later@."""

    def __init__(self) -> None:
        self.received: list[list[str]] = []

    async def handle_RCPT(self, server: object, session: object, envelope: Envelope,  # noqa: N802
                          address: str, rcpt_options: list[str]) -> str:
        answers = {"refused@example.com": "550 no such mailbox",
                   "later@example.com": "450 mailbox busy, try later"}
        if address in answers:
            return answers[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: object, session: object,  # noqa: N802
                          envelope: Envelope) -> str:
        self.received.append(list(envelope.rcpt_tos))
        return "250 OK"


def test_email_send_attempts_are_counted_by_outcome(make_repo: MakeRepo,
                                                    tmp_path: Path) -> None:
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo(MAIL_FILES), store)
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    http_port = free_port()
    try:
        with running_daemon(store, state, extra=["--http", f"127.0.0.1:{http_port}",
                                                 "--smtp-host", "127.0.0.1",
                                                 "--smtp-port", str(smtp.port),
                                                 "--smtp-timeout", "5s"]) as d:
            url = f"http://127.0.0.1:{http_port}"
            before = scrape(url)  # each outcome there from the start, at 0
            assert {outcome: value(before, "flowplan_outbox_send_attempts_total",
                                   outcome=outcome)
                    for outcome in ("sent", "retried", "failed")} == {
                "sent": 0, "retried": 0, "failed": 0}
            for name in ("accepted", "refused", "later"):
                run = d.call("StartRun", pb.StartRunRequest(workflow=name)).run
                assert d.wait_run(run.run_id).status == pb.RUN_STATUS_FAILED

            def counted() -> Samples | None:
                samples = scrape(url)
                tried = total(samples, "flowplan_outbox_send_attempts_total")
                return samples if tried >= 3 else None

            after = wait_until(counted, "three e-mails tried", timeout=20)
    finally:
        smtp.stop()
    assert {outcome: value(after, "flowplan_outbox_send_attempts_total", outcome=outcome)
            for outcome in ("sent", "retried", "failed")} == {
        "sent": 1, "retried": 1, "failed": 1}  # later@'s next attempt is 30 s away
    assert value(after, "flowplan_outbox_messages", state="sent") == 1
    assert value(after, "flowplan_outbox_messages", state="failed") == 1
    assert value(after, "flowplan_outbox_messages", state="pending") == 1
    assert mailbox.received == [["accepted@example.com"]]


def test_with_a_token_metrics_need_the_bearer_header(make_repo: MakeRepo,
                                                     tmp_path: Path) -> None:
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo(_files()), store)
    (tmp_path / "token").write_text("s3cret\n")
    http_port = free_port()
    with running_daemon(store, state, token="s3cret",
                        extra=["--http", f"127.0.0.1:{http_port}",
                               "--token-file", str(tmp_path / "token")]) as d:
        url = f"http://127.0.0.1:{http_port}"
        for header in (None, "Bearer wrong"):
            request = urllib.request.Request(f"{url}/metrics")
            if header:
                request.add_header("Authorization", header)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 401
        d.call("ListWorkflows", pb.ListWorkflowsRequest())
        with pytest.raises(grpc.RpcError) as refused_call:
            d.call("ListWorkflows", pb.ListWorkflowsRequest(), metadata=[])
        assert refused_call.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for name in ("/made.Up/Method", "/flowplan.v1.WorkflowService/Nope"):
            with pytest.raises(grpc.RpcError) as unknown:  # the caller's name: no label
                d.channel.unary_unary(name)(b"", metadata=d.metadata(), timeout=10)
            assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
        method = "/flowplan.v1.WorkflowService/ListWorkflows"
        # a refusal's status goes out before the call's end is counted: poll for it
        def refusal_counted() -> Samples | None:
            samples = scrape(url, token="s3cret")
            return samples if value(samples, "flowplan_grpc_requests_total", method=method,
                                    code="UNAUTHENTICATED") else None

        samples = wait_until(refusal_counted, "the refused call counted")
        assert value(samples, "flowplan_grpc_requests_total", method=method,
                     code="UNAUTHENTICATED") == 1
        assert value(samples, "flowplan_grpc_requests_total", method=method, code="OK") == 1
        assert value(samples, "flowplan_grpc_requests_total", method="unknown",
                     code="UNIMPLEMENTED") == 2
        assert not any("Nope" in v or "made" in v for (_, labels) in samples for _, v in labels)


def test_a_roles_file_token_of_any_role_may_scrape(make_repo: MakeRepo,
                                                   tmp_path: Path) -> None:
    """The HTTP listener accepts the tokens gRPC accepts: a roles file's viewer may read
    /metrics, a token of no file may not; a token added by SIGHUP works at once."""
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo(_files()), store)
    viewer, later = "viewer-token-0123456789", "operator-token-0123456789"
    roles = tmp_path / "roles"
    roles.write_text(f"viewer grafana {viewer}\n")
    http_port = free_port()
    with running_daemon(store, state, token=viewer,
                        extra=["--http", f"127.0.0.1:{http_port}", "--roles-file",
                               str(roles)]) as d:
        url = f"http://127.0.0.1:{http_port}"
        assert scrape(url, token=viewer)
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(url, token=later)
        assert refused.value.code == 401
        roles.write_text(f"viewer grafana {viewer}\noperator ci {later}\n")
        d.process.send_signal(signal.SIGHUP)

        def accepted() -> bool:
            try:
                return bool(scrape(url, token=later))
            except urllib.error.HTTPError:
                return False

        wait_until(accepted, "the reloaded token accepted on /metrics")


def test_a_non_loopback_http_address_needs_a_token_tls_or_insecure(tmp_path: Path) -> None:
    result = subprocess.run(
        [*FLOWPLAN, "serve", "--store", str(tmp_path / "store"), "--state",
         str(tmp_path / "state"), "--http", "0.0.0.0:0"],
        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0:0 (--http) without authentication" in result.stderr
    bad = subprocess.run(
        [*FLOWPLAN, "serve", "--store", str(tmp_path / "store"), "--state",
         str(tmp_path / "state"), "--http", "nowhere"],
        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "--http nowhere: give host:port" in bad.stderr


def test_with_tls_metrics_are_served_over_https_to_a_client_certificate(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    store, state, pki = tmp_path / "store", tmp_path / "state", tmp_path / "pki"
    publish(make_repo(_files()), store)
    pems = certificates(pki)
    http_port = free_port()
    client = grpc.ssl_channel_credentials(root_certificates=pems["ca"],
                                          private_key=pems["client_key"],
                                          certificate_chain=pems["client_cert"])
    with running_daemon(store, state, credentials=client, extra=[
            "--http", f"127.0.0.1:{http_port}",
            "--tls-cert", str(pki / "server_cert.pem"), "--tls-key", str(pki / "server_key.pem"),
            "--tls-client-ca", str(pki / "ca.pem")]):
        context = ssl.create_default_context(cafile=pki / "ca.pem")
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"https://127.0.0.1:{http_port}/metrics", timeout=10,
                                   context=context).read()  # no client certificate
        context.load_cert_chain(pki / "client_cert.pem", pki / "client_key.pem")
        with urllib.request.urlopen(f"https://127.0.0.1:{http_port}/metrics", timeout=10,
                                    context=context) as response:
            families = {f.name for f in text_string_to_metric_families(
                response.read().decode())}
        assert {"flowplan_runs_started", "flowplan_queue_slots_in_use"} <= families


def test_the_http_address_comes_from_the_environment_or_the_settings_file(
        tmp_path: Path) -> None:
    settings = tmp_path / "flowplan.toml"
    settings.write_text('[server]\nstore = "store"\nstate = "state"\nhttp = "127.0.0.1:9464"\n')
    serve = [*FLOWPLAN, "serve", "--settings", str(settings), "--print-config"]
    from_file = subprocess.run(serve, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert re.search(r'^http += "127.0.0.1:9464"  # file$', from_file.stdout,
                     re.MULTILINE), from_file.stdout  # keys aligned: any number of spaces
    from_env = subprocess.run(serve, capture_output=True, text=True, cwd=ROOT, timeout=60,
                              env={**os.environ, "FLOWPLAN_SERVER_HTTP": "127.0.0.1:9465"})
    assert re.search(r'^http += "127.0.0.1:9465"  # env FLOWPLAN_SERVER_HTTP$', from_env.stdout,
                     re.MULTILINE), from_env.stdout
    bad = subprocess.run(serve, capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "FLOWPLAN_SERVER_HTTP": "9465"})
    assert bad.returncode == 2
    assert 'FLOWPLAN_SERVER_HTTP: must be host:port with a port from 0 to 65535' in bad.stderr
