"""One daemon per state directory: `flowplan serve` holds an exclusive `flock` on
`<state>/daemon.lock` for as long as it runs. Two daemons on one state would both schedule
and both drive the same runs, so a second one is refused with the first one's pid.

The kernel drops the lock when its holder dies (`kill -9` included), so a crash never leaves
a stale lock behind. The file descriptor is not inheritable, so the shim and node processes,
which outlive a daemon on purpose, never hold it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_FILE = "daemon.lock"


class StateInUseError(Exception):
    """Another live process holds the state directory."""


class StateLock:
    """The held lock; `release()` (or the process's end) gives it up."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def lock_state(state_dir: Path, *, holder: str = "") -> StateLock:
    """Take `state_dir` for this process: create it (mode 0700: it holds raw logs) if
    missing, lock it, and record our pid and `holder` (e.g. the listen address) in the lock
    file for the message another daemon would get. Raises StateInUseError."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = _read_owner(fd)
        os.close(fd)
        raise StateInUseError(f"state directory {state_dir} is in use by another flowplan daemon"
                         f"{f' ({owner})' if owner else ''}: stop it first, or give this one"
                         " another --state") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}{f', {holder}' if holder else ''}\n".encode(), 0)
    return StateLock(path, fd)


def _read_owner(fd: int) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return os.pread(fd, 200, 0).decode().strip()
    return ""
