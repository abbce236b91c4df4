"""`Type=notify` readiness without systemd: a test plays the service manager's socket, and
the unit shipped in docs/ is the one docs/operations.md shows."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import grpc
from conftest import FLOWPLAN, ROOT
from daemon_harness import free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _receive(sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    return sock.recv(4096).decode()


def test_ready_is_sent_once_serving_and_stopping_at_shutdown(tmp_path: Path) -> None:
    manager = tmp_path / "notify.sock"
    address = f"127.0.0.1:{free_port()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(manager))
        log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            [*FLOWPLAN, "serve", "--store", str(tmp_path / "store"),
             "--state", str(tmp_path / "state"), "--listen", address],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "NOTIFY_SOCKET": str(manager)})
        try:
            ready = _receive(sock, 60)
            assert ready.split("\n")[0] == "READY=1"
            assert f"STATUS=serving on {address}" in ready.split("\n")
            assert f"MAINPID={process.pid}" in ready.split("\n")
            # ready means serving: the first health check right after it answers SERVING
            with grpc.insecure_channel(address) as channel:
                status = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
            process.send_signal(signal.SIGTERM)
            assert _receive(sock, 30) == "STOPPING=1"
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()


def test_an_unreachable_notify_socket_is_logged_and_the_daemon_serves_on(tmp_path: Path
                                                                          ) -> None:
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [*FLOWPLAN, "serve", "--store", str(tmp_path / "store"),
         "--state", str(tmp_path / "state"), "--listen", address],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    try:
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 60
            while True:
                assert time.monotonic() < deadline, "the daemon did not serve"
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
                            health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "could not tell the service manager 'READY=1'" in output


def test_the_shipped_unit_is_the_one_operations_md_shows() -> None:
    unit = (ROOT / "docs" / "flowplan.service").read_text(encoding="utf-8")
    page = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert f"```ini\n{unit}```" in page
    assert "Type=notify" in unit and "KillMode=process" in unit
