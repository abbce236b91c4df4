"""`flowplan serve` as a real process on a free loopback port, and a gRPC stub for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from conftest import FLOWPLAN, ROOT
from grpc_health.v1 import health_pb2, health_pb2_grpc

from flowplan.v1 import workflow_service_pb2 as pb
from flowplan.v1 import workflow_service_pb2_grpc as pb_grpc

__all__ = ["Daemon", "flowplan", "free_port", "pb", "publish", "read_head", "serving"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_head(sock: socket.socket) -> bytes:
    """What `sock` received up to the end of an HTTP head: fails if the daemon closes first
    (an empty recv would otherwise be taken again and again, for good)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        assert chunk, f"the daemon closed the connection after {head!r}"
        head += chunk
    return head


def flowplan(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*FLOWPLAN, *map(str, args)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(result.stdout + result.stderr)
    return result


def publish(repo: Path, store: Path, remarks: str = "") -> None:
    flowplan("publish", repo, "--store", store, "--remarks", remarks)


class Daemon:
    """A running `flowplan serve`; `stub` talks to it."""

    def __init__(self, store: Path, state: Path, *, extra: Sequence[str] = (),
                 port: int | None = None, token: str | None = None,
                 credentials: grpc.ChannelCredentials | None = None,
                 open_files: tuple[int, int] | None = None) -> None:
        self.store, self.state = store, state
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.token = token
        self.log = state.parent / f"daemon-{self.port}.log"
        state.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        command = [*FLOWPLAN, "serve", "--store", str(store),
                   "--state", str(state), "--listen", self.address, "--kill-grace", "2", *extra]
        if open_files is not None:  # (soft, hard) RLIMIT_NOFILE, set by a process that execs
            command[1:1] = ["-c", _WITH_OPEN_FILES, *map(str, open_files)]
        self.process = subprocess.Popen(
            command,
            stdout=self._log_file, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.channel = (grpc.secure_channel(self.address, credentials) if credentials
                        else grpc.insecure_channel(self.address))
        self.stub = pb_grpc.WorkflowServiceStub(self.channel)
        try:
            serving(self.channel, self.process, self.log)
        except AssertionError:  # a daemon that never serves must not outlive the test
            self.stop(signal.SIGKILL)
            raise

    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.token}")] if self.token else []

    def call(self, method: str, request: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("metadata", self.metadata())
        return getattr(self.stub, method)(request, **kwargs)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout)
        self.channel.close()
        self._log_file.close()
        return code

    def wait_run(self, run_id: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.call("GetRun", pb.GetRunRequest(run_id=run_id, include_graph=True)).run
            if run.status in (pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED,
                              pb.RUN_STATUS_CANCELLED):
                return run
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} did not finish in {timeout}s")


_WITH_OPEN_FILES = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE,"
                    " (int(sys.argv[1]), int(sys.argv[2])));"
                    " os.execv(sys.executable, [sys.executable, *sys.argv[3:]])")


def serving(channel: grpc.Channel, process: subprocess.Popen[bytes], log: Path,
            timeout: float = 30) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the daemon exited with {process.returncode}:\n"
                                 + log.read_text(errors="replace"))
        try:
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    raise AssertionError("the daemon did not start serving:\n" + log.read_text(errors="replace"))


@contextmanager
def running_daemon(store: Path, state: Path, **kwargs: Any) -> Iterator[Daemon]:
    daemon = Daemon(store, state, **kwargs)
    try:
        yield daemon
    finally:
        if daemon.process.poll() is None:
            daemon.stop(signal.SIGKILL)
