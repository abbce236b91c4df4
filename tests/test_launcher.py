"""The local launcher and its shim (daemon/engine/launcher.py, daemon/engine/shim.py) with real
processes: exit codes, signals, process-group kills, logs, the records in the attempt folder,
and what a restarted daemon finds after the daemon, the shim or the node died."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import marshal
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, marked, running, wait_until

from flowplan.daemon.engine import launcher as launcher_module
from flowplan.daemon.engine import shim
from flowplan.daemon.engine.launcher import (
    SUPERVISOR_NAME,
    LaunchSpec,
    LocalLauncher,
    ProcessHandle,
    ProcessLostError,
    Recovered,
    process_start,
    read_end,
    read_exit,
    read_record,
)

WAIT = 10.0
TICK = timedelta(milliseconds=20)


def run(body: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(body(), 30))


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def is_shim(pid: int) -> bool:
    try:
        return SUPERVISOR_NAME.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(
            b"\0")
    except OSError:
        return False


class Attempts:
    """Attempt folders under tmp, and the process groups to kill if a test fails."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.count = 0
        self.groups: list[tuple[int, int | None]] = []

    def spec(self, *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             folder: Path | None = None) -> LaunchSpec:
        self.count += 1
        return LaunchSpec(argv=argv, env=dict(os.environ) if env is None else env,
                          cwd=cwd or self.tmp,
                          attempt_dir=folder or self.tmp / "runs" / f"n{self.count}" / "1")

    def track(self, handle: ProcessHandle) -> ProcessHandle:
        self.groups.append((handle.pid, process_start(handle.pid)))
        return handle

    def cleanup(self) -> None:
        for pid, start in self.groups:
            if start is not None and process_start(pid) == start:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def attempts(tmp_path: Path) -> Iterator[Attempts]:
    made = Attempts(tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


# ---- launching -------------------------------------------------------------------------------


def test_exit_codes_signals_log_and_records(attempts):
    launcher = LocalLauncher()

    async def body() -> None:
        spec = attempts.spec("/bin/sh", "-c", "echo out; echo err >&2; read x || echo eof;"
                             " exit 3")
        handle = await launcher.launch(spec)
        start = process_start(handle.pid)
        assert await handle.wait() == 3
        assert await handle.wait() == 3  # again: the same answer
        folder = spec.attempt_dir
        assert (folder / "log").read_text() == "out\nerr\neof\n"  # stdin is /dev/null
        assert read_exit(folder) == 3
        assert (folder / "exit").read_text() == "3\n"
        assert int((folder / "pid").read_text()) == handle.pid
        assert start is not None and read_record(folder) == (handle.pid, start)
        assert sorted(p.name for p in folder.iterdir()) in (
            ["exit", "log", "pid"], ["cgroup", "exit", "log", "pid"])  # with a cgroup v2

        for signum in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
            handle = await launcher.launch(attempts.spec("/bin/sh", "-c", f"kill -{signum} $$"))
            assert await handle.wait() == 128 + signum

    run(body)


def test_a_node_starts_with_every_signal_at_its_default_whatever_the_daemon_ignores(attempts):
    """A daemon inherits ignored signals (SIGQUIT with `&` from a script, SIGHUP under nohup)
    and blocked ones from what started it, and so does its shim. Its nodes must not: a
    node's `kill -INT`, or a signal it waits for, would do nothing."""
    launcher = LocalLauncher()  # its shim starts with the first launch, in `run` below
    ignored = (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1)

    async def body() -> None:
        handle = await launcher.launch(attempts.spec("/bin/sh", "-c", "kill -INT $$; echo on"))
        assert await handle.wait() == 128 + signal.SIGINT
        # grep itself, not through a shell: dash clears its signal mask as it starts
        spec = attempts.spec("grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status")
        assert await (await launcher.launch(spec)).wait() == 0
        masks = dict(line.split(":\t") for line in
                     (spec.attempt_dir / "log").read_text().splitlines())
        assert int(masks["SigBlk"], 16) == 0, masks
        # glibc's posix_spawn ignores its own two internal signals (32 and 33), no one else's
        assert [signum for signum in signal.valid_signals()
                if int(masks["SigIgn"], 16) >> (signum - 1) & 1] == [], masks

    before = {signum: signal.signal(signum, signal.SIG_IGN) for signum in ignored}
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        run(body)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_node_runs_in_its_own_session_with_its_cwd_env_and_path(attempts, tmp_path):
    launcher = LocalLauncher()
    work = tmp_path / "work"
    work.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "mytool"
    tool.write_text("#!/bin/sh\necho tool \"$@\" $FLOWPLAN_X $(pwd)\n"
                    "ps -o sid=,pgid= -p $$ | tr -s ' '\n")
    tool.chmod(0o755)

    async def body() -> None:
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FLOWPLAN_X": "x1"}
        spec = attempts.spec("mytool", "a b", env=env, cwd=work)
        handle = await launcher.launch(spec)
        assert await handle.wait() == 0
        first, second = spec.log_path.read_text().splitlines()
        assert first == f"tool a b x1 {work}"
        sid, pgid = second.split()
        assert int(sid) == int(pgid) == handle.pid  # its own session and process group

    run(body)


def test_a_missing_working_directory_is_created_with_its_folders(attempts, tmp_path):
    launcher = LocalLauncher()
    work = tmp_path / "runs" / "r1" / "workspace"

    async def body() -> None:
        spec = attempts.spec("/bin/sh", "-c", "pwd", cwd=work)
        handle = await launcher.launch(spec)
        assert await handle.wait() == 0
        assert spec.log_path.read_text() == f"{work}\n"

    run(body)


def test_a_command_that_cannot_run_exits_127_or_126_with_a_message(attempts, tmp_path):
    launcher = LocalLauncher()
    plain = tmp_path / "plain.txt"
    plain.write_text("not a program\n")

    async def body() -> None:
        spec = attempts.spec("/nonexistent/python3", "x.py")
        handle = await launcher.launch(spec)
        assert await handle.wait() == 127
        assert "/nonexistent/python3" in spec.log_path.read_text()
        assert read_exit(spec.attempt_dir) == 127
        spec = attempts.spec("no-such-command-here", env={"PATH": "/nonexistent"})
        assert await (await launcher.launch(spec)).wait() == 127
        spec = attempts.spec(str(plain))
        assert await (await launcher.launch(spec)).wait() == 126
        assert "Permission denied" in spec.log_path.read_text()

    run(body)


def test_launch_errors_raise_and_an_attempt_is_never_launched_twice(attempts, tmp_path):
    launcher = LocalLauncher()
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")

    async def body() -> None:
        with pytest.raises(NotADirectoryError):
            await launcher.launch(attempts.spec("true", cwd=not_a_folder))
        spec = attempts.spec("true")
        assert await (await launcher.launch(spec)).wait() == 0
        again = LaunchSpec(argv=("/bin/sh", "-c", "echo second run"), env=spec.env,
                           cwd=spec.cwd, attempt_dir=spec.attempt_dir)
        with pytest.raises(FileExistsError):  # its log is the claim: it exists already
            await launcher.launch(again)
        assert spec.log_path.read_text() == ""
        assert await (await launcher.launch(attempts.spec("true"))).wait() == 0  # still up

    run(body)


def test_signal_group_kills_the_whole_process_tree(attempts, tmp_path):
    launcher = LocalLauncher()
    grandchild = tmp_path / "grandchild.pid"

    async def body() -> None:
        handle = attempts.track(await launcher.launch(attempts.spec(
            "/bin/sh", "-c", f"sleep 60 & echo $! > {grandchild}; wait")))
        pid = int(wait_until(lambda: grandchild.exists() and grandchild.read_text().strip(),
                             "the grandchild"))
        handle.signal_group(signal.SIGTERM)
        assert await handle.wait() == 128 + signal.SIGTERM
        wait_until(lambda: not running(pid), "the grandchild to die")
        handle.signal_group(signal.SIGKILL)  # after its end: ignored, whoever has the pid now

    run(body)


@pytest.fixture(params=["cgroups", "process-group"])
def kill_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test twice: with a cgroup per attempt where this machine allows one, and with the
    process group alone (the shim reads FLOWPLAN_CGROUPS when it starts: one per event loop)."""
    if request.param == "process-group":
        monkeypatch.setenv(shim.CGROUP_SWITCH, "off")
    return str(request.param)


def with_cgroups() -> bool:
    """Can a shim on this machine give each attempt a cgroup?"""
    made = shim.make_cgroups()
    if made is None:
        return False
    os.rmdir(made[0])
    return True


def state_of(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test_a_node_that_ends_leaves_nothing_of_its_group(attempts, tmp_path, kill_path):
    """Exit 0 or not, what the node left behind in its group is killed when it ends."""
    launcher = LocalLauncher()
    mark = f"ends-{os.getpid()}-{tmp_path.name}"
    env = {**os.environ, "FLOWPLAN_TEST_MARK": mark}

    async def body() -> None:
        for code in (0, 3):
            spec = attempts.spec("/bin/sh", "-c", "sleep 60 & (trap '' TERM HUP; sleep 60) &"
                                 f" echo up; exit {code}", env=env)
            handle = attempts.track(await launcher.launch(spec))
            assert await handle.wait() == code
            assert (spec.attempt_dir / "cgroup").exists() == (
                kill_path == "cgroups" and with_cgroups())
            assert spec.log_path.read_text() == "up\n"
            wait_until(lambda: not marked(mark), "the node's background children to die")

    run(body)


def test_after_a_term_the_group_lives_until_the_kill_even_when_the_node_has_ended(
        attempts, tmp_path, kill_path):
    """The node dies of the TERM, its children ignore it: the shim holds the node's end until
    the KILL that follows the grace, then kills the whole group."""
    launcher = LocalLauncher()
    mark = f"ignore-{os.getpid()}-{tmp_path.name}"
    env = {**os.environ, "FLOWPLAN_TEST_MARK": mark}
    started = tmp_path / "started"

    async def body() -> None:
        handle = attempts.track(await launcher.launch(attempts.spec(
            "/bin/sh", "-c", "for i in 1 2 3; do (trap '' TERM; exec sleep 60) & done;"
            f" touch {started}; wait", env=env)))
        wait_until(lambda: started.exists() and len(marked(mark)) == 4, "the node's children")
        waiter = asyncio.ensure_future(handle.wait())
        handle.signal_group(signal.SIGTERM)
        wait_until(lambda: state_of(handle.pid) == "Z", "the node to die of the TERM")
        await asyncio.sleep(0)  # the loop reads whatever the shim reported
        assert len(marked(mark)) == 3 and not waiter.done()  # held: the group still runs
        handle.signal_group(signal.SIGKILL)  # the grace is over
        assert await waiter == 128 + signal.SIGTERM  # the node's own end
        wait_until(lambda: not marked(mark), "the children that ignored TERM to die")

    run(body)


def test_a_child_that_handles_the_term_gets_the_grace(attempts, tmp_path, kill_path):
    """The node dies of the TERM at once; its child cleans up first, and the node's end is
    reported when the child has ended, with no KILL."""
    launcher = LocalLauncher()
    cleaned, started = tmp_path / "cleaned", tmp_path / "started"
    child = (f"trap 'sleep 0.3; echo cleaned > {cleaned}; exit 0' TERM; touch {started};"
             " while :; do sleep 0.05; done")

    async def body() -> None:
        handle = attempts.track(await launcher.launch(attempts.spec(
            "/bin/sh", "-c", f"sh -c \"{child}\" & wait")))
        wait_until(started.exists, "the child")
        handle.signal_group(signal.SIGTERM)
        assert await handle.wait() == 128 + signal.SIGTERM
        assert cleaned.read_text() == "cleaned\n"

    run(body)


@pytest.mark.skipif(not with_cgroups(), reason="no cgroup v2 that this user can delegate")
def test_with_a_cgroup_a_setsid_escape_dies_with_its_node_and_the_cgroup_goes(attempts,
                                                                             tmp_path):
    launcher = LocalLauncher()
    mark = f"setsid-{os.getpid()}-{tmp_path.name}"
    env = {**os.environ, "FLOWPLAN_TEST_MARK": mark}

    async def body() -> None:
        spec = attempts.spec("/bin/sh", "-c", "setsid sleep 60 & exit 0", env=env)
        handle = attempts.track(await launcher.launch(spec))
        assert await handle.wait() == 0
        cgroup = Path((spec.attempt_dir / "cgroup").read_text().strip())
        assert cgroup.parent.name.startswith(f"{SUPERVISOR_NAME}-")
        wait_until(lambda: not marked(mark), "the process that left the group to die")
        wait_until(lambda: not cgroup.exists(), "the attempt's cgroup to be removed")

    run(body)


def test_many_concurrent_launches(attempts):
    launcher = LocalLauncher()

    async def body() -> None:
        specs = [attempts.spec("/bin/sh", "-c", f"echo {i}; exit {i % 7}") for i in range(200)]
        handles = await asyncio.gather(*(launcher.launch(spec) for spec in specs))
        codes = await asyncio.gather(*(handle.wait() for handle in handles))
        assert codes == [i % 7 for i in range(200)]
        assert [spec.log_path.read_text() for spec in specs] == [f"{i}\n" for i in range(200)]

    run(body)


def test_the_start_time_is_the_one_proc_shows_whatever_the_boot_clock_says(monkeypatch,
                                                                           tmp_path):
    """The shim's boot clock may disagree with the kernel's record (it once ran 63 s ahead on
    a virtual machine here): the start reported and written is the record, which recovery
    compares. A shim in this process, so that its clock can be set ahead; one batch of
    requests, whose starts are read after all of them are spawned."""
    ahead = time.clock_gettime_ns(time.CLOCK_BOOTTIME) + 63 * 10**9
    monkeypatch.setattr(shim.time, "clock_gettime_ns", lambda clock: ahead)
    monkeypatch.setenv(shim.CGROUP_SWITCH, "off")
    ours, theirs = socket.socketpair()
    handler = signal.getsignal(signal.SIGCHLD)
    supervisor = shim.Shim(theirs)
    pids: list[int] = []
    try:
        env = {"PATH": os.environ.get("PATH", os.defpath)}  # 40 fit in the socket's buffer
        ours.sendall(b"".join(shim.frame((shim.SPAWN, token, ("true",), env,
                                          str(tmp_path), str(tmp_path / "a" / str(token))))
                              for token in range(1, 41)))
        reports: list[Any] = []
        while len(reports) < 40:  # all sent before: each read finds some
            supervisor.receive()
            reports += shim.unframe(supervisor.unsent)
        pids += [report[2] for report in reports]
        for kind, token, pid, start in reports:
            assert kind == shim.STARTED
            assert start == shim.process_start(pid)  # unreaped: /proc still shows it
            folder = tmp_path / "a" / str(token)
            assert launcher_module.read_record(folder) == (pid, start % shim.RECORD_MODULUS)
    finally:
        for pid in pids:
            os.waitpid(pid, 0)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, handler)
        supervisor.epoll.close()
        theirs.close()
        ours.close()


# ---- the daemon goes away: adoption, and the shim on its own ---------------------------------

DAEMON = """
import asyncio, os, sys
from pathlib import Path
from flowplan.daemon.engine.launcher import LaunchSpec, LocalLauncher, process_start

async def main():
    argv = sys.argv[2:]
    handle = await LocalLauncher().launch(LaunchSpec(
        argv=tuple(argv), env=dict(os.environ), cwd=Path.cwd(), attempt_dir=Path(sys.argv[1])))
    print(handle.pid, process_start(handle.pid), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


class Daemon:
    """A process that launches one attempt and then idles, to be killed like a daemon."""

    def __init__(self, folder: Path, *argv: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", DAEMON, str(folder), *argv], cwd=ROOT,
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        self.pid, self.start = int(line[0]), int(line[1])
        self.shim = parent_of(self.pid)
        assert is_shim(self.shim)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)  # the daemon's whole group: not the shim
        self.process.wait(WAIT)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    made: list[Daemon] = []
    try:
        yield made
    finally:
        for daemon in made:
            if daemon.process.poll() is None:
                daemon.kill()
            if process_start(daemon.pid) == daemon.start:
                with contextlib.suppress(OSError):
                    os.killpg(daemon.pid, signal.SIGKILL)


def gated(gate: Path, code: int) -> tuple[str, ...]:
    gate.touch()
    return ("/bin/sh", "-c", f"echo started; while [ -e {gate} ]; do sleep 0.02; done;"
                             f" echo done; exit {code}")


def test_the_shim_records_the_exit_while_no_daemon_listens_then_exits(tmp_path, daemons):
    folder, gate = tmp_path / "a" / "1", tmp_path / "gate"
    daemon = Daemon(folder, *gated(gate, 5))
    daemons.append(daemon)
    daemon.kill()
    assert running(daemon.pid) and running(daemon.shim)
    assert os.getsid(daemon.pid) == daemon.pid and os.getsid(daemon.shim) == daemon.shim
    before = datetime.now(UTC)
    gate.unlink()
    wait_until(lambda: read_exit(folder) == 5, "the exit file")
    after = datetime.now(UTC)
    wait_until(lambda: not running(daemon.shim), "the shim to exit: no daemon, no child")
    assert (folder / "log").read_text() == "started\ndone\n"
    recovered = LocalLauncher().recover(folder, daemon.pid, daemon.start)
    assert recovered == Recovered(exit_code=5, pid=daemon.pid, ended_at=file_time(
        folder / "exit"))
    assert recovered.ended_at is not None
    # the exit file's time, when the node ended (the file system's clock is a tick coarse)
    assert before - TICK <= recovered.ended_at <= after


def file_time(path: Path) -> datetime:
    seconds, nanoseconds = divmod(path.stat().st_mtime_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanoseconds // 1000)


def test_recovery_reads_when_an_attempt_ended_from_its_exit_file(tmp_path):
    """From the `exit` file's modification time: a shim of any version writes the file when
    the node ends, in the same format (the status alone: an old daemon reads it too)."""
    folder = tmp_path / "a" / "1"
    folder.mkdir(parents=True)
    (folder / "log").write_text("")
    (folder / "pid").write_text("999999999\n")  # no such process
    (folder / "exit").write_text("3\n")
    ended = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    os.utime(folder / "exit", ns=(0, int(ended.timestamp()) * 10**9 + 123456789))
    assert read_end(folder) == (3, ended)
    assert LocalLauncher().recover(folder, None, None) == Recovered(
        exit_code=3, ended_at=ended, pid=999999999)
    (folder / "exit").write_text("not a status\n")
    assert read_end(folder) is None
    (folder / "exit").unlink()
    assert read_end(folder) is None


def test_adoption_of_a_node_whose_daemon_is_gone(tmp_path, daemons):
    folder, gate = tmp_path / "a" / "1", tmp_path / "gate"
    daemon = Daemon(folder, *gated(gate, 4))
    daemons.append(daemon)
    daemon.kill()
    launcher = LocalLauncher()

    async def body() -> None:
        recovered = launcher.recover(folder, None, None)  # from the folder's records alone
        assert recovered.pid == daemon.pid and recovered.handle is not None
        assert launcher.recover(folder, daemon.pid, daemon.start).handle is not None
        handle = recovered.handle
        waiter = asyncio.ensure_future(handle.wait())
        await asyncio.sleep(0.1)
        assert not waiter.done()
        gate.unlink()
        assert await waiter == 4  # recorded by the old shim, read by us

    run(body)


def test_an_adopted_node_is_killed_through_its_group(tmp_path, daemons):
    folder, gate = tmp_path / "a" / "1", tmp_path / "gate"
    daemon = Daemon(folder, *gated(gate, 0))
    daemons.append(daemon)
    daemon.kill()

    async def body() -> None:
        handle = LocalLauncher().recover(folder, daemon.pid, daemon.start).handle
        assert handle is not None
        handle.signal_group(signal.SIGTERM)
        assert await handle.wait() == 128 + signal.SIGTERM

    run(body)


def test_recovery_never_adopts_a_reused_pid_or_another_attempts_process(tmp_path, daemons):
    folder, gate = tmp_path / "a" / "1", tmp_path / "gate"
    daemon = Daemon(folder, *gated(gate, 0))
    daemons.append(daemon)
    daemon.kill()
    launcher = LocalLauncher()
    pid, start = daemon.pid, daemon.start
    assert launcher.recover(folder, pid, start + 1) == Recovered(lost=True, pid=pid)
    other = tmp_path / "other"  # a record naming the same pid with another start time
    other.mkdir()
    (other / "log").touch()
    (other / "pid").write_text(f"{pid}\n")
    os.utime(other / "pid", (start - 1, start - 1))
    assert launcher.recover(other, None, None) == Recovered(lost=True, pid=pid)
    assert launcher.recover(other, pid, start) == Recovered(lost=True, pid=pid)
    assert running(pid)  # not ours to kill
    assert launcher.recover(folder, pid, start).handle is not None


def test_a_node_whose_shim_died_is_killed_and_lost(tmp_path, daemons):
    folder, gate = tmp_path / "a" / "1", tmp_path / "gate"
    daemon = Daemon(folder, *gated(gate, 0))
    daemons.append(daemon)
    daemon.kill()
    os.kill(daemon.shim, signal.SIGKILL)  # e.g. the OOM killer
    wait_until(lambda: not running(daemon.shim), "the shim to die")
    assert running(daemon.pid)  # orphaned: nothing will record its end
    recovered = LocalLauncher().recover(folder, daemon.pid, daemon.start)
    assert recovered == Recovered(lost=True, pid=daemon.pid)
    wait_until(lambda: not running(daemon.pid), "the orphan to be killed")
    assert read_exit(folder) is None


@pytest.mark.skipif(not with_cgroups(), reason="no cgroup v2 that this user can delegate")
def test_a_lost_node_is_killed_through_its_cgroup(attempts, tmp_path):
    """Its shim killed: the daemon kills the node's cgroup, what left the group included, and
    removes the dead shim's cgroups."""
    launcher = LocalLauncher()
    mark = f"lost-{os.getpid()}-{tmp_path.name}"
    env = {**os.environ, "FLOWPLAN_TEST_MARK": mark}
    started = tmp_path / "started"

    async def body() -> None:
        spec = attempts.spec("/bin/sh", "-c", f"setsid sleep 60 & touch {started}; sleep 60",
                             env=env)
        handle = attempts.track(await launcher.launch(spec))
        wait_until(lambda: started.exists() and len(marked(mark)) == 3, "the node")
        cgroup = Path((spec.attempt_dir / "cgroup").read_text().strip())
        os.kill(parent_of(handle.pid), signal.SIGKILL)
        with pytest.raises(ProcessLostError, match="the flowplan shim ended"):
            await handle.wait()
        wait_until(lambda: not marked(mark), "every process of the node to die")
        assert not cgroup.parent.exists()

    run(body)


def test_the_shim_dying_under_a_live_daemon_kills_its_nodes(attempts, tmp_path):
    launcher = LocalLauncher()
    gate = tmp_path / "gate"

    async def body() -> None:
        spec = attempts.spec(*gated(gate, 0))
        handle = attempts.track(await launcher.launch(spec))
        old_shim = parent_of(handle.pid)
        os.kill(old_shim, signal.SIGKILL)
        with pytest.raises(ProcessLostError, match="the flowplan shim ended"):
            await handle.wait()
        wait_until(lambda: not running(handle.pid), "the node to be killed")
        assert read_exit(spec.attempt_dir) is None
        spec = attempts.spec("/bin/sh", "-c", "echo $PPID")
        assert await (await launcher.launch(spec)).wait() == 0
        new_shim = int(spec.log_path.read_text())
        assert new_shim != old_shim and is_shim(new_shim)  # started for this launch

    run(body)


def test_never_started_and_a_launch_that_began_without_a_record(tmp_path, monkeypatch):
    launcher = LocalLauncher()
    assert launcher.recover(tmp_path / "never", None, None) == Recovered(never_started=True)
    began = tmp_path / "began"  # a log, no pid: the shim died between claim and record
    began.mkdir()
    (began / "log").touch()
    monkeypatch.setattr(launcher_module, "RECORD_WAIT", 0.05)
    assert launcher.recover(began, None, None) == Recovered(lost=True)


def test_a_request_the_shim_reads_after_the_daemon_left_is_dropped(tmp_path):
    ours, theirs = socket.socketpair()
    process = subprocess.Popen([*launcher_module.SHIM_COMMAND, str(theirs.fileno())],
                               pass_fds=(theirs.fileno(),), start_new_session=True)
    theirs.close()
    folder = tmp_path / "a" / "1"
    ours.sendall(shim.frame((shim.SPAWN, 0, ("/bin/sh", "-c", "echo ran"), dict(os.environ),
                             str(tmp_path), str(folder))))
    ours.close()  # before the shim (still starting) reads it
    assert process.wait(WAIT) == 0
    assert not folder.exists()  # a restarted daemon finds no log: never started


def test_the_shim_protocol_by_hand(tmp_path):
    """Requests and reports as the module docstring of shim.py describes them."""
    ours, theirs = socket.socketpair()
    process = subprocess.Popen([*launcher_module.SHIM_COMMAND, str(theirs.fileno())],
                               pass_fds=(theirs.fileno(),), start_new_session=True)
    theirs.close()
    stream = ours.makefile("rb")

    def report() -> tuple[Any, ...]:
        size = int.from_bytes(stream.read(4), "little")
        return tuple(marshal.loads(stream.read(size)))

    folder = tmp_path / "a" / "1"
    ours.sendall(shim.frame((shim.SPAWN, 7, ("/bin/sh", "-c", "sleep 60"), dict(os.environ),
                             str(tmp_path), str(folder))))
    kind, token, pid, start = report()
    assert (kind, token, start) == (shim.STARTED, 7, process_start(pid))
    ours.sendall(shim.frame((shim.KILL, pid, int(signal.SIGKILL))))
    assert report() == (shim.EXITED, pid, 137)
    (tmp_path / "file").write_text("")
    ours.sendall(shim.frame((shim.SPAWN, 8, ("true",), {}, str(tmp_path / "file"),
                             str(tmp_path / "b" / "1"))))
    assert report()[:3] == (shim.FAILED, 8, errno.ENOTDIR)
    stream.close()
    ours.close()
    assert process.wait(WAIT) == 0
