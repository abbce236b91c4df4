"""One daemon per state directory: `flowplan serve` holds an exclusive `flock` on
`<state>/daemon.lock` for as long as it runs. Two daemons on one state would both schedule
and both drive the same runs, so a second one is refused with the first one's pid.

The kernel drops the lock when its holder dies (`kill -9` included), so a crash never leaves
a stale lock behind. The file descriptor is not inheritable, so the shim and node processes,
which outlive a daemon on purpose, never hold it.
"""

from __future__ import annotations

import os
from pathlib import Path

from flowplan.compiler.files import FileLock, lock_note

LOCK_FILE = "daemon.lock"


class StateInUseError(Exception):
    """Another live process holds the state directory."""


def lock_state(state_dir: Path, *, holder: str = "") -> FileLock:
    """Take `state_dir` for this process: create it (mode 0700: it holds raw logs) if
    missing, lock it, and record our pid and `holder` (e.g. the listen address) in the lock
    file for the message another daemon would get. Raises StateInUseError."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE
    try:
        lock = FileLock.acquire(path, wait=False, mode=0o600)
    except BlockingIOError:
        owner = lock_note(path)
        raise StateInUseError(f"state directory {state_dir} is in use by another flowplan daemon"
                              f"{f' ({owner})' if owner else ''}: stop it first, or give this"
                              " one another --state") from None
    lock.note(f"pid {os.getpid()}{f', {holder}' if holder else ''}\n")
    return lock
