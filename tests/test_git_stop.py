"""A git command the daemon's `--git` sync runs with `stop` and `timeout` (`Git.run`): once
the daemon stops, or the time is up, it is killed with what it started (ssh), and the caller
is answered at once, even when something it started left its process group; a command that
ended is answered at once too, whoever still holds its pipes."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import running, wait_until

from flowplan.compiler.git import Git, GitError

# A stand-in for git: a child in its group (as ssh is) and one that made a session of its own
# (as a credential helper's daemon does), both holding git's stdout and stderr; then it
# works for 30 s, or with `git fetch done`, it ends at once.
FAKE_GIT = """#!/bin/sh
sleep 30 &
echo $! > "$MARKS/in_group"
setsid sleep 30 &
echo $! > "$MARKS/left"
echo "fetching" >&2
if [ "$3" = done ]; then echo "fetched"; exit 0; fi
sleep 30
"""


@pytest.fixture
def git(tmp_path: Path) -> Iterator[Git]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(FAKE_GIT)
    (bin_dir / "git").chmod(0o755)
    try:
        yield Git(tmp_path, {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                             "MARKS": str(tmp_path)})
    finally:
        for name in ("in_group", "left"):
            if (tmp_path / name).exists() and (tmp_path / name).read_text():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int((tmp_path / name).read_text()), signal.SIGKILL)


def _started(tmp_path: Path) -> dict[str, int]:
    wait_until(lambda: (tmp_path / "left").exists() and (tmp_path / "left").read_text(),
               "the stand-in's children started")
    return {name: int((tmp_path / name).read_text()) for name in ("in_group", "left")}


@pytest.mark.parametrize("how", ["stop", "timeout"])
def test_a_stopped_or_late_git_command_is_killed_and_answered_at_once(
        git: Git, tmp_path: Path, how: str) -> None:
    stop = threading.Event()
    if how == "stop":  # once both children run: the one outside the group holds the pipes
        threading.Thread(target=lambda: (_started(tmp_path), stop.set()), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(GitError, match="^git fetch: stopped [(]the daemon is stopping[)]$"
                       if how == "stop" else "^git fetch took more than 3s$"):
        git.run("fetch", stop=stop, timeout=None if how == "stop" else 3.0)
    assert time.monotonic() - started < 13  # not the 30 s of the child outside the group
    children = _started(tmp_path)
    wait_until(lambda: not running(children["in_group"]), "ssh's stand-in killed")
    assert running(children["left"])  # it held the pipes all along


def test_a_git_command_that_ended_is_answered_though_a_helper_holds_its_pipes(
        git: Git, tmp_path: Path) -> None:
    started = time.monotonic()
    assert git.run("fetch", "done", stop=threading.Event(), timeout=20.0) == "fetched\n"
    assert time.monotonic() - started < 10  # not its timeout, nor the helper's 30 s
    assert running(_started(tmp_path)["left"])
