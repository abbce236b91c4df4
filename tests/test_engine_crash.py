"""Crash safety (docs/engine.md): `kill -9` of the process driving runs, at several points,
then a restart on the same state directory. No run, attempt or log is lost; each attempt's
command runs exactly once; a node process that outlived the daemon is adopted, one that
finished is collected from its record, and one that vanished fails as "lost" and is retried
per policy.

The process driving runs is tests/engine_crash_driver.py. It kills itself at a chosen point
(`--crash-at POINT:NODE`), or the test kills it while a node runs. Every node runs
`sh job.sh`, which appends one line per execution to `count.<node>` (so the test counts
executions), prints to its log, waits while `gate.<node>` exists (so the test decides when
a node ends), and exits with the code given for its attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, running, wait_until

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.repo import read_repo
from flowplan.compiler.store import PlanStore
from flowplan.daemon.domain import Attempt, AttemptStatus, NodeStatus, Run, RunStatus
from flowplan.daemon.engine.engine import LOST
from flowplan.daemon.engine.launcher import (
    RECORD_MODULUS,
    SHIM_ENDED,
    SHIM_ENDED_UNRECORDED,
    SUPERVISOR_NAME,
    LaunchSpec,
    LocalLauncher,
    Recovered,
    process_start,
    read_record,
)
from flowplan.daemon.state.store import StateStore

DRIVER = ROOT / "tests" / "engine_crash_driver.py"
WAIT = 10.0  # seconds: the longest any single wait of these tests may take


def recorded_pid(attempt_dir: Path) -> int | None:
    """The pid of the attempt's node if that very process is alive (or a zombie)."""
    record = read_record(attempt_dir)
    if record is None:
        return None
    start = process_start(record[0])
    return record[0] if start is not None and record[1] == start % RECORD_MODULUS else None

JOB = """\
#!/bin/sh
# sh job.sh [EXIT_CODE_OF_ATTEMPT_1 [EXIT_CODE_OF_ATTEMPT_2 ...]]
here=$(dirname "$0")
echo "$FLOWPLAN_RUN_ID $FLOWPLAN_ATTEMPT" >>"$here/count.$FLOWPLAN_NODE"
echo "output of $FLOWPLAN_NODE attempt $FLOWPLAN_ATTEMPT"
while [ -e "$here/gate.$FLOWPLAN_NODE" ]; do sleep 0.02; done
if [ $# -ge "$FLOWPLAN_ATTEMPT" ]; then shift $((FLOWPLAN_ATTEMPT - 1)); else set --; fi
echo "end of $FLOWPLAN_NODE attempt $FLOWPLAN_ATTEMPT"
exit "${1:-0}"
"""


class Driver:
    """One engine_crash_driver.py process; stdout and stderr go to files."""

    def __init__(self, rig: Rig, number: int, args: list[str]) -> None:
        self.rig = rig
        self.out = rig.tmp / f"driver{number}.out"
        self.err = rig.tmp / f"driver{number}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(DRIVER), "--store", str(rig.store_dir), "--state",
                 str(rig.state_dir), *args], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                stderr=err, start_new_session=True)

    def describe(self) -> str:
        return (f"driver stdout:\n{self.out.read_text()}\n"
                f"driver stderr:\n{self.err.read_text()[-3000:]}")

    def run_id(self) -> str:
        line = wait_until(lambda: self.out.read_text().partition("\n")[0]
                          if self.out.read_text().endswith("\n") else None,
                          "the driver to print its run id")
        assert line.startswith("wr_"), self.describe()
        return str(line)

    def first_logged_at(self) -> datetime:
        """When it logged its first line (its engine starting), from the line's local time."""
        stamp = self.err.read_text()[:23]  # "2026-12-06 12:37:21,959", ms floored
        return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").astimezone(UTC)

    def logged(self, text: str) -> None:
        wait_until(lambda: text in self.err.read_text() or self.process.poll() is not None,
                   f"{text!r} in the driver's log")
        assert text in self.err.read_text(), self.describe()

    def crashed(self) -> None:
        """It killed itself at its --crash-at point."""
        try:
            code = self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the driver did not crash\n{self.describe()}") from None
        assert code == -signal.SIGKILL, self.describe()

    def kill(self) -> None:
        """`kill -9` from outside, of its whole process group (like `kill -9 -PGID`)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        assert self.process.wait(WAIT) == -signal.SIGKILL, self.describe()

    def finished(self) -> None:
        """It drove every run to its end and exited normally."""
        try:
            code = self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the driver did not finish\n{self.describe()}") from None
        assert code == 0, self.describe()
        assert self.out.read_text().splitlines()[-1:] == ["idle"], self.describe()


class Rig:
    """A plan store, a state directory, job.sh with its counters and gates, and drivers."""

    def __init__(self, tmp: Path, make_repo: Any) -> None:
        self.tmp = tmp
        self.make_repo = make_repo
        self.store_dir = tmp / "store"
        self.state_dir = tmp / "state"
        self.work = tmp / "work"
        self.work.mkdir()
        (self.work / "job.sh").write_text(JOB)
        self.drivers: list[Driver] = []

    def publish(self, workflow: str) -> None:
        result = compile_repo(read_repo(self.make_repo({"workflows/w.yaml": workflow})))
        assert result.ok, [str(d) for d in result.diagnostics]
        PlanStore(self.store_dir).publish(result.plans)

    def job(self, *codes: int) -> str:
        return " ".join(["sh", str(self.work / "job.sh"), *map(str, codes)])

    def driver(self, *, create: str | None = None, crash_at: str | None = None,
               cancel_when_running: str | None = None) -> Driver:
        args = (["--create", create] if create else []) + (
            ["--crash-at", crash_at] if crash_at else []) + (
            ["--cancel-when-running", cancel_when_running] if cancel_when_running else [])
        driver = Driver(self, len(self.drivers) + 1, args)
        self.drivers.append(driver)
        return driver

    # ---- the node processes ---------------------------------------------------------------

    def close_gate(self, node: str) -> None:
        (self.work / f"gate.{node}").touch()

    def open_gate(self, node: str) -> None:
        (self.work / f"gate.{node}").unlink(missing_ok=True)

    def executions(self, node: str) -> list[str]:
        """One line `<run id> <attempt>` per execution of the node's command."""
        path = self.work / f"count.{node}"
        return path.read_text().splitlines() if path.exists() else []

    def attempt_dir(self, run_id: str, node: str, number: int) -> Path:
        return self.state_dir / "runs" / run_id / node / str(number)

    def supervisor_pid(self, run_id: str, node: str, number: int) -> int:
        """The pid in the attempt's pid file: the node's process (its group leader)."""
        pid_file = self.attempt_dir(run_id, node, number) / "pid"
        text = wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(),
                          f"{pid_file}")
        return int(text)

    @staticmethod
    def shim_of(pid: int) -> int:
        """The shim that started the node `pid` and reaps it: its parent."""
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        argv = Path(f"/proc/{ppid}/cmdline").read_bytes().split(b"\0")
        assert SUPERVISOR_NAME.encode() in argv, argv
        return ppid

    # ---- the state --------------------------------------------------------------------------

    def run(self, run_id: str) -> Run:
        store = StateStore(self.state_dir)
        try:
            run = store.get_run(run_id)
        finally:
            store.close()
        assert run is not None
        return run

    def attempt(self, run_id: str, node: str, number: int) -> Attempt | None:
        attempts = self.run(run_id).node(node).attempts
        return attempts[number - 1] if len(attempts) >= number else None

    def running_node(self, run_id: str, node: str) -> int:
        """Wait until attempt 1 of `node` runs, with its pid committed; its supervisor pid."""
        wait_until(lambda: self.executions(node), f"{node} to start")
        attempt = wait_until(lambda: (a := self.attempt(run_id, node, 1)) and a.pid and a,
                             f"the pid of {node} committed")
        assert attempt.status is AttemptStatus.RUNNING
        return int(attempt.pid)

    def cleanup(self) -> None:
        """Kill what a failed test may have left: drivers, then attempts' process groups."""
        for driver in self.drivers:
            if driver.process.poll() is None:
                driver.process.kill()
                driver.process.wait(WAIT)
        for gate in self.work.glob("gate.*"):
            gate.unlink()
        for pid_file in self.state_dir.glob("runs/*/*/*/pid"):
            pid = recorded_pid(pid_file.parent)  # still that node, not a reused pid
            if pid is not None:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def rig(tmp_path: Path, make_repo: Any) -> Iterator[Rig]:
    rig = Rig(tmp_path, make_repo)
    try:
        yield rig
    finally:
        rig.cleanup()


def chain(rig: Rig, *, a: str | None = None, b: str | None = None, retries: int = 0,
          retry_delay: str = "0s", timeout: str = "none") -> None:
    """Workflow `w`: a -> b."""
    rig.publish(f"""
name: w
nodes:
  - {{name: a, command: "{a or rig.job()}", retries: {retries}, retry_delay: {retry_delay},
     timeout: {timeout}}}
  - {{name: b, command: "{b or rig.job()}", upstream: [a]}}
""")


def check_attempts(rig: Rig, run: Run, node: str,
                   expected: list[tuple[AttemptStatus, int | None, str | None]], *,
                   check_pid: bool | str = True) -> None:
    """Attempts 1..n with (status, exit code, error prefix); each ran its command once, was
    recorded with its supervisor's pid and start time, and kept its log."""
    attempts = run.node(node).attempts
    got = [(a.status, a.exit_code, a.error) for a in attempts]
    assert [a.number for a in attempts] == list(range(1, len(expected) + 1)), got
    for attempt, (status, code, error) in zip(attempts, expected, strict=True):
        assert (attempt.status, attempt.exit_code) == (status, code), got
        if error is None:
            assert attempt.error is None, got
        else:
            assert attempt.error is not None and attempt.error.startswith(error), got
        assert attempt.finished_at is not None and attempt.started_at <= attempt.finished_at
        folder = rig.attempt_dir(run.run_id, node, attempt.number)
        assert attempt.log_path == str(folder / "log")
        if check_pid:
            assert attempt.pid == int((folder / "pid").read_text()), attempt
        if check_pid is True:
            assert attempt.pid_start is not None, attempt
        log = (folder / "log").read_text()
        assert log.count(f"output of {node} attempt {attempt.number}\n") == 1, log
        if attempt.error is None or not attempt.error.startswith("lost"):
            assert f"end of {node} attempt {attempt.number}\n" in log, log
            assert (folder / "exit").read_text().strip() == str(code)
    assert rig.executions(node) == [f"{run.run_id} {a.number}" for a in attempts]


def check_final(rig: Rig, run_id: str, status: RunStatus, nodes: dict[str, NodeStatus]) -> Run:
    run = rig.run(run_id)
    assert run.status is status, run
    assert run.finished_at is not None
    assert {n.name: n.status for n in run.nodes} == nodes, run.nodes
    store = StateStore(rig.state_dir)
    try:
        assert store.runs_with_status([RunStatus.PENDING, RunStatus.RUNNING]) == []
    finally:
        store.close()
    return run


OK = AttemptStatus.SUCCEEDED
FAILED = AttemptStatus.FAILED
ALL_OK = {"a": NodeStatus.SUCCEEDED, "b": NodeStatus.SUCCEEDED}


# ---- the engine kills itself at a chosen point ---------------------------------------------


def test_crash_after_the_intent_is_committed_before_the_launch(rig):
    chain(rig)
    first = rig.driver(create="w", crash_at="after-intent:a")
    run_id = first.run_id()
    first.crashed()
    attempt = rig.attempt(run_id, "a", 1)
    assert attempt is not None and attempt.status is AttemptStatus.RUNNING
    assert attempt.pid is None
    assert not (rig.attempt_dir(run_id, "a", 1) / "pid").exists()
    assert rig.executions("a") == []

    rig.driver().finished()  # "never started": launched now, as attempt 1
    run = check_final(rig, run_id, RunStatus.SUCCEEDED, ALL_OK)
    check_attempts(rig, run, "a", [(OK, 0, None)])
    check_attempts(rig, run, "b", [(OK, 0, None)])


def test_a_crash_right_after_a_run_fails_keeps_its_failure_email(rig):
    """The on_failure message is recorded in the commit of the run's end: a crash there
    cannot keep the FAILED run and lose the message (before, the row came in a commit of
    its own, just after, and a restart did not make it again)."""
    rig.publish(f"""
name: w
on_failure: {{email: [ops@example.com]}}
nodes:
  - {{name: a, command: "{rig.job(3)}"}}
""")
    first = rig.driver(create="w", crash_at="after-run-end:run")
    run_id = first.run_id()
    first.crashed()
    assert rig.run(run_id).status is RunStatus.FAILED
    rig.driver().finished()  # nothing to recover: the run ended
    store = StateStore(rig.state_dir)
    try:
        rows = store._db.execute("SELECT key, recipients FROM outbox").fetchall()
    finally:
        store.close()
    assert [tuple(r) for r in rows] == [(f"on_failure/{run_id}", '["ops@example.com"]')]


def test_crash_after_the_launch_before_the_pid_is_committed(rig):
    chain(rig)
    rig.close_gate("a")
    first = rig.driver(create="w", crash_at="after-launch:a")
    run_id = first.run_id()
    first.crashed()
    assert rig.attempt(run_id, "a", 1).pid is None  # type: ignore[union-attr]
    pid = rig.supervisor_pid(run_id, "a", 1)
    assert running(pid) and os.getsid(pid) == pid  # its own session: it outlived the daemon
    wait_until(lambda: rig.executions("a"), "a to run")

    second = rig.driver()
    second.logged("node a attempt 1: adopted")
    rig.open_gate("a")
    second.finished()
    run = check_final(rig, run_id, RunStatus.SUCCEEDED, ALL_OK)
    check_attempts(rig, run, "a", [(OK, 0, None)])
    check_attempts(rig, run, "b", [(OK, 0, None)])


def test_crash_between_the_end_of_a_node_and_its_commit(rig):
    chain(rig, a=rig.job(0))
    first = rig.driver(create="w", crash_at="before-finish:a")
    run_id = first.run_id()
    first.crashed()
    attempt = rig.attempt(run_id, "a", 1)
    assert attempt is not None and attempt.status is AttemptStatus.RUNNING  # not committed
    assert (rig.attempt_dir(run_id, "a", 1) / "exit").read_text().strip() == "0"
    assert rig.executions("b") == []

    rig.driver().finished()  # collected from the exit file, not run again
    run = check_final(rig, run_id, RunStatus.SUCCEEDED, ALL_OK)
    check_attempts(rig, run, "a", [(OK, 0, None)])
    check_attempts(rig, run, "b", [(OK, 0, None)])


def test_crash_between_the_end_of_a_failed_node_and_its_commit(rig):
    chain(rig, a=rig.job(3))
    first = rig.driver(create="w", crash_at="before-finish:a")
    run_id = first.run_id()
    first.crashed()

    rig.driver().finished()
    run = check_final(rig, run_id, RunStatus.FAILED,
                      {"a": NodeStatus.FAILED, "b": NodeStatus.SKIPPED})
    check_attempts(rig, run, "a", [(FAILED, 3, "exited with code 3")])
    assert run.node("b").attempts == ()
    assert rig.executions("b") == []


def test_crash_after_the_commit_before_the_downstream_node_starts(rig):
    chain(rig)
    first = rig.driver(create="w", crash_at="after-finish:a")
    run_id = first.run_id()
    first.crashed()
    assert rig.run(run_id).node("a").status is NodeStatus.SUCCEEDED
    assert rig.run(run_id).node("b").status is NodeStatus.PENDING

    rig.driver().finished()
    run = check_final(rig, run_id, RunStatus.SUCCEEDED, ALL_OK)
    check_attempts(rig, run, "a", [(OK, 0, None)])
    check_attempts(rig, run, "b", [(OK, 0, None)])


def test_crash_while_a_retry_is_due_keeps_the_retry_delay(rig):
    chain(rig, a=rig.job(1, 0), retries=1, retry_delay="1s")
    first = rig.driver(create="w", crash_at="after-finish:a")
    run_id = first.run_id()
    first.crashed()
    stored = rig.run(run_id).node("a")
    assert stored.status is NodeStatus.RETRYING and stored.next_attempt_at is not None

    rig.driver().finished()
    run = check_final(rig, run_id, RunStatus.SUCCEEDED, ALL_OK)
    check_attempts(rig, run, "a", [(FAILED, 1, "exited with code 1"), (OK, 0, None)])
    check_attempts(rig, run, "b", [(OK, 0, None)])
    second = run.node("a").attempts[1]
    assert second.started_at >= stored.next_attempt_at


def test_repeated_crashes_at_every_point_of_one_run(rig):
    chain(rig)
    first = rig.driver(create="w", crash_at="after-intent:a")
    run_id = first.run_id()
    first.crashed()
    for point in ("before-finish:a", "after-finish:a", "after-intent:b", "after-launch:b",
                  "before-finish:b"):
        rig.driver(crash_at=point).crashed()
    assert rig.run(run_id).status is RunStatus.RUNNING

    rig.driver().finished()
    run = check_final(rig, run_id, RunStatus.SUCCEEDED, ALL_OK)
    check_attempts(rig, run, "a", [(OK, 0, None)])
    # b was launched, then the crash came before its pid was stored, and it ended before
    # the next start: its pid is read back from its pid file, its start time is gone
    check_attempts(rig, run, "b", [(OK, 0, None)], check_pid="pid only")


# ---- the test kills the engine while a node runs -------------------------------------------


def killed_during_a(rig, **chain_options):
    """A chain whose node `a` (held by its gate) runs when the engine is killed: the run id
    and a's pid."""
    chain(rig, **chain_options)
    rig.close_gate("a")
    first = rig.driver(create="w")
    run_id = first.run_id()
    pid = rig.running_node(run_id, "a")
    first.kill()
    return run_id, pid


def kill_the_shim_of(rig, pid):
    shim = rig.shim_of(pid)
    os.kill(shim, signal.SIGKILL)
    wait_until(lambda: not running(shim), "the shim to die")


def test_kill_during_a_node_adopts_the_running_process(rig):
    run_id, pid = killed_during_a(rig)
    assert pid == rig.supervisor_pid(run_id, "a", 1)
    assert running(pid) and os.getsid(pid) == pid  # survived the daemon, in its own session
    recorded = rig.attempt(run_id, "a", 1)
    assert recorded is not None and recorded.pid_start == process_start(pid)

    second = rig.driver()
    second.logged("node a attempt 1: adopted")
    rig.open_gate("a")  # the node ends only now, under the new process
    second.finished()
    run = check_final(rig, run_id, RunStatus.SUCCEEDED, ALL_OK)
    check_attempts(rig, run, "a", [(OK, 0, None)])
    check_attempts(rig, run, "b", [(OK, 0, None)])
    assert run.node("a").attempts[0].pid == pid


def _a_ends_while_the_engine_is_down(rig: Rig) -> tuple[str, Path]:
    """A run of `w` whose node a runs, the driver killed, then a ends with no engine up:
    the run id and a's exit file."""
    rig.close_gate("a")
    first = rig.driver(create="w")
    run_id = first.run_id()
    pid = rig.running_node(run_id, "a")
    first.kill()
    exit_file = rig.attempt_dir(run_id, "a", 1) / "exit"
    rig.open_gate("a")
    wait_until(exit_file.exists, "the exit file")
    wait_until(lambda: not running(pid), "the supervisor to end")
    return run_id, exit_file


@pytest.mark.parametrize(("retries", "codes", "expected"), [
    (0, (0,), [(OK, 0, None)]),
    (0, (4,), [(FAILED, 4, "exited with code 4")]),
    (1, (4, 0), [(FAILED, 4, "exited with code 4"), (OK, 0, None)]),
], ids=["succeeded", "failed", "failed-then-retried"])
def test_kill_during_a_node_that_finishes_while_the_engine_is_down(rig, retries, codes,
                                                                   expected):
    chain(rig, a=rig.job(*codes), retries=retries)
    run_id, _ = _a_ends_while_the_engine_is_down(rig)

    rig.driver().finished()  # collected from its record, the retry (if any) launched
    if expected[-1][0] is OK:
        run = check_final(rig, run_id, RunStatus.SUCCEEDED, ALL_OK)
        check_attempts(rig, run, "b", [(OK, 0, None)])
    else:
        run = check_final(rig, run_id, RunStatus.FAILED,
                          {"a": NodeStatus.FAILED, "b": NodeStatus.SKIPPED})
        assert rig.executions("b") == []
    check_attempts(rig, run, "a", expected)


def test_a_node_that_ends_while_the_engine_is_down_ends_then_not_at_the_restart(rig):
    """Its attempt's finished_at is when it ended (the exit file's time), and its retry is
    due `retry_delay` after that: the downtime does not delay the retry."""
    chain(rig, a=rig.job(3, 0), retries=1, retry_delay="4s")
    run_id, exit_file = _a_ends_while_the_engine_is_down(rig)
    stat = exit_file.stat()
    ended = datetime.fromtimestamp(stat.st_mtime_ns // 1000 / 1_000_000, UTC)
    time.sleep(1.0)  # the engine stays down a while after the node ended

    restarted = datetime.now(UTC)
    rig.driver().finished()
    run = check_final(rig, run_id, RunStatus.SUCCEEDED, ALL_OK)
    check_attempts(rig, run, "a", [(FAILED, 3, "exited with code 3"), (OK, 0, None)])
    first_attempt, second_attempt = run.node("a").attempts
    assert first_attempt.finished_at is not None
    assert abs(first_attempt.finished_at - ended) < timedelta(milliseconds=1)
    assert first_attempt.finished_at < restarted
    # due 4 s after the node's end (about 3 s after the restart), not 4 s after the restart
    assert first_attempt.finished_at + timedelta(seconds=4) <= second_attempt.started_at
    assert second_attempt.started_at < restarted + timedelta(seconds=4)


@pytest.mark.parametrize("retries", [1, 0])
def test_kill_during_a_node_whose_process_vanishes_fails_it_as_lost(rig, retries):
    run_id, pid = killed_during_a(rig, retries=retries)
    # the node and its supervisor, while the daemon is down: the shim first, so that nothing
    # records the node's end
    kill_the_shim_of(rig, pid)
    os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: not running(pid), "the node to die")
    rig.open_gate("a")  # attempt 2, if any, runs through

    rig.driver().finished()
    if retries:
        run = check_final(rig, run_id, RunStatus.SUCCEEDED, ALL_OK)
        check_attempts(rig, run, "a", [(FAILED, None, "lost"), (OK, 0, None)])
        check_attempts(rig, run, "b", [(OK, 0, None)])
    else:
        run = check_final(rig, run_id, RunStatus.FAILED,
                          {"a": NodeStatus.FAILED, "b": NodeStatus.SKIPPED})
        check_attempts(rig, run, "a", [(FAILED, None, "lost")])
        assert rig.executions("b") == []
    assert run.node("a").attempts[0].error == LOST
    assert not (rig.attempt_dir(run_id, "a", 1) / "exit").exists()


def test_kill_during_a_node_killed_while_the_engine_is_down_collects_its_signal(rig):
    run_id, pid = killed_during_a(rig, retries=1)
    os.killpg(pid, signal.SIGKILL)  # the node's group only: its shim lives and records it
    exit_file = rig.attempt_dir(run_id, "a", 1) / "exit"
    wait_until(exit_file.exists, "the exit file written by the shim")
    assert exit_file.read_text() == "137\n"
    rig.open_gate("a")

    rig.driver().finished()
    run = check_final(rig, run_id, RunStatus.SUCCEEDED, ALL_OK)
    attempts = run.node("a").attempts
    assert [(a.status, a.exit_code, a.error) for a in attempts] == [
        (FAILED, 137, "exited with code 137 (killed by SIGKILL)"), (OK, 0, None)]
    assert rig.executions("a") == [f"{run_id} 1", f"{run_id} 2"]
    check_attempts(rig, run, "b", [(OK, 0, None)])


def test_kill_of_the_daemon_and_the_shim_kills_the_orphaned_node_and_fails_it_as_lost(rig):
    run_id, pid = killed_during_a(rig, retries=1)
    kill_the_shim_of(rig, pid)  # the node runs on, unsupervised: nothing records its end
    assert running(pid)

    second = rig.driver()
    second.logged("node a attempt 1: lost")
    wait_until(lambda: not running(pid), "the restart to kill the orphaned node")
    rig.open_gate("a")  # attempt 2 runs through
    second.finished()
    run = check_final(rig, run_id, RunStatus.SUCCEEDED, ALL_OK)
    attempts = run.node("a").attempts
    assert [(a.status, a.exit_code, a.error) for a in attempts] == [
        (FAILED, None, LOST), (OK, 0, None)]
    assert rig.executions("a") == [f"{run_id} 1", f"{run_id} 2"]  # attempt 1 killed first
    assert not (rig.attempt_dir(run_id, "a", 1) / "exit").exists()
    log = (rig.attempt_dir(run_id, "a", 1) / "log").read_text()
    assert "end of a attempt 1" not in log


def test_kill_of_the_shim_while_the_engine_runs_kills_the_node_and_retries_it(rig):
    chain(rig, retries=1)
    rig.close_gate("a")
    driver = rig.driver(create="w")
    run_id = driver.run_id()
    pid = rig.running_node(run_id, "a")
    os.kill(rig.shim_of(pid), signal.SIGKILL)
    driver.logged("the shim ended while pid")
    wait_until(lambda: not running(pid), "the engine to kill the orphaned node")
    rig.open_gate("a")  # attempt 2 runs under a new shim
    driver.finished()
    run = check_final(rig, run_id, RunStatus.SUCCEEDED, ALL_OK)
    attempts = run.node("a").attempts
    assert [(a.status, a.exit_code, a.error) for a in attempts] == [
        (FAILED, None, SHIM_ENDED), (OK, 0, None)]  # not a 137 the node never exited with
    assert rig.executions("a") == [f"{run_id} 1", f"{run_id} 2"]
    assert not (rig.attempt_dir(run_id, "a", 1) / "exit").exists()
    check_attempts(rig, run, "b", [(OK, 0, None)])


def test_an_adopted_node_whose_shim_dies_is_failed_as_lost_and_retried(rig):
    run_id, pid = killed_during_a(rig, retries=1)
    second = rig.driver()
    second.logged("node a attempt 1: adopted")
    kill_the_shim_of(rig, pid)  # nothing can record how the adopted node ends any more
    rig.open_gate("a")  # attempt 1 ends unrecorded; attempt 2 runs under a new shim
    second.finished()
    run = check_final(rig, run_id, RunStatus.SUCCEEDED, ALL_OK)
    attempts = run.node("a").attempts
    assert [(a.status, a.exit_code, a.error) for a in attempts] == [
        (FAILED, None, SHIM_ENDED_UNRECORDED), (OK, 0, None)]
    assert not (rig.attempt_dir(run_id, "a", 1) / "exit").exists()
    second.logged("ended without recording its status")


def test_kill_during_a_node_keeps_its_timeout_running(rig):
    chain(rig, timeout="1s")
    rig.close_gate("a")  # never opened: only the timeout ends the node
    first = rig.driver(create="w")
    run_id = first.run_id()
    pid = rig.running_node(run_id, "a")
    first.kill()
    time.sleep(1.2)  # the timeout expires while the engine is down

    second = rig.driver()
    second.logged("node a attempt 1: adopted")
    second.finished()  # adopted with no time left: TERM at once, not one more second
    restarted = second.first_logged_at()  # not before its start: Python's start-up may be slow
    run = check_final(rig, run_id, RunStatus.FAILED,
                      {"a": NodeStatus.FAILED, "b": NodeStatus.SKIPPED})
    attempt = run.node("a").attempts[0]
    assert (attempt.status, attempt.exit_code, attempt.error) == (
        FAILED, 143, "timed out after 1s")
    assert attempt.finished_at is not None
    # not a fresh second of timeout after the restart (that would end past `restarted + 1s`)
    assert attempt.finished_at - restarted < timedelta(seconds=1)
    assert rig.executions("a") == [f"{run_id} 1"]
    assert not running(pid)


# ---- cancel and crash ------------------------------------------------------------------------


def test_cancel_of_a_running_node_without_a_crash(rig):
    chain(rig, retries=1)
    rig.close_gate("a")
    driver = rig.driver(create="w", cancel_when_running="a")
    run_id = driver.run_id()
    driver.finished()
    run = check_final(rig, run_id, RunStatus.CANCELLED,
                      {"a": NodeStatus.CANCELLED, "b": NodeStatus.CANCELLED})
    attempt = run.node("a").attempts[0]
    assert (attempt.status, attempt.exit_code, attempt.error) == (
        AttemptStatus.CANCELLED, 143, "cancelled")
    assert rig.executions("a") == [f"{run_id} 1"]


def test_crash_between_the_kill_of_a_cancelled_node_and_its_commit(rig):
    chain(rig, retries=1)
    rig.close_gate("a")
    first = rig.driver(create="w", cancel_when_running="a", crash_at="before-finish:a")
    run_id = first.run_id()
    first.crashed()
    assert (rig.attempt_dir(run_id, "a", 1) / "exit").read_text().strip() == "143"
    assert rig.run(run_id).node("b").status is NodeStatus.CANCELLED  # committed by the cancel
    rig.open_gate("a")  # so that a wrongful attempt 2 ends at once

    rig.driver().finished()
    run = check_final(rig, run_id, RunStatus.CANCELLED,
                      {"a": NodeStatus.CANCELLED, "b": NodeStatus.CANCELLED})
    assert rig.executions("a") == [f"{run_id} 1"]
    attempt = run.node("a").attempts[0]
    assert (attempt.status, attempt.exit_code) == (AttemptStatus.CANCELLED, 143)


# ---- the record of each attempt's process ------------------------------------------------------


def test_an_adopted_attempt_is_recorded_with_its_pid_and_start_time(rig):
    chain(rig)
    rig.close_gate("a")
    first = rig.driver(create="w", crash_at="after-launch:a")
    run_id = first.run_id()
    first.crashed()
    pid = rig.supervisor_pid(run_id, "a", 1)
    start = process_start(pid)

    second = rig.driver()
    second.logged("node a attempt 1: adopted")
    rig.open_gate("a")
    second.finished()
    attempt = rig.run(run_id).node("a").attempts[0]
    assert (attempt.pid, attempt.pid_start) == (pid, start)


def test_recovery_adopts_only_its_own_supervisor_never_a_reused_pid(tmp_path):
    launcher = LocalLauncher()
    folder = tmp_path / "attempt"

    async def main() -> None:
        handle = await launcher.launch(LaunchSpec(
            argv=("sleep", "30"), env=dict(os.environ), cwd=tmp_path, attempt_dir=folder))
        try:
            wait_until((folder / "pid").exists, "the pid file")
            start = process_start(handle.pid)
            assert start is not None
            assert launcher.recover(folder, handle.pid, start).handle is not None
            assert launcher.recover(folder, None, None).handle is not None  # from the pid file
            # the same pid with another start time, or naming another attempt: a reused pid
            assert launcher.recover(folder, handle.pid, start + 1) == Recovered(lost=True,
                                                                             pid=handle.pid)
            other = tmp_path / "other"
            other.mkdir()
            (other / "pid").write_text(f"{handle.pid}\n")
            assert launcher.recover(other, handle.pid, start) == Recovered(lost=True,
                                                                           pid=handle.pid)
            assert launcher.recover(tmp_path / "never", None, None) == Recovered(
                never_started=True)
        finally:
            handle.signal_group(signal.SIGKILL)
            assert await asyncio.wait_for(handle.wait(), WAIT) == 128 + signal.SIGKILL
        (folder / "exit").write_text("0\n")
        os.utime(folder / "exit", (1_700_000_000, 1_700_000_000))
        assert launcher.recover(folder, handle.pid, start) == Recovered(
            exit_code=0, pid=handle.pid, ended_at=datetime.fromtimestamp(1_700_000_000, UTC))

    asyncio.run(main())
