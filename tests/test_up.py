"""`flowplan up` from a copy of the shipped repository, as README's first command runs it:
it publishes, serves health, shows the examples, republishes on change (keeping the last good
version of an invalid workflow), and stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import IO

import grpc
import pytest
from conftest import FLOWPLAN, ROOT
from daemon_harness import free_port, serving

from flowplan.daemon.engine import spark
from flowplan.daemon.server.app import Daemon
from flowplan.daemon.server.config import ServeConfig, UsageError
from flowplan.daemon.up import spark_install
from flowplan.v1 import workflow_service_pb2 as pb
from flowplan.v1 import workflow_service_pb2_grpc as pb_grpc


def start_up(project: Path, address: str, http: str, sink: IO[bytes], out: Path
             ) -> tuple[subprocess.Popen[bytes], grpc.Channel]:
    """`flowplan up` in `project`, serving (health) and done with its banner."""
    process = subprocess.Popen(
        [*FLOWPLAN, "up", "--listen", address, "--http", http],
        cwd=project, stdout=sink, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)})
    channel = grpc.insecure_channel(address)
    serving(channel, process, out)
    deadline = time.monotonic() + 10
    while "Ctrl-C stops" not in out.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    return process, channel


def versions(stub: pb_grpc.WorkflowServiceStub, workflow: str) -> list[int]:
    answer = stub.ListPlanVersions(pb.ListPlanVersionsRequest(workflow=workflow), timeout=5)
    return [v.version for v in answer.plan_versions]


def test_flowplan_up_on_the_shipped_examples(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "workflows", project / "workflows")
    shutil.copy(ROOT / "flowplan.yaml", project / "flowplan.yaml")
    if (ROOT / "jobs").is_dir():
        shutil.copytree(ROOT / "jobs", project / "jobs")
    address = f"127.0.0.1:{free_port()}"
    http = f"127.0.0.1:{free_port()}"
    out = tmp_path / "up.out"
    with open(out, "wb") as sink:
        process, channel = start_up(project, address, http, sink, out)
        try:
            stub = pb_grpc.WorkflowServiceStub(channel)
            text = out.read_text()
            assert "scheduled  daily_sales" in text and "scheduled  hourly_health" in text
            assert f"start it: flowplan run --address {address} reindex" in text
            banner = text[:text.index("Ctrl-C stops")]
            assert " WARNING " not in banner, banner  # log lines wait for the banner's end
            assert f"metrics at http://{http}/metrics" in banner
            with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as response:
                assert b"flowplan_runs_started_total" in response.read()
            assert f"console at http://{http}/" in banner
            with urllib.request.urlopen(f"http://{http}/", timeout=10) as response:
                page = response.read().decode()  # no token on loopback: no login
            assert 'data-workflow="daily_sales"' in page and "Content-Security-Policy" in str(
                response.headers)
            assert "notifications: no SMTP server configured; e-mails are recorded, not" \
                   " sent: flowplan notifications --address" in banner
            rollup = next(line for line in banner.splitlines() if "  spark_rollup " in line)
            if spark.locate() is None:  # suggest only what runs here
                assert rollup.split() == [  # flowplan runs from this clone: its extra
                    "manual", "spark_rollup", "cannot", "run", "here:", "queue", "spark",
                    "needs", "the", "Spark", "extra", "(pip", "install", "-e",
                    f"'{ROOT.resolve()}[spark]',", "Java", "17+)", "or", "SPARK_HOME"]
            else:
                assert rollup.endswith(f"start it: flowplan run --address {address} spark_rollup")
            assert (project / ".flowplan" / "store" / "daily_sales" / "1.json").is_file()
            names = [w.name for w in stub.ListWorkflows(pb.ListWorkflowsRequest(),
                                                        timeout=5).workflows]
            assert names == ["daily_sales", "hourly_health", "reindex", "spark_rollup"]

            reindex = project / "workflows" / "adhoc" / "reindex.yaml"
            reindex.write_text(reindex.read_text().replace("description: Rebuild",
                                                           "description: Now rebuild"))
            deadline = time.monotonic() + 10
            while versions(stub, "reindex") != [2, 1] and time.monotonic() < deadline:
                time.sleep(0.1)
            assert versions(stub, "reindex") == [2, 1]

            reindex.write_text("name: reindex\nnodes: [{name: x, upstream: [nope]}]\n")
            deadline = time.monotonic() + 10
            while "reindex.yaml:2:" not in out.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "reindex.yaml:2:" in out.read_text()  # diagnostics with file:line
            assert versions(stub, "reindex") == [2, 1]  # the last good version stays
            said = out.read_text()
            assert f"flowplan up: {project} changed, republished" in said  # the first edit
            assert f"flowplan up: {project} changed, nothing new published" in said
            assert "reindex: not published, invalid; version 2 stays active" in said

            # a second `up` in the same folder, of another repository: the daemon's state
            # is in use (its --home named), and the store that daemon serves is left alone
            other = tmp_path / "other"
            (other / "workflows").mkdir(parents=True)
            (other / "workflows" / "lone.yaml").write_text(
                "name: lone\nnodes: [{name: x, command: 'true'}]\n")
            second = subprocess.run(
                [*FLOWPLAN, "up", str(other), "--listen", f"127.0.0.1:{free_port()}", "--http",
                 f"127.0.0.1:{free_port()}"], cwd=project, capture_output=True, text=True,
                timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
            assert (second.returncode, second.stdout) == (2, ""), second
            assert second.stderr.startswith(
                f"flowplan up: state directory {project}/.flowplan/state is in use by another"
                " flowplan daemon"), second.stderr
            assert second.stderr.endswith("stop it first, or give this one another --home\n")
            assert not (project / ".flowplan" / "store" / "lone").exists()
            names = [w.name for w in stub.ListWorkflows(pb.ListWorkflowsRequest(),
                                                        timeout=5).workflows]
            assert names == ["daily_sales", "hourly_health", "reindex", "spark_rollup"]
            channel.close()
        finally:
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=30)
    assert code == 0, out.read_text()
    assert "flowplan up: stopped" in out.read_text()


def test_flowplan_up_says_in_one_line_when_its_http_port_is_busy(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "hello.yaml").write_text(
        "name: hello\nnodes: [{name: hi, command: echo hi}]\n")
    address = f"127.0.0.1:{free_port()}"
    out = tmp_path / "up.out"
    with socket.socket() as busy, open(out, "wb") as sink:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        http = f"127.0.0.1:{busy.getsockname()[1]}"
        process, channel = start_up(project, address, http, sink, out)  # gRPC serves anyway
        try:
            said = [line for line in out.read_text().splitlines() if http in line]
            assert said == [f"no HTTP listener (web console and metrics), serving gRPC only:"
                            f" cannot listen on"
                            f" --http {http}: address in use: another program listens there;"
                            " choose another --http"], out.read_text()
            channel.close()
        finally:
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=30)
    assert code == 0, out.read_text()


def test_up_on_a_busy_grpc_port_is_refused_before_it_publishes(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "hello.yaml").write_text(
        "name: hello\nnodes: [{name: hi, command: echo hi}]\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        done = subprocess.run([*FLOWPLAN, "up", "--listen", address, "--http",
                               f"127.0.0.1:{free_port()}"], cwd=project, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stdout, done.stderr) == (
        2, "", f"flowplan up: cannot listen on {address}: address in use: another program"
               " (perhaps another flowplan daemon) listens there; stop it or choose another"
               " --listen\n")
    assert not (project / ".flowplan" / "store").exists()


def test_a_claimed_state_folder_stays_taken_until_the_daemon_serves_from_it(
        tmp_path: Path) -> None:
    """`up` claims, publishes, then serves: no second daemon can take the folder between."""
    config = ServeConfig(store=tmp_path / "store", state=tmp_path / "state",
                         listen=f"127.0.0.1:{free_port()}")
    first = Daemon(config)
    first.claim()
    with pytest.raises(UsageError, match=r"is in use by another flowplan daemon \(pid"):
        Daemon(config).claim()

    async def serve_then_stop() -> int:
        running = asyncio.ensure_future(first.run())
        ready = asyncio.ensure_future(first.ready.wait())
        await asyncio.wait({running, ready}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            running.result()  # its UsageError, had it not kept the claimed state
        assert ready.done(), "the daemon did not start serving"
        with pytest.raises(UsageError, match="is in use by another flowplan daemon"):
            Daemon(config).claim()
        first.shutdown()
        return await asyncio.wait_for(running, 30)

    assert asyncio.run(serve_then_stop()) == 0
    Daemon(config).claim()  # given up with the daemon


def test_the_banner_of_a_restart_says_a_workflow_paused_at_run_time_is_paused(
        tmp_path: Path) -> None:
    """The switch set at run time outlives a restart: the banner says so, not git's next
    run."""
    project = tmp_path / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "daily.yaml").write_text(
        "name: daily\nschedule: {every: day, at: '02:00'}\nnodes: [{name: a, command: 'true'}]\n")
    address, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    for start in ("first", "again"):
        out = tmp_path / f"{start}.out"
        with open(out, "wb") as sink:
            process, channel = start_up(project, address, http, sink, out)
            try:
                line = next(line for line in out.read_text().splitlines()
                            if line.startswith("  scheduled  daily"))
                if start == "first":
                    assert "next run" in line
                    pb_grpc.WorkflowServiceStub(channel).SetSchedulingStatus(
                        pb.SetSchedulingStatusRequest(workflow="daily", enabled=False),
                        timeout=5)
                else:
                    assert line.split() == ["scheduled", "daily", "paused", "(flowplan",
                                            "unpause", "--address", address, "daily)"]
                channel.close()
            finally:
                process.send_signal(signal.SIGINT)
                assert process.wait(timeout=30) == 0, out.read_text()


def test_up_names_its_own_option_for_a_state_folder_it_cannot_use(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "workflows").mkdir(parents=True)
    home = tmp_path / "home"
    home.mkdir()
    (home / "state").write_text("a file where the state folder goes")
    done = subprocess.run([*FLOWPLAN, "up", "--home", str(home), "--listen",
                           f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{free_port()}"],
                          cwd=project, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (done.returncode, done.stderr) == (2, f"flowplan up: {home}/state (the state in"
                                                 " --home) is a file: give a folder (created"
                                                 " if missing)\n")


def test_the_spark_hint_adds_the_extra_to_the_clone_flowplan_runs_from(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """README installs flowplan from its clone (`pip install -e .`): 'flowplan[spark]' would
    fetch another flowplan, so the hint names the clone."""
    monkeypatch.chdir(ROOT)
    assert spark_install() == "pip install -e '.[spark]'"
    monkeypatch.chdir(tmp_path)
    assert spark_install() == f"pip install -e '{ROOT.resolve()}[spark]'"
