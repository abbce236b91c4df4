"""Launching node processes, and finding them again after a restart.

Every attempt's process is started by the shim (daemon/engine/shim.py): one small Python
process per daemon (per event loop), started on the first launch, in a session of its own so
that it outlives the daemon. The shim starts each node with `posix_spawn` in a new session
(the node's own process group), reaps it and records its exit status in the attempt folder;
the daemon talks to it over a socket pair. Per attempt the folder holds:

    log    stdout and stderr; created (O_EXCL) by the shim before the node starts
    pid    the node's pid; the file's modification time is the node's start time (field 22
           of /proc/PID/stat: clock ticks since boot, modulo 2**31, as seconds since the
           epoch); written under a temporary name, then renamed
    exit   its exit status (128 + N for signal N) once it ended; temporary name, then renamed;
           the file's modification time is when the attempt ended (the shim writes it then)
    cgroup the path of the node's cgroup, where the shim made one (see shim.py)

A restarted daemon reads those files (`LocalLauncher.recover`): an `exit` file means the
attempt finished, at the file's modification time (not at the restart); a live node whose
pid and start time match the folder's record (and the state store's, when it has them) and
whose parent is a live shim is adopted: the shim that started it records its end. No `log`
means the node never started. Anything else is `lost`: the node ended and nothing recorded
its status, or it runs with no shim to record it (its shim was killed), and then it is
killed, so that a retry does not run beside it: its process group while the node itself is
alive, its cgroup (if it had one) in any case.

Why one shim and not one supervisor per attempt: creating a process is most of what an
attempt costs here (about 0.5 ms), and a `/bin/sh` supervisor per attempt doubled the
processes each attempt creates.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from flowplan.daemon.engine import shim as _shim

log = logging.getLogger("flowplan.launcher")

SUPERVISOR_NAME = _shim.NAME  # in the shim's command line
SIGNAL_EXIT_BASE = _shim.SIGNAL_EXIT_BASE
SHIM_COMMAND = (sys.executable, "-I", "-S", str(Path(_shim.__file__).resolve()), _shim.NAME)
RECORD_MODULUS = _shim.RECORD_MODULUS
RECORD_WAIT = 1.0  # seconds a restart waits for the pid file of a launch that has begun


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path  # created by the launcher if missing (a run's workspace, at its first node)
    attempt_dir: Path  # holds log, pid and exit

    @property
    def log_path(self) -> Path:
        return self.attempt_dir / "log"


class ProcessLostError(Exception):
    """The node's own exit status cannot be known: the shim that supervised it ended before
    recording it. The message is the attempt's error."""


SHIM_ENDED = ("lost: the flowplan shim ended while the node ran; the node was stopped and its"
              " exit status is unknown")
SHIM_ENDED_UNRECORDED = ("lost: the node's flowplan shim ended without recording its exit"
                         " status")


class ProcessHandle(Protocol):
    pid: int

    def wait(self) -> Awaitable[int]:
        """The node's exit code (128 + N when signal N ended it); raises ProcessLostError when its
        supervisor ended without recording it. A future rather than a coroutine where it
        can be: the engine waits for it beside a cancel without a task for it."""
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
    ended_at: datetime | None = None  # ... at this time (the exit file's), when known
    handle: ProcessHandle | None = None  # still running: adopted
    never_started: bool = False  # no log: the node never ran, launch it again
    lost: bool = False  # it ended and left no exit status
    pid: int | None = None  # the node's pid, when known


def read_exit(attempt_dir: Path) -> int | None:
    return _read_int(attempt_dir / "exit")


def read_end(attempt_dir: Path) -> tuple[int, datetime] | None:
    """The node's exit status and when it ended: the `exit` file's text and modification time
    (the shim writes the file as the node ends; a shim of any version, the format is the same).
    """
    try:
        with open(attempt_dir / "exit", "rb") as record:
            text = record.read().strip()
            mtime = os.fstat(record.fileno()).st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not text.lstrip(b"-").isdigit():
        return None
    seconds, nanoseconds = divmod(mtime, 1_000_000_000)
    return int(text), (datetime.fromtimestamp(seconds, UTC)
                       + timedelta(microseconds=nanoseconds // 1000))


def read_record(attempt_dir: Path) -> tuple[int, int] | None:
    """The node's (pid, start time modulo 2**31) that the shim recorded in the pid file."""
    try:
        with open(attempt_dir / "pid", "rb") as record:
            text = record.read().strip()
            mtime = os.fstat(record.fileno()).st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (int(text), mtime // 1_000_000_000) if text.isdigit() else None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(text) if text.lstrip("-").isdigit() else None


# Start times of processes this daemon has just launched, by pid: a node may end and be reaped
# by the shim before its launcher's caller asks (the engine calls process_start(handle.pid)
# right after the launch). The last few only: a pid is reused only after ~pid_max others.
_LAUNCHED: dict[int, int] = {}
_LAUNCHED_KEPT = 64


def process_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat)."""
    start = _LAUNCHED.pop(pid, None)
    return start if start is not None else _shim.process_start(pid)


@dataclass(frozen=True, slots=True)
class _Stat:
    state: str
    ppid: int
    start: int


def _stat(pid: int) -> _Stat | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return _Stat(fields[0].decode(), int(fields[1]), int(fields[19]))


def _is_shim(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return SUPERVISOR_NAME.encode() in argv


def kill_cgroup(attempt_dir: Path) -> None:
    """Kill and remove the attempt's cgroup, if it had one and its shim is gone (a live shim
    does it when the node ends). Its members are what the node started, `setsid` escapes
    included; a process born in it stays there unless moved out with write access to it."""
    try:
        cgroup = (attempt_dir / "cgroup").read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return
    owner = os.path.basename(os.path.dirname(cgroup)).removeprefix(f"{SUPERVISOR_NAME}-")
    if not owner.isdigit():
        return  # not one a shim made
    shim = _stat(int(owner))
    if shim is not None and shim.state != "Z" and _is_shim(int(owner)):
        return  # its shim lives: it kills the cgroup when the node ends
    with contextlib.suppress(OSError):
        Path(cgroup, "cgroup.kill").write_text("1")
    deadline = time.monotonic() + RECORD_WAIT
    while True:  # its processes take a moment to exit
        try:
            os.rmdir(cgroup)
        except FileNotFoundError:
            break
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
            continue
        break
    with contextlib.suppress(OSError):  # the dead shim's folder, after its last node
        os.rmdir(os.path.dirname(cgroup))


def _signal_group(pid: int, signum: int) -> None:
    if pid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)


# ---- our own launches: the shim's channel ---------------------------------------------------


class _Launched:
    """A node started by this daemon's shim; its end comes as a report over the channel."""

    __slots__ = ("_channel", "_code", "_lost", "_waiters", "attempt_dir", "pid", "pid_start")

    def __init__(self, channel: _Channel, pid: int, pid_start: int | None, attempt_dir: str
                 ) -> None:
        self._channel = channel
        self.pid = pid
        self.pid_start = pid_start
        self.attempt_dir = attempt_dir
        self._code: int | None = None
        self._lost: ProcessLostError | None = None
        self._waiters: list[asyncio.Future[int]] = []

    def wait(self) -> asyncio.Future[int]:
        waiter: asyncio.Future[int] = self._channel.loop.create_future()
        if self._lost is not None:
            waiter.set_exception(self._lost)
        elif self._code is not None:
            waiter.set_result(self._code)
        else:
            self._waiters.append(waiter)  # a cancelled wait cancels only its own future
        return waiter

    def signal_group(self, signum: int) -> None:
        if self._code is None and self._lost is None:  # the shim signals only its own
            with contextlib.suppress(OSError):
                self._channel.send((_shim.KILL, self.pid, int(signum)))

    def finish(self, code: int) -> None:
        self._code = code
        self._settle(lambda waiter: waiter.set_result(code))

    def fail(self, lost: ProcessLostError) -> None:
        self._lost = lost
        self._settle(lambda waiter: waiter.set_exception(lost))

    def _settle(self, settle: Callable[[asyncio.Future[int]], None]) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                settle(waiter)
        self._waiters.clear()


class _Channel:
    """The daemon's end of the socket to one shim process (read with the loop's reader
    callback: no transport, no task)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.popen: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.closed = False
        self._fd = -1
        self._received = bytearray()
        self._unsent = bytearray()
        self._tokens = itertools.count()
        self._pending: dict[int, tuple[asyncio.Future[_Launched], str]] = {}
        self._running: dict[int, _Launched] = {}  # pid -> handle

    def open(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.popen = subprocess.Popen(
                [*SHIM_COMMAND, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self._fd = ours.fileno()
        self.loop.add_reader(self._fd, self._readable)

    def send(self, message: tuple[Any, ...]) -> None:
        if self.sock is None or self.closed:
            raise OSError("the flowplan shim has ended")
        data = _shim.frame(message)
        if self._unsent:
            self._unsent += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return  # the shim is gone: the reader sees the end and settles everything
        if sent < len(data):
            self._unsent += data[sent:]
            self.loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        assert self.sock is not None
        try:
            sent = self.sock.send(self._unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent = len(self._unsent)
        del self._unsent[:sent]
        if not self._unsent:
            self.loop.remove_writer(self._fd)

    async def spawn(self, spec: LaunchSpec) -> _Launched:
        token = next(self._tokens)
        attempt_dir = os.path.abspath(spec.attempt_dir)
        future: asyncio.Future[_Launched] = self.loop.create_future()
        self.send((_shim.SPAWN, token, tuple(spec.argv),
                   spec.env if type(spec.env) is dict else dict(spec.env),
                   os.path.abspath(spec.cwd), attempt_dir))
        self._pending[token] = (future, attempt_dir)
        return await future

    def _readable(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(1 << 18)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        self._received += data
        for message in _shim.unframe(self._received):
            kind = message[0]
            if kind == _shim.EXITED:
                handle = self._running.pop(message[1], None)
                if handle is not None:
                    handle.finish(message[2])
            elif kind == _shim.STARTED:
                _, token, pid, start = message
                future, attempt_dir = self._pending.pop(token)
                handle = _Launched(self, pid, start, attempt_dir)
                self._running[pid] = handle
                if start is not None:
                    _LAUNCHED[pid] = start
                    if len(_LAUNCHED) > _LAUNCHED_KEPT:
                        del _LAUNCHED[next(iter(_LAUNCHED))]
                if not future.done():
                    future.set_result(handle)
            elif kind == _shim.FAILED:
                _, token, number, text, filename = message
                future, _dir = self._pending.pop(token)
                if not future.done():
                    future.set_exception(OSError(number, text, filename))

    def _lost(self) -> None:
        """The shim ended (it never does while we listen, unless killed)."""
        self.closed = True
        self.loop.remove_reader(self._fd)
        if self._unsent:
            self.loop.remove_writer(self._fd)
        self.close()
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(0.1)  # reap it
        for future, _dir in self._pending.values():
            if not future.done():
                future.set_exception(OSError("the flowplan shim ended"))
        self._pending.clear()
        for handle in self._running.values():
            code = read_exit(Path(handle.attempt_dir))
            if code is not None:
                handle.finish(code)
                continue
            # nothing can record how it ends any more; stop it, so that a retry does not run
            # beside it
            if handle.pid_start is not None and _shim.process_start(
                    handle.pid) == handle.pid_start:
                _signal_group(handle.pid, signal.SIGKILL)
            kill_cgroup(Path(handle.attempt_dir))
            log.warning("the shim ended while pid %d ran (%s): killed", handle.pid,
                        handle.attempt_dir)
            handle.fail(ProcessLostError(SHIM_ENDED))
        self._running.clear()
        if _CHANNELS.get(self.loop) is self:
            del _CHANNELS[self.loop]

    def close(self) -> None:
        """Close our end; the shim finishes its running children alone, then exits."""
        self.closed = True
        if self.sock is not None:
            self.sock.close()
            self.sock = None


_CHANNELS: dict[asyncio.AbstractEventLoop, _Channel] = {}


def _channel() -> _Channel:
    """The shim of the running event loop, started on first use."""
    loop = asyncio.get_running_loop()
    channel = _CHANNELS.get(loop)
    if channel is None or channel.closed:
        for other in [other for other in _CHANNELS if other.is_closed()]:
            _CHANNELS.pop(other).close()  # its loop is gone: let its shim finish and exit
        channel = _Channel(loop)
        channel.open()
        _CHANNELS[loop] = channel
    return channel


# ---- attempts of an earlier daemon: adopted ------------------------------------------------


class _Adopted:
    """A node started by the shim of an earlier daemon, found alive after a restart.

    Its end is watched with a pidfd (it is not our child); then its status is read from the
    exit file that its shim writes after reaping it.
    """

    def __init__(self, pid: int, pid_start: int, attempt_dir: Path, shim_pid: int,
                 shim_start: int) -> None:
        self.pid = pid
        self.pid_start = pid_start
        self._dir = attempt_dir
        self._shim = (shim_pid, shim_start)
        self._ended = False

    async def wait(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            fd = -1
        if fd >= 0 and _shim.process_start(self.pid) == self.pid_start:
            done: asyncio.Future[None] = loop.create_future()

            def ready() -> None:
                if not done.done():
                    done.set_result(None)

            loop.add_reader(fd, ready)
            try:
                await done
            finally:
                loop.remove_reader(fd)
        if fd >= 0:
            os.close(fd)
        self._ended = True
        delay = 0.002
        while True:  # the shim reaps it, then writes the exit file
            code = read_exit(self._dir)
            if code is not None:
                return code
            shim = _stat(self._shim[0])
            if shim is None or shim.start != self._shim[1] or shim.state == "Z":
                code = read_exit(self._dir)
                if code is None:
                    log.warning("the shim of pid %d ended without recording its status (%s)",
                                self.pid, self._dir)
                    kill_cgroup(self._dir)  # what the node left behind
                    raise ProcessLostError(SHIM_ENDED_UNRECORDED)
                return code
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def signal_group(self, signum: int) -> None:
        if not self._ended:
            _signal_group(self.pid, signum)


class LocalLauncher:
    """Runs attempts as local processes, started and reaped by the shim."""

    async def launch(self, spec: LaunchSpec) -> ProcessHandle:
        return await _channel().spawn(spec)

    def recover(self, attempt_dir: Path, pid: int | None, pid_start: int | None) -> Recovered:
        record = read_record(attempt_dir)
        if pid is None and record is not None:
            pid = record[0]
        end = read_end(attempt_dir)
        if end is not None:
            return Recovered(exit_code=end[0], ended_at=end[1], pid=pid)
        if pid is None:
            if not (attempt_dir / "log").exists():
                return Recovered(never_started=True)
            # a shim had begun the launch: its pid file follows within milliseconds (once
            # the requests it read with this one are spawned), unless it died
            record = _wait_for_record(attempt_dir)
            if record is None:
                end = read_end(attempt_dir)
                if end is not None:
                    return Recovered(exit_code=end[0], ended_at=end[1])
                _kill_unrecorded(attempt_dir)
                kill_cgroup(attempt_dir)
                return Recovered(lost=True)
            pid = record[0]
        live = _stat(pid)
        # ours: the process alive under this pid started when the folder's record says, and
        # when the state store says (if it knows): not a reused pid, not another attempt's
        if (live is not None and record == (pid, live.start % RECORD_MODULUS)
                and pid_start in (None, live.start)):
            shim = _stat(live.ppid)
            if shim is not None and shim.state != "Z" and _is_shim(live.ppid):
                return Recovered(handle=_Adopted(pid, live.start, attempt_dir, live.ppid,
                                                 shim.start), pid=pid)
            # its shim is gone: nothing will record its end; stop it, so that a retry does
            # not run beside it
            _signal_group(pid, signal.SIGKILL)
        end = read_end(attempt_dir)  # it may have finished while we looked
        if end is not None:
            return Recovered(exit_code=end[0], ended_at=end[1], pid=pid)
        kill_cgroup(attempt_dir)
        return Recovered(lost=True, pid=pid)


def _wait_for_record(attempt_dir: Path) -> tuple[int, int] | None:
    deadline = time.monotonic() + RECORD_WAIT
    while True:
        record = read_record(attempt_dir)
        if record is not None or time.monotonic() > deadline:
            return record
        time.sleep(0.01)


def _kill_unrecorded(attempt_dir: Path) -> None:
    """Kill the process groups of processes writing to the attempt's log: a node whose shim
    died between starting it and recording its pid (nothing will record its end)."""
    wanted = os.path.abspath(attempt_dir / "log")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        for fd in ("1", "2"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/fd/{fd}") == wanted:
                    with contextlib.suppress(OSError):
                        _signal_group(os.getpgid(int(entry)), signal.SIGKILL)
                    break
