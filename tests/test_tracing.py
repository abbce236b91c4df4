"""OpenTelemetry traces (the `otel` extra): a run's trace from the real engine and real node
processes, collected with the SDK's in-memory exporter; the daemon without the SDK or with
tracing off; spans of gRPC calls from a real `flowplan serve`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, wait_until
from daemon_harness import flowplan, pb, publish, running_daemon

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.repo import read_repo
from flowplan.compiler.store import PlanStore
from flowplan.daemon.domain import RunStatus, RunTrigger
from flowplan.daemon.engine.clock import SystemClock
from flowplan.daemon.engine.core import StatusEvent
from flowplan.daemon.engine.engine import Engine, EngineSettings
from flowplan.daemon.engine.launcher import LocalLauncher
from flowplan.daemon.server import tracing
from flowplan.daemon.state.store import StateStore
from flowplan.daemon.watcher import PlanCatalog

pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from flowplan.daemon.server.otel import Tracing

# `flaky` fails its first attempt and succeeds on its retry; each attempt writes the
# TRACEPARENT its process was given
FLAKY = """
name: traced
nodes:
  - name: flaky
    command: >-
      echo "$TRACEPARENT" > {out}/flaky-$FLOWPLAN_ATTEMPT;
      test "$FLOWPLAN_ATTEMPT" = 2 || exit 3
    retries: 1
    retry_delay: 0
  - {{name: after, command: 'echo "$TRACEPARENT" > {out}/after-1', upstream: [flaky]}}
"""


def traced_run(tmp_path: Path, make_repo: Any, exporter: InMemorySpanExporter) -> str:
    out = tmp_path / "out"
    out.mkdir()
    store = PlanStore(tmp_path / "store")
    result = compile_repo(read_repo(make_repo({"workflows/t.yaml": FLAKY.format(out=out)})))
    assert result.ok, [str(d) for d in result.diagnostics]
    store.publish(result.plans)
    catalog = PlanCatalog(store)
    catalog.rescan()
    state = StateStore(tmp_path / "state")
    engine = Engine(store=state, plans=catalog, launcher=LocalLauncher(), clock=SystemClock(),
                    settings=EngineSettings(state_dir=tmp_path / "state",
                                            traceparent=tracing.traceparent))
    spans = Tracing([SimpleSpanProcessor(exporter)])
    spans.follow(engine, state)

    async def main() -> str:
        await engine.start()
        try:
            plan = store.latest("traced")
            assert plan is not None
            run_id = engine.create_run(plan, trigger=RunTrigger.MANUAL,
                                       logical_time=SystemClock().now()).run_id
            run = await asyncio.wait_for(engine.wait_run(run_id), 30)
            assert run.status is RunStatus.SUCCEEDED
            await spans.shutdown()
            return run_id
        finally:
            await engine.stop()
            state.close()

    return asyncio.run(main())


def test_a_run_with_a_retried_node_is_one_trace_with_a_span_per_attempt(tmp_path, make_repo):
    exporter = InMemorySpanExporter()
    run_id = traced_run(tmp_path, make_repo, exporter)
    spans = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1, "one trace"
    (run,) = [s for s in spans if s.parent is None]
    assert run.name == "run traced"
    assert run.context.trace_id == tracing.trace_id(run_id)
    assert run.attributes is not None and run.attributes["flowplan.run_id"] == run_id
    attempts = {(s.attributes["flowplan.node"], s.attributes["flowplan.attempt"]): s
                for s in spans if s.parent is not None and s.attributes is not None}
    assert sorted(attempts) == [("after", 1), ("flaky", 1), ("flaky", 2)], "a span per attempt"
    for (node, number), span in attempts.items():
        assert span.parent is not None and span.parent.span_id == run.context.span_id
        assert span.attributes is not None
        assert span.attributes["flowplan.run_id"] == run_id
        assert span.attributes["flowplan.workflow"] == "traced"
        assert span.attributes["flowplan.queue"] == "default"
        assert run.start_time is not None and span.start_time is not None
        assert run.end_time is not None and span.end_time is not None
        assert run.start_time <= span.start_time <= span.end_time <= run.end_time
        # the node's own process saw its attempt span as TRACEPARENT
        seen = (tmp_path / "out" / f"{node}-{number}").read_text().strip()
        assert seen == (f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01")
    failed = attempts["flaky", 1]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["flowplan.exit_code"] == 3
    assert failed.attributes["flowplan.status"] == "failed"
    for key in (("flaky", 2), ("after", 1)):
        assert attempts[key].status.status_code is StatusCode.UNSET
        assert attempts[key].attributes["flowplan.exit_code"] == 0  # type: ignore[index]
    assert run.status.status_code is StatusCode.UNSET


def test_what_asks_for_traces():
    assert tracing.wanted({}) is None
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "otlp"}) == "OTEL_TRACES_EXPORTER"
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}) == (
        "OTEL_EXPORTER_OTLP_ENDPOINT")
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
                           "OTEL_SDK_DISABLED": "true"}) is None
    # the ids are the run's: a restarted daemon continues the same trace
    assert tracing.traceparent("r1", "n", 2) == tracing.traceparent("r1", "n", 2)
    assert tracing.traceparent("r1", "n", 2) != tracing.traceparent("r1", "n", 1)


def test_tracing_off_imports_no_opentelemetry():
    probe = ("import sys; from flowplan.daemon.server import app;"
             " from flowplan.daemon.server.tracing import enabled;"
             " assert not enabled({}); "
             " assert not [m for m in sys.modules if m.startswith('opentelemetry')]")
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=ROOT, timeout=60)


NODE = "workflows/e.yaml", "name: e\nnodes:\n  - {name: env, command: 'env > %s'}\n"


def test_the_daemon_without_the_sdk_serves_and_says_so(tmp_path, make_repo, monkeypatch):
    blocked = tmp_path / "blocked" / "opentelemetry"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('not installed')\n")
    monkeypatch.setenv("PYTHONPATH", str(blocked.parent))
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    env_file = tmp_path / "env.txt"
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo({NODE[0]: NODE[1] % env_file}), store)
    with running_daemon(store, state) as d:
        run = d.call("StartRun", pb.StartRunRequest(workflow="e")).run
        assert d.wait_run(run.run_id).status == pb.RUN_STATUS_SUCCEEDED
        assert "OpenTelemetry SDK is not installed" in d.output()
        assert "TRACEPARENT=" not in env_file.read_text()
        assert d.stop() == 0


def test_the_daemon_traces_grpc_calls_and_runs(tmp_path, make_repo, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "flowplan-test")
    env_file = tmp_path / "env.txt"
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo({NODE[0]: NODE[1] % env_file}), store)
    with running_daemon(store, state) as d:
        run = d.call("StartRun", pb.StartRunRequest(workflow="e")).run
        assert d.wait_run(run.run_id).status == pb.RUN_STATUS_SUCCEEDED
        assert d.stop() == 0
        spans = console_spans(d.output())
    traceparent = next(line.split("=", 1)[1] for line in env_file.read_text().splitlines()
                       if line.startswith("TRACEPARENT="))
    by_name = {span["name"]: span for span in spans}
    start = by_name["flowplan.v1.WorkflowService/StartRun"]
    assert start["kind"] == "SpanKind.SERVER"
    assert start["attributes"]["rpc.grpc.status_code"] == 0
    assert start["resource"]["attributes"]["service.name"] == "flowplan-test"
    node = by_name["node env"]
    context = node["context"]  # ids as 0x... hex
    assert traceparent == f"00-{context['trace_id'][2:]}-{context['span_id'][2:]}-01"
    assert by_name["run e"]["context"]["trace_id"] == node["context"]["trace_id"]


def console_spans(output: str) -> list[dict[str, Any]]:
    """The spans the console exporter printed (indented JSON objects) among the log lines."""
    spans, decoder, at = [], json.JSONDecoder(), 0
    while (at := output.find('{\n    "name"', at)) != -1:
        span, end = decoder.raw_decode(output, at)
        spans.append(span)
        at = end
    return spans


def test_an_unknown_exporter_is_a_usage_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,bogus")
    result = flowplan("serve", "--store", tmp_path / "store", "--state", tmp_path / "state",
                      "--listen", "127.0.0.1:0", check=False)
    assert result.returncode == 2
    assert "OTEL_TRACES_EXPORTER names 'bogus', which no installed package provides" in (
        result.stderr)


WAITING = ("name: w\nnodes:\n  - {name: wait, command: 'echo \"$TRACEPARENT\" > %s;"
           " while [ ! -e %s ]; do sleep 0.05; done'}\n")


def test_a_run_that_outlives_a_restart_keeps_its_trace(tmp_path, make_repo, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    seen, release = tmp_path / "traceparent", tmp_path / "release"
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo({"workflows/w.yaml": WAITING % (seen, release)}), store)
    with running_daemon(store, state) as first:
        run_id = first.call("StartRun", pb.StartRunRequest(workflow="w")).run.run_id
        wait_until(lambda: seen.exists() and seen.read_text().strip(), "the attempt running")
        before_restart = datetime.now().astimezone()
        assert first.stop() == 0  # the node process lives on; the next daemon adopts it
    assert not [s for s in console_spans(first.output()) if s["name"] in ("node wait", "run w")]
    with running_daemon(store, state) as second:
        release.touch()
        assert second.wait_run(run_id).status == pb.RUN_STATUS_SUCCEEDED
        assert second.stop() == 0
    by_name = {span["name"]: span for span in console_spans(second.output())}
    node, run = by_name["node wait"], by_name["run w"]
    context = node["context"]
    # the span the second daemon built is the one the first gave the process as TRACEPARENT
    assert seen.read_text().strip() == (
        f"00-{context['trace_id'][2:]}-{context['span_id'][2:]}-01")
    assert node["parent_id"] == run["context"]["span_id"]
    assert run["context"]["trace_id"] == context["trace_id"] == f"0x{tracing.trace_id(run_id):032x}"
    # with the start the state database recorded, before the restart
    assert datetime.fromisoformat(node["start_time"]) < before_restart
    assert datetime.fromisoformat(run["start_time"]) < before_restart


def test_a_sampled_out_run_drops_its_attempt_spans_too(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    exporter = InMemorySpanExporter()
    spans = Tracing([SimpleSpanProcessor(exporter)])
    now = datetime.now().astimezone()
    for i in range(40):
        run_id = f"run-{i}"
        spans.on_event(StatusEvent(run_id, "n", "RUNNING", now, 1))
        spans.on_event(StatusEvent(run_id, "n", "SUCCEEDED", now, 1, 0))
        spans.on_event(StatusEvent(run_id, None, "SUCCEEDED", now))
    per_trace = Counter(span.context.trace_id for span in exporter.get_finished_spans())
    assert 0 < len(per_trace) < 40, "some runs sampled, some not"
    assert set(per_trace.values()) == {2}, "a run's span and its attempt's, or neither"


@pytest.mark.parametrize(("variables", "name"), [
    ({}, "flowplan"),
    ({"OTEL_SERVICE_NAME": "flowplan-eu"}, "flowplan-eu"),
    ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=prod-flowplan,deployment.environment=prod"},
     "prod-flowplan"),
])
def test_the_service_name_is_flowplan_unless_the_environment_names_it(
        monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], name: str) -> None:
    for variable in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)
    assert Tracing([]).provider.resource.attributes["service.name"] == name
