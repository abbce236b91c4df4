"""Launching node processes, and finding them again after a restart.

Every attempt runs under a POSIX shell supervisor in its own session (process group), so it
outlives the daemon. The supervisor writes its pid to `<attempt dir>/pid` before the node
starts and the node's exit status to `<attempt dir>/exit` after it ends. A restarted daemon
reads those files: an exit file means the attempt finished; a live supervisor whose command
line names the attempt directory is adopted; no pid file means the node never started.

The supervisor costs one `sh` (under a millisecond here) where a Python one would cost
about 10 ms. It traps SIGTERM so that it outlives a kill of the group long enough to record
the node's status (143 for SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# A signal that arrives before the command starts skips it (its status is recorded as if it
# had killed the command); one that arrives later reaches the command through its group,
# and the trap keeps the supervisor alive long enough to record the command's status.
SUPERVISOR = ('d=$1; shift; echo $$ >"$d/pid"; trap "s=143" TERM; trap "s=130" INT;'
              ' trap "s=129" HUP; if [ -z "$s" ]; then "$@"; s=$?; fi; echo $s >"$d/exit"')
SUPERVISOR_NAME = "flowplan-attempt"
SIGNAL_EXIT_BASE = 128


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    attempt_dir: Path  # holds log, pid and exit

    @property
    def log_path(self) -> Path:
        return self.attempt_dir / "log"


class ProcessHandle(Protocol):
    pid: int

    async def wait(self) -> int:
        """The node's exit code (128 + N when signal N ended it)."""
        ...

    def signal_group(self, signum: int) -> None: ...


class Launcher(Protocol):
    async def launch(self, spec: LaunchSpec) -> ProcessHandle: ...

    def recover(self, attempt_dir: Path, pid: int | None, pid_start: int | None
                ) -> Recovered: ...


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a restart finds of an attempt that was running."""

    exit_code: int | None = None  # finished while the daemon was away
    handle: ProcessHandle | None = None  # still running: adopted
    never_started: bool = False  # no pid file: the node never ran, launch it again
    lost: bool = False  # it ended and left no exit status
    pid: int | None = None  # the supervisor's pid, when known


def read_exit(attempt_dir: Path) -> int | None:
    try:
        text = (attempt_dir / "exit").read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def process_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


class _Supervised:
    """A supervisor process, ours (`popen`) or adopted from an earlier daemon.

    Its end is watched with a pidfd in the event loop: no thread per child, and it works for
    processes that are not our children. Stopping the daemon leaves the process running
    (asyncio's subprocess transport would kill it when the loop closes).
    """

    def __init__(self, pid: int, attempt_dir: Path, popen: subprocess.Popen[bytes] | None
                 ) -> None:
        self.pid = pid
        self._dir = attempt_dir
        self._popen = popen

    async def wait(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            fd = -1
        if fd >= 0:
            done: asyncio.Future[None] = loop.create_future()

            def ready() -> None:
                if not done.done():
                    done.set_result(None)

            loop.add_reader(fd, ready)
            try:
                await done
            finally:
                loop.remove_reader(fd)
                os.close(fd)
        status = self._popen.wait() if self._popen is not None else None  # reaps our child
        code = read_exit(self._dir)
        if code is not None:
            return code
        if status is None:
            return SIGNAL_EXIT_BASE + signal.SIGKILL  # an adopted supervisor was killed
        return SIGNAL_EXIT_BASE - status if status < 0 else status

    def signal_group(self, signum: int) -> None:
        _signal_group(self.pid, signum)


class LocalLauncher:
    """Runs attempts as local processes under the shell supervisor."""

    async def launch(self, spec: LaunchSpec) -> ProcessHandle:
        spec.attempt_dir.mkdir(parents=True, exist_ok=True)
        with open(spec.log_path, "ab") as log:
            popen = subprocess.Popen(
                ["/bin/sh", "-c", SUPERVISOR, SUPERVISOR_NAME, str(spec.attempt_dir),
                 *spec.argv], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=spec.cwd, env=dict(spec.env), start_new_session=True, close_fds=True)
        return _Supervised(popen.pid, spec.attempt_dir, popen)

    def recover(self, attempt_dir: Path, pid: int | None, pid_start: int | None) -> Recovered:
        if pid is None:
            with contextlib.suppress(FileNotFoundError, ValueError):
                pid = int((attempt_dir / "pid").read_text().strip())
        code = read_exit(attempt_dir)
        if code is not None:
            return Recovered(exit_code=code, pid=pid)
        if pid is None:
            # no pid file: the node never started, unless its supervisor is alive but had
            # not yet written the file
            pid = _find_supervisor(attempt_dir)
            if pid is None:
                return Recovered(never_started=True)
        if _is_our_supervisor(pid, attempt_dir, pid_start):
            return Recovered(handle=_Supervised(pid, attempt_dir, None), pid=pid)
        code = read_exit(attempt_dir)  # it may have finished while we looked
        if code is not None:
            return Recovered(exit_code=code, pid=pid)
        return Recovered(lost=True, pid=pid)


def _find_supervisor(attempt_dir: Path) -> int | None:
    """The pid of a live supervisor of this attempt, found by its command line."""
    wanted = str(attempt_dir).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if SUPERVISOR_NAME.encode() in argv and wanted in argv:
            return int(entry)
    return None


def _is_our_supervisor(pid: int, attempt_dir: Path, pid_start: int | None) -> bool:
    """True when `pid` is alive and is the supervisor of this attempt (not a reused pid)."""
    if pid_start is not None and process_start(pid) != pid_start:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return SUPERVISOR_NAME.encode() in argv and str(attempt_dir).encode() in argv
