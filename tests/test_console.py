"""Terminal output through the real CLI as a process: plain text without a single escape
code in a pipe or with NO_COLOR, the EMR colours on a pseudo-terminal, and the live views
(`backfill --wait`'s progress bar, `debug`'s node table) drawn on one."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping
from pathlib import Path

from conftest import FLOWPLAN, ROOT, MakeRepo
from daemon_harness import publish, running_daemon

from flowplan.v1 import workflow_service_pb2 as pb

ESC = "\033["
SGR = re.compile(r"\033\[[\d;]*m")  # a colour or a text style
FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
    "workflows/chain.yaml": """
        name: chain
        nodes:
          - {name: a, command: "echo a"}
          - {name: b, command: "echo b", upstream: [a]}
        """,
    "workflows/daily.yaml": """
        name: daily
        schedule: {every: day, at: "02:00", timezone: UTC}
        nodes:
          - {name: day, command: "echo ${ds}"}
        """,
}
INVALID = {"workflows/bad.yaml": "name: bad\nnodes:\n  - {name: a, command: x, upstream: [zz]}\n"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "TERM")}
    return {**env, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", **extra}


def piped(*args: str | Path, env: Mapping[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    """`flowplan ARGS` with stdout and stderr to pipes."""
    return subprocess.run([*FLOWPLAN, *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env=dict(env or _env()))


def on_terminal(*args: str | Path, env: Mapping[str, str] | None = None,
                timeout: float = 60) -> tuple[int, str]:
    """`flowplan ARGS` with stdout and stderr on a new pseudo-terminal of 30 x 120; its exit
    code and everything it wrote there."""
    main, side = os.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    process = subprocess.Popen([*FLOWPLAN, *map(str, args)],
                               stdin=subprocess.DEVNULL, stdout=side, stderr=side, cwd=ROOT,
                               env=dict(env or _env()))
    os.close(side)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the process is gone and the terminal closed
                break
            if not chunk:
                break
            data += chunk
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(main)
    return code, data.decode("utf-8", errors="replace").replace("\r\n", "\n")


def test_check_is_plain_in_a_pipe_and_with_no_color_and_red_on_a_terminal(
        make_repo: MakeRepo) -> None:
    repo = make_repo(INVALID)

    done = piped("check", repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "bad.yaml:" in done.stdout and "1 error in 1 file" in done.stdout
    assert "\033" not in done.stdout + done.stderr

    code, text = on_terminal("check", repo)
    assert code == 1, text
    assert f"{ESC}31m1 error in 1 file{ESC}0m" in text  # red
    assert f"{ESC}31merror{ESC}0m" in text and f"{ESC}1m" in text  # the place in bold

    code, text = on_terminal("check", repo, env=_env(NO_COLOR="1"))
    assert code == 1, text
    assert "\033" not in text and "1 error in 1 file" in text


def test_status_of_a_real_daemon_is_plain_in_a_pipe_and_coloured_on_a_terminal(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    store = tmp_path / "store"
    publish(make_repo(FILES), store)
    with running_daemon(store, tmp_path / "state") as d:
        started = piped("run", "chain", "--wait", "--address", d.address)
        assert started.returncode == 0, started.stdout + started.stderr
        (run,) = d.call("ListRuns", pb.ListRunsRequest(workflow="chain")).runs

        done = piped("status", run.run_id, "--address", d.address)
        assert done.returncode == 0, done.stderr
        assert "\033" not in done.stdout + done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == f"run {run.run_id}  chain  SUCCEEDED"
        assert any(re.match(r"a\s+SUCCEEDED\s+1\s", line) for line in lines), done.stdout

        code, text = on_terminal("status", run.run_id, "--address", d.address)
        assert code == 0, text
        assert text.startswith(f"run {ESC}1m{run.run_id}{ESC}0m  chain  {ESC}32mSUCCEEDED")
        assert re.search(rf"\n{re.escape(ESC)}1mNODE\s+STATUS", text)  # titles in bold
        assert re.search(rf"\na\s+{re.escape(ESC)}32mSUCCEEDED{re.escape(ESC)}0m", text)

        code, text = on_terminal("status", run.run_id, "--address", d.address,
                                 env=_env(NO_COLOR="1"))
        assert code == 0, text
        assert "\033" not in text and text.splitlines() == lines


def test_backfill_wait_draws_its_progress_bar_on_a_terminal(make_repo: MakeRepo,
                                                             tmp_path: Path) -> None:
    store = tmp_path / "store"
    publish(make_repo(FILES), store)
    with running_daemon(store, tmp_path / "state") as d:
        code, text = on_terminal("backfill", "daily", "--from", "2026-01-01", "--to",
                                 "2026-01-03", "--wait", "--address", d.address)
    assert code == 0, text
    assert text.count(f"{ESC}?25l") == text.count(f"{ESC}?25h") == 1  # cursor back at the end
    bar = text.split(f"{ESC}?25l", 1)[1].split(f"{ESC}?25h", 1)[0]
    last = bar.split(f"\r{ESC}2K")[-1]  # each poll redraws the line in place
    assert re.fullmatch(rf"\[{re.escape(ESC)}32m█{{40}}{re.escape(ESC)}0m\] (\d+)/\1"
                        r"  \1 succeeded, 0 failed, 0 running, 0 pending\n", last), repr(last)
    assert re.search(rf"backfill bf_\w+ {re.escape(ESC)}32mSUCCEEDED{re.escape(ESC)}0m: ", text)


def test_debug_draws_its_table_on_a_terminal_and_no_color_keeps_it_plain(
        make_repo: MakeRepo) -> None:
    repo = make_repo(FILES)

    code, text = on_terminal("debug", repo, "chain")
    assert code == 0, text
    assert text.count(f"{ESC}?25l") == text.count(f"{ESC}?25h") == 1
    table = text.split(f"{ESC}?25l", 1)[1].split(f"{ESC}?25h", 1)[0]
    last = table.rsplit(f"{ESC}1A{ESC}2K", 1)[-1].splitlines()  # the table as it ended
    assert last[0].startswith(f"{ESC}1mNODE  STATUS     ATTEMPT  DURATION")
    assert re.match(rf"a     {re.escape(ESC)}32mSUCCEEDED{re.escape(ESC)}0m\s+1\s+[\d.]+s$",
                    last[1]), last
    assert last[3].startswith(f"chain {ESC}32mSUCCEEDED{ESC}0m ")
    assert re.search(rf"\nrun wr_\w+ {re.escape(ESC)}1;32mSUCCEEDED{re.escape(ESC)}0m in ",
                     text)

    code, text = on_terminal("debug", repo, "chain", env=_env(NO_COLOR="1"))
    assert code == 0, text
    assert not SGR.search(text), repr(text)  # no colour, no bold: only the redraws
    assert re.search(r"\na\s+SUCCEEDED\s+1\s", text) and re.search(r"\nrun wr_\w+ SUCCEEDED",
                                                                   text)


def test_debug_in_a_pipe_prints_lines_without_escape_codes(make_repo: MakeRepo) -> None:
    done = piped("debug", make_repo(FILES), "chain")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\033" not in done.stdout + done.stderr
    assert re.search(r"^\d\d:\d\d:\d\d a SUCCEEDED attempt 1$", done.stdout, re.MULTILINE)
