"""One daemon per state directory (daemon/state/lock.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from flowplan.daemon.state.lock import LOCK_FILE, StateInUseError, lock_state


def test_a_second_lock_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    with lock_state(tmp_path, holder="--listen 127.0.0.1:50051"), \
            pytest.raises(StateInUseError) as refused:
        lock_state(tmp_path)
    message = str(refused.value)
    assert str(tmp_path) in message
    assert f"pid {os.getpid()}, --listen 127.0.0.1:50051" in message
    assert "another --state" in message


def test_a_released_lock_can_be_taken_again(tmp_path: Path) -> None:
    lock_state(tmp_path).release()
    with lock_state(tmp_path, holder="second") as again:
        assert again.path.read_text() == f"pid {os.getpid()}, second\n"


def test_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path;"
         " from flowplan.daemon.state.lock import lock_state; lock_state(Path(sys.argv[1]));"
         " print('locked', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(StateInUseError, match=f"pid {holder.pid}"):
            lock_state(tmp_path)
    finally:
        holder.kill()  # as kill -9: no clean-up runs
        holder.wait()
    lock_state(tmp_path).release()


def test_processes_started_while_locked_do_not_hold_it(tmp_path: Path) -> None:
    lock = lock_state(tmp_path)
    # close_fds=False: only descriptors not marked close-on-exec reach the child
    child = subprocess.Popen(["sleep", "30"], close_fds=False)
    try:
        lock.release()
        lock_state(tmp_path).release()  # the node or shim still running does not hold it
    finally:
        child.kill()
        child.wait()


def test_a_missing_state_directory_is_created_for_its_user_only(tmp_path: Path) -> None:
    state = tmp_path / "var" / "state"
    with lock_state(state):
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE((state / LOCK_FILE).stat().st_mode) == 0o600
