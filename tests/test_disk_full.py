"""A full disk under the state directory, for real: `flowplan serve` on a small tmpfs.

While commits fail the daemon keeps what it learned in memory, answers calls that would
write with UNAVAILABLE, reports NOT_SERVING, and records the real outcome once space is
freed; a daemon killed meanwhile fails the attempt as `lost` at its next start.

A reader transaction held by the test (`pin_wal`) keeps SQLite from restarting the WAL
from its beginning, so every commit needs new space (else a commit may fit in WAL space that
a checkpoint freed, and nothing would fail).
"""

from __future__ import annotations

import errno
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import MakeRepo, wait_until
from daemon_harness import Daemon, flowplan, pb, publish
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
    "workflows/big.yaml": """
        name: big
        params: {flag: ""}
        nodes:
          - {name: write, command: "while [ ! -e ${params.flag} ]; do sleep 0.02; done; exit 3"}
          - {name: after, command: "echo after", upstream: [write], trigger: all_done}
        """,
}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB tmpfs for the state directory."""
    state = tmp_path / "state"
    state.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(state)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def fill(path: Path) -> None:
    """Write `path` until the disk has no byte left."""
    with open(path, "wb", buffering=0) as file:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    file.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC


def pin_wal(path: Path) -> sqlite3.Connection:
    """A reader whose snapshot ends at the end of the WAL file: while it is open, SQLite
    cannot restart the WAL from its beginning, so every commit needs new space.

    Commits of the header's unchanged user_version (one frame each) go on until one lands
    past the file's old end: a WAL restarted earlier rewrites a file that is longer than
    what it holds. (A reader that begins on a fully checkpointed WAL would pin nothing:
    the last of those commits is right before it.)"""
    reader = sqlite3.connect(path, isolation_level=None)
    wal = path.with_name(path.name + "-wal")
    end = wal.stat().st_size
    version = reader.execute("PRAGMA user_version").fetchone()[0]
    while True:
        reader.execute(f"PRAGMA user_version={int(version)}")
        if wal.stat().st_size > end:
            break
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM runs").fetchone()
    return reader


def health(d: Daemon) -> int:
    stub = health_pb2_grpc.HealthStub(d.channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(service="flowplan.v1.WorkflowService"),
                          timeout=5).status)


def attempt(d: Daemon, run_id: str, node: str) -> pb.Attempt | None:
    run = d.call("GetRun", pb.GetRunRequest(run_id=run_id, include_graph=True)).run
    attempts = next(n for n in run.nodes if n.name == node).attempts
    return attempts[-1] if attempts else None


@pytest.mark.parametrize("then", ["space-freed", "daemon-restarted"])
def test_a_full_disk_keeps_the_outcome_until_it_can_be_written(
        make_repo: MakeRepo, tmp_path: Path, small_disk: Path, then: str) -> None:
    store = tmp_path / "store"
    publish(make_repo(FILES), store)
    flag = tmp_path / "flag"
    d = Daemon(store, small_disk)
    reader: sqlite3.Connection | None = None
    try:
        flag_param = struct_pb2.Struct()
        flag_param.update({"flag": str(flag)})
        run = d.call("StartRun", pb.StartRunRequest(workflow="big", params=flag_param)).run
        wait_until(lambda: attempt(d, run.run_id, "write"), "the node to start")
        reader = pin_wal(small_disk / "state.sqlite3")
        fill(small_disk / "filler")
        flag.touch()  # the node exits 3: neither its exit file nor its result can be written

        wait_until(lambda: health(d) == health_pb2.HealthCheckResponse.NOT_SERVING,
                   "health NOT_SERVING while commits fail")
        with pytest.raises(grpc.RpcError) as refused:
            d.call("StartRun", pb.StartRunRequest(workflow="big", params=flag_param))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "database or disk is full: nothing was changed" in refused.value.details()
        cli = flowplan("run", "big", "--address", d.address, check=False)
        assert cli.returncode == 1 and "is the daemon running" not in cli.stderr  # reached
        assert "hint: the daemon answered but cannot take this call now" in cli.stderr
        running = attempt(d, run.run_id, "write")
        assert running is not None and running.status == pb.ATTEMPT_STATUS_RUNNING
        assert "cannot write the state database" in d.output()
        d.call("ListNotifications", pb.ListNotificationsRequest())  # a read proves nothing
        assert "can be written again" not in d.output()
        assert health(d) == health_pb2.HealthCheckResponse.NOT_SERVING

        if then == "daemon-restarted":
            d.stop(signal.SIGKILL)  # the outcome was only in memory
        reader.close()
        reader = None
        (small_disk / "filler").unlink()
        if then == "daemon-restarted":
            d = Daemon(store, small_disk)
        else:
            wait_until(lambda: health(d) == health_pb2.HealthCheckResponse.SERVING,
                       "health SERVING once the disk has room")
        finished = d.wait_run(run.run_id)
        assert finished.status == pb.RUN_STATUS_FAILED
        nodes = {n.name: n for n in finished.nodes}
        [ended] = nodes["write"].attempts
        assert ended.status == pb.ATTEMPT_STATUS_FAILED
        if then == "space-freed":  # learned from the shim over its socket, kept in memory
            assert ended.exit_code == 3 and ended.error == "exited with code 3"
            assert "can be written again" in d.output()
        else:  # no exit file could be written: the status is truly lost
            assert not ended.HasField("exit_code")
            assert ended.error.startswith("lost: the node ended but its exit status could not"
                                          " be written")
        assert nodes["after"].status == pb.NODE_STATUS_SUCCEEDED
        assert d.stop() == 0
    finally:
        if reader is not None:
            reader.close()
        if d.process.poll() is None:
            d.stop(signal.SIGKILL)

