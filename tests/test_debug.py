"""`flowplan debug [REPO] WORKFLOW` as a user runs it: a real process on small repositories,
and the live table in process (a terminal is faked)."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import FLOWPLAN, ROOT, running

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.repo import read_repo
from flowplan.daemon.debug import debug_run, tail
from flowplan.daemon.state.store import StateStore

QUEUES = """
queues:
  default: {executor: local, concurrency: 4}
  heavy: {executor: local, concurrency: 1}
  dev: {executor: local, concurrency: 2}
"""

CHAIN = """
name: chain
nodes:
  - name: extract
    command: echo extracting
  - name: transform
    command: echo transforming
    upstream: [extract]
  - name: load
    command: echo loading
    upstream: [transform]
"""

FAILING = """
name: failing
nodes:
  - name: ok
    command: echo fine
  - name: broken
    command: "for i in $(seq 1 30); do echo log line $i; done; exit 3"
    upstream: [ok]
  - name: after
    command: echo never
    upstream: [broken]
  - name: beside
    command: echo independent
    upstream: [ok]
"""


def flowplan(*args: str | Path, tmp: Path, timeout: float = 60
             ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp)}  # the kept state folders go to tmp
    return subprocess.run([*FLOWPLAN, *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


def state_dir(output: str) -> Path:
    match = re.search(r"^state and logs: (.+)$", output, re.MULTILINE)
    assert match, output
    return Path(match.group(1))


def stored_run(output: str):  # type: ignore[no-untyped-def]
    store = StateStore(state_dir(output))
    try:
        runs = store.list_runs(with_nodes=True)
    finally:
        store.close()
    assert len(runs) == 1
    return runs[0]


def test_three_node_chain_succeeds_exit_0(make_repo, tmp_path):
    repo = make_repo({"flowplan.yaml": QUEUES, "workflows/chain.yaml": CHAIN})
    done = flowplan("debug", repo, "chain", "--keep", tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("debug run wr_") and " of chain: " in lines[0]
    changes = [line.split(" ", 1)[1] for line in lines if re.match(r"\d\d:\d\d:\d\d ", line)]
    assert changes == [
        "run PENDING", "run RUNNING",
        "extract RUNNING attempt 1", "extract SUCCEEDED attempt 1",
        "transform RUNNING attempt 1", "transform SUCCEEDED attempt 1",
        "load RUNNING attempt 1", "load SUCCEEDED attempt 1",
        "run SUCCEEDED"]
    assert re.search(r"^run wr_\w+ SUCCEEDED in [\d.]+s \(3 succeeded\)$", done.stdout,
                     re.MULTILINE)
    run = stored_run(done.stdout)
    assert run.trigger.value == "debug" and run.status.value == "SUCCEEDED"
    log = Path(run.node("transform").attempts[-1].log_path or "")
    assert log.read_text() == "transforming\n"  # the kept state holds the logs
    assert "\033[" not in done.stdout  # no terminal: no colours, no redraws


def test_a_reader_that_leaves_cancels_the_run_and_its_state_is_removed(make_repo, tmp_path):
    """`flowplan debug ... | head -1`: nobody watches any more, so the run is cancelled, its
    folder removed, and the exit code is the run's (1: not succeeded), without a traceback."""
    repo = make_repo({"flowplan.yaml": QUEUES, "workflows/slow.yaml": (
        "name: slow\nnodes:\n  - {name: wait, command: 'sleep 30'}\n")})
    process = subprocess.Popen([*FLOWPLAN, "debug", repo, "slow"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=ROOT,
                               env={**os.environ, "TMPDIR": str(tmp_path)})
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(b"debug run wr_")
    process.stdout.close()  # as head does once it has its line
    started = time.monotonic()
    code = process.wait(timeout=60)
    errors = process.stderr.read().decode()
    assert code == 1 and time.monotonic() - started < 20, errors
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors
    assert not list(tmp_path.glob("flowplan-debug-*"))


def test_failed_node_shows_its_log_tail_and_exit_1(make_repo, tmp_path):
    repo = make_repo({"workflows/failing.yaml": FAILING})
    done = flowplan("debug", repo, "failing", tmp=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "broken FAILED attempt 1" in out and "after SKIPPED" in out
    assert "beside SUCCEEDED attempt 1" in out  # an independent branch keeps running
    assert re.search(r"^run wr_\w+ FAILED in .*1 failed", out, re.MULTILINE)
    assert "--- broken, attempt 1: exited with code 3" in out
    tail_lines = [line for line in out.splitlines() if line.startswith("log line ")]
    assert tail_lines == [f"log line {i}" for i in range(11, 31)]  # the last 20
    assert "--- ok" not in out and "--- after" not in out


def test_param_and_ds_reach_the_node(make_repo, tmp_path):
    target = tmp_path / "written.txt"
    repo = make_repo({
        "flowplan.yaml": "defaults: {timezone: America/New_York}\n",
        "workflows/write.yaml": f"""
            name: write
            params: {{x: default, y: kept}}
            nodes:
              - name: write
                command: echo "${{ds}} ${{params.x}} ${{params.y}} ${{ts}}" > {target}
            """})
    done = flowplan("debug", repo, "write", "--param", "x=hello world", "--ds", "2026-03-29",
                    "--keep", tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # 00:00 of that day in the workflow's timezone (EDT), not in UTC
    assert target.read_text() == "2026-03-29 hello world kept 2026-03-29T00:00:00-04:00\n"
    run = stored_run(done.stdout)
    assert run.logical_time == datetime(2026, 3, 29, 4, tzinfo=UTC)
    assert run.params == {"x": "hello world", "y": "kept"}
    assert "x=hello world" in done.stdout.splitlines()[0]


def test_param_value_may_hold_equals_signs(make_repo, tmp_path):
    target = tmp_path / "written.txt"
    repo = make_repo({"workflows/w.yaml": f"""
        name: w
        params: {{x: ""}}
        nodes:
          - name: n
            command: echo "${{params.x}}" > {target}
        """})
    done = flowplan("debug", repo, "w", "--param", "x=a=b", tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert target.read_text() == "a=b\n"


def test_secret_params_are_masked_in_the_header_and_the_log_tail(make_repo, tmp_path):
    repo = make_repo({"workflows/w.yaml": """
        name: w
        params: {db_password: "", region: eu}
        nodes:
          - name: n
            command: echo "connecting with ${params.db_password}"; exit 1
        """})
    done = flowplan("debug", repo, "w", "--param", "db_password=hunter2-secret", tmp=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    header = done.stdout.splitlines()[0]
    assert "db_password=******** region=eu" in header  # as the API shows params
    assert "connecting with ********" in done.stdout
    assert "hunter2-secret" not in done.stdout + done.stderr


def test_param_values_are_read_as_flowplan_run_reads_them(make_repo, tmp_path):
    """One meaning of `--param K=V` for `run` and `debug`: V is a JSON scalar when it is one."""
    repo = make_repo({"workflows/w.yaml": """
        name: w
        params: {n: 0, full: false, code: "", region: ""}
        nodes:
          - name: n
            command: "true"
        """})
    done = flowplan("debug", repo, "w", "--param", "n=5", "--param", "full=true", "--param",
                    'code="007"', "--param", "region=eu", "--keep", tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stored_run(done.stdout).params == {"n": 5, "full": True, "code": "007",
                                              "region": "eu"}


@pytest.mark.parametrize("bad", ["novalue", "=v"])
def test_param_without_key_or_equals_is_a_usage_error(make_repo, tmp_path, bad):
    repo = make_repo({"workflows/chain.yaml": CHAIN})
    done = flowplan("debug", repo, "chain", "--param", bad, tmp=tmp_path)
    assert done.returncode == 2
    assert "expected K=V" in done.stderr


def test_bad_ds_is_a_usage_error(make_repo, tmp_path):
    repo = make_repo({"workflows/chain.yaml": CHAIN})
    done = flowplan("debug", repo, "chain", "--ds", "29/03/2026", tmp=tmp_path)
    assert done.returncode == 2
    assert "YYYY-MM-DD" in done.stderr


def test_dev_queue_is_used_when_defined(make_repo, tmp_path):
    pinned = CHAIN.replace("    command: echo loading\n",
                           "    command: echo loading\n    queue: heavy\n")
    repo = make_repo({"flowplan.yaml": QUEUES, "workflows/chain.yaml": pinned})
    done = flowplan("debug", repo, "chain", "--keep", tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ", queue dev" in done.stdout.splitlines()[0]
    run = stored_run(done.stdout)
    assert run.queue_override == "dev"
    # the node's own queue wins over the run's override (docs/plans.md)
    assert {n.name: n.queue for n in run.nodes} == {
        "extract": "dev", "transform": "dev", "load": "heavy"}


def test_queue_option_picks_the_queue_and_must_name_one(make_repo, tmp_path):
    pinned = CHAIN.replace("    command: echo loading\n",
                           "    command: echo loading\n    queue: dev\n")
    repo = make_repo({"flowplan.yaml": QUEUES, "workflows/chain.yaml": pinned})
    done = flowplan("debug", repo, "chain", "--queue", "heavy", "--keep", tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ", queue heavy" in done.stdout.splitlines()[0]
    run = stored_run(done.stdout)
    assert run.queue_override == "heavy"
    assert {n.name: n.queue for n in run.nodes} == {
        "extract": "heavy", "transform": "heavy", "load": "dev"}
    unknown = flowplan("debug", repo, "chain", "--queue", "gpu", tmp=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().endswith(
        "--queue gpu: flowplan.yaml defines no such queue (queues: default, dev, heavy)")


def test_state_and_logs_are_removed_unless_kept(make_repo, tmp_path):
    repo = make_repo({"workflows/failing.yaml": FAILING})
    done = flowplan("debug", repo, "failing", tmp=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "log line 30" in done.stdout  # the failed node's log tail is shown first
    assert done.stdout.splitlines()[-1] == "state and logs removed (--keep keeps them)"
    assert not list(tmp_path.glob("flowplan-debug-*"))
    kept = flowplan("debug", repo, "failing", "--keep", tmp=tmp_path)
    folder = state_dir(kept.stdout)
    assert list(tmp_path.glob("flowplan-debug-*")) == [folder]
    assert stored_run(kept.stdout).node("broken").attempts[-1].log_path


def test_one_workflow_and_its_usage(make_repo, tmp_path):
    repo = make_repo({"workflows/chain.yaml": CHAIN})
    done = flowplan("debug", repo, "chain", "extra", tmp=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: flowplan debug ")
    assert "[REPO] WORKFLOW\n" in done.stderr and "WORKFLOW ...]" not in done.stderr
    assert done.stderr.strip().endswith("flowplan debug: error: unrecognized arguments: extra")
    assert not list(tmp_path.glob("flowplan-debug-*"))


def test_without_dev_queue_there_is_no_override(make_repo, tmp_path):
    repo = make_repo({"workflows/chain.yaml": CHAIN})
    done = flowplan("debug", repo, "chain", "--keep", tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    run = stored_run(done.stdout)
    assert run.queue_override is None
    assert {n.queue for n in run.nodes} == {"default"}


def test_invalid_workflow_exit_1_with_diagnostics(make_repo, tmp_path):
    repo = make_repo({"workflows/bad.yaml": """
        name: bad
        nodes:
          - name: a
            command: echo ${dss}
        """, "workflows/chain.yaml": CHAIN})
    done = flowplan("debug", repo, "bad", tmp=tmp_path)
    assert done.returncode == 1
    assert "workflows/bad.yaml:4:19: error FP502 'dss' is not a template variable" in (
        done.stderr)
    assert "workflow 'bad' is invalid (valid: chain)" in done.stderr
    assert done.stdout == ""
    assert not list(tmp_path.glob("flowplan-debug-*"))  # nothing ran


def test_unknown_workflow_exit_1(make_repo, tmp_path):
    repo = make_repo({"workflows/chain.yaml": CHAIN})
    done = flowplan("debug", repo, "nope", tmp=tmp_path)
    assert done.returncode == 1
    assert "workflow 'nope' does not exist (valid: chain)" in done.stderr


def test_another_invalid_workflow_does_not_stop_a_valid_one(make_repo, tmp_path):
    repo = make_repo({"workflows/bad.yaml": "name: bad\nnodes: 3\n",
                      "workflows/chain.yaml": CHAIN})
    done = flowplan("debug", repo, "chain", tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bad.yaml" not in done.stderr  # only the diagnostics of the workflow run


def test_not_a_repository_is_a_usage_error(tmp_path):
    done = flowplan("debug", tmp_path, "chain", tmp=tmp_path)
    assert done.returncode == 2
    assert "not a workflow repository" in done.stderr


def test_shipped_example_daily_sales(tmp_path):
    done = flowplan("debug", "workflows", "daily_sales", "--ds", "2026-03-29", tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "report SUCCEEDED attempt 1" in done.stdout
    assert "alert_on_failure SKIPPED" in done.stdout
    assert "logical time 2026-03-29T00:00:00+01:00, queue dev" in done.stdout


def test_ctrl_c_cancels_the_run_exit_130(make_repo, tmp_path):
    repo = make_repo({"workflows/slow.yaml": """
        name: slow
        nodes:
          - name: wait
            command: echo started; sleep 60
          - name: after
            command: echo after
            upstream: [wait]
        """})
    process = subprocess.Popen(
        [*FLOWPLAN, "debug", str(repo), "slow", "--keep"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)})
    assert process.stdout is not None
    seen = []
    for line in process.stdout:  # wait until the node runs
        seen.append(line)
        if "wait RUNNING attempt 1" in line:
            break
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, "".join(seen) + out + err
    assert time.monotonic() - started < 5  # the node was terminated, not waited for
    assert "wait CANCELLED attempt 1" in out and "after CANCELLED" in out
    assert re.search(r"^run wr_\w+ CANCELLED", out, re.MULTILINE)
    run = stored_run(out)
    pid = run.node("wait").attempts[-1].pid
    assert pid is not None and not running(pid)  # the node's process group was terminated




class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_shows_a_coloured_table_redrawn_in_place(make_repo, tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    repo = make_repo({"workflows/failing.yaml": FAILING})
    plan = compile_repo(read_repo(repo)).plan("failing")
    out = FakeTerminal()
    code = asyncio.run(debug_run(plan, state_dir=tmp_path / "state",
                                 logical_time=datetime(2026, 3, 29, tzinfo=UTC), params={},
                                 out=out))
    assert code == 1
    text = out.getvalue()
    up = "\033[1A\033[2K"  # rich's Live goes up a line and clears it, for each line drawn
    assert up in text  # redrawn in place
    assert "\033[32mSUCCEEDED" in text and "\033[31mFAILED" in text  # green, red
    assert "\033[90mSKIPPED" in text and "\033[35mPENDING" in text  # grey, purple
    last_table = text.rsplit(up, 1)[1]
    rows = {line.split()[0]: line for line in last_table.splitlines()[1:5]}
    assert set(rows) == {"ok", "broken", "after", "beside"}
    assert "FAILED" in rows["broken"] and re.search(r"\b1\s+[\d.]+s$", rows["broken"])
    assert "log line 30" in text and "log line 10\n" not in text
    assert text.count("\033[?25l") == text.count("\033[?25h") == 1  # the cursor comes back


def test_tail_reads_the_last_lines(tmp_path):
    path = tmp_path / "log"
    path.write_text("".join(f"line {i}\n" for i in range(5000)))
    assert tail(path, 20, block=64) == [f"line {i}" for i in range(4980, 5000)]
    assert tail(path, 20) == [f"line {i}" for i in range(4980, 5000)]
    path.write_text("no newline at the end")
    assert tail(path, 20) == ["no newline at the end"]
    path.write_text("")
    assert tail(path, 20) == []
    assert tail(tmp_path / "missing", 20) is None


def test_tail_never_shows_part_of_a_secret_that_began_before_it(tmp_path):
    key = "-----BEGIN KEY-----\nAAAAAAAA\nBBBBBBBB\n-----END KEY-----"
    path = tmp_path / "log"
    path.write_text("".join(f"line {i}\n" for i in range(40)) + key + "\ndone\n")
    assert tail(path, 3, secrets=[key], block=16) == ["line 39", "********", "done"]
    shown = "\n".join(tail(path, 2, secrets=[key], block=16) or [])
    assert "BBBB" not in shown and "END KEY" not in shown  # the key's last lines
