"""`flowplan check/compile/publish/graph/schema` as a user runs them: a real process."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import FLOWPLAN, ROOT

BAD = """
name: bad
nodes:
  - name: a
    command: echo done
    retires: 2
  - name: b
    command: echo ${dss}
    upstream: [a, c]
"""


def flowplan(*args: str | Path, cwd: Path | None = None, timeout: float = 60
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWPLAN, *map(str, args)],
                          capture_output=True, text=True, cwd=cwd or ROOT, timeout=timeout)


def test_check_examples_valid_exit_0():
    done = flowplan("check", ROOT / "workflows")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 workflows valid" in done.stdout


def test_check_text_lists_every_error_and_exits_1(make_repo):
    repo = make_repo({"workflows/bad.yaml": BAD})
    done = flowplan("check", repo)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "workflows/bad.yaml:5:5: error FP101 unknown key 'retires' (did you mean 'retries'?)",
        "workflows/bad.yaml:7:19: error FP502 'dss' is not a template variable"
        " (did you mean 'ds'?)",
        "workflows/bad.yaml:8:19: error FP201 upstream 'c' is not a node of this workflow",
        "3 errors in 1 file",
    ]


def test_check_json_format(make_repo):
    repo = make_repo({"workflows/bad.yaml": BAD})
    done = flowplan("check", repo, "--format", "json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["workflows"] == 1
    assert report["diagnostics"][0] == {
        "file": "workflows/bad.yaml", "line": 5, "column": 5, "code": "FP101",
        "severity": "error", "message": "unknown key 'retires' (did you mean 'retries'?)"}
    assert {d["code"] for d in report["diagnostics"]} == {"FP101", "FP502", "FP201"}


def test_check_github_annotations_are_escaped(make_repo):
    repo = make_repo({"workflows/bad.yaml": BAD,
                      "workflows/pct.yaml": "name: pct\nnodes:\n  - name: a\n    command: x\n"
                                            "    queue: '50%,a:b'\n"})
    done = flowplan("check", repo, "--format", "github")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == ("::error file=workflows/bad.yaml,line=5,col=5,title=FP101::"
                        "unknown key 'retires' (did you mean 'retries'?)")
    assert ("::error file=workflows/pct.yaml,line=5,col=12,title=FP204::queue '50%25,a:b'"
            " is not defined in flowplan.yaml") in lines


def test_check_prints_no_control_code_a_workflow_holds(make_repo):
    """A value quoted in a message is the file's: an escape in it must not retitle or clear
    the terminal of whoever runs check (or a CI log that shows colours)."""
    repo = make_repo({"workflows/tz.yaml": (
        'name: tz\nschedule: {every: day, timezone: "\\e]0;pwned\\a\\e[2J"}\n'
        "nodes: [{name: a, command: x}]\n")})
    for format_ in ("text", "github"):
        done = flowplan("check", repo, "--format", format_)
        assert done.returncode == 1
        assert "\x1b" not in done.stdout and "\x07" not in done.stdout, done.stdout
        assert "'\\x1b]0;pwned\\x07\\x1b[2J' is not an IANA time zone" in done.stdout


def test_usage_errors_exit_2(tmp_path):
    assert flowplan("check", tmp_path / "missing").returncode == 2
    assert flowplan("check", tmp_path).returncode == 2  # not a repository
    assert flowplan("check", "--format", "xml").returncode == 2
    assert flowplan("nonsense").returncode == 2


def test_repo_may_be_the_workflows_folder_however_it_is_written(make_repo):
    one = "name: a\nnodes:\n  - {name: x, command: 'true'}\n"
    repo = make_repo({"workflows/sales/a.yaml": one})
    for where, arg in [(repo, "workflows"), (repo / "workflows", "."), (repo / "workflows", "./"),
                       (repo / "workflows", None), (repo / "workflows/sales", "..")]:
        done = flowplan("check", *([arg] if arg else []), cwd=where)
        assert (done.returncode, done.stdout) == (0, "1 workflow valid\n"), (where, arg, done)
    # a folder named like a workflow file is a folder: its files are read
    other = one.replace("name: a", "name: b")
    assert flowplan("check", make_repo({"workflows/d.yaml/b.yaml": other})).stdout == (
        "2 workflows valid\n")


def test_compile_writes_plans_and_publish_reports_changes(tmp_path):
    out = tmp_path / "plans"
    done = flowplan("compile", "workflows", "--out", out)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "daily_sales.json", "hourly_health.json", "reindex.json", "spark_rollup.json"]
    plan = json.loads((out / "daily_sales.json").read_text())
    assert plan["version"] is None and plan["published_at"] is None
    store = tmp_path / "store"
    first = flowplan("publish", "workflows", "--store", store, "--remarks", "init",
                     "--commit", "c0ffee")
    assert first.returncode == 0, first.stderr
    assert "daily_sales: version 1 (new)" in first.stdout
    stored = json.loads((store / "daily_sales" / "1.json").read_text())
    assert (stored["remarks"], stored["commit"]) == ("init", "c0ffee")
    assert stored["digest"] == plan["digest"]
    second = flowplan("publish", "workflows", "--store", store)
    assert "daily_sales: unchanged (version 1)" in second.stdout


def test_publish_exits_1_and_names_what_was_not_published(make_repo, tmp_path):
    repo = make_repo({"workflows/bad.yaml": BAD,
                      "workflows/good.yaml": "nodes:\n  - name: a\n    command: echo ok\n"})
    done = flowplan("publish", repo, "--store", tmp_path / "store")
    assert done.returncode == 1
    assert "good: version 1 (new)" in done.stdout
    assert "bad: not published, invalid; nothing published yet" in done.stdout
    assert "FP101" in done.stderr


def test_graph_mermaid_and_dot():
    mermaid = flowplan("graph", "workflows", "daily_sales")
    assert mermaid.returncode == 0
    assert mermaid.stdout.startswith("flowchart LR\n")
    assert "  n0 --> n1" in mermaid.stdout
    dot = flowplan("graph", "daily_sales", "--format", "dot")
    assert '"ingest" -> "transform";' in dot.stdout
    assert '"report" -> "alert_on_failure" [label="any_failed"];' in dot.stdout
    missing = flowplan("graph", "nope")
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_graph_shows_each_nodes_type_and_queue_in_both_formats():
    mermaid = flowplan("graph", "daily_sales").stdout
    dot = flowplan("graph", "daily_sales", "--format", "dot").stdout
    assert '["transform<br/><small>sql · heavy</small>"]' in mermaid
    assert '"transform" [label="transform\\nsql · heavy"];' in dot
    assert '"ingest" [label="ingest\\npython · default"];' in dot


def test_graph_takes_one_workflow_and_says_so_in_its_usage():
    usage = flowplan("graph", "--help").stdout
    assert usage.startswith("usage: flowplan graph [-h] [--format {mermaid,dot}] [REPO]"
                            " WORKFLOW\n")
    extra = flowplan("graph", "workflows", "daily_sales", "hourly_health")
    assert extra.returncode == 2
    assert extra.stderr.startswith("usage: flowplan graph ")
    assert extra.stderr.endswith(
        "flowplan graph: error: unrecognized arguments: hourly_health\n")
    two = flowplan("graph", "daily_sales", "hourly_health")  # REPO is first: no such folder
    assert (two.returncode, two.stderr) == (2, "flowplan: daily_sales: no such directory (graph"
                                                " draws one workflow: flowplan graph [REPO]"
                                                " WORKFLOW)\n")


def test_schema_prints_draft07_workflow_schema():
    done = flowplan("schema")
    schema = json.loads(done.stdout)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert "nodes" in schema["properties"]


GOOD = "nodes:\n  - name: a\n    command: echo ok\n"
FINISHES = 20  # seconds; a FIFO that is opened for reading would wait forever


def test_a_fifo_in_the_repository_is_reported_not_waited_on(make_repo, tmp_path):
    repo = make_repo({"workflows/good.yaml": GOOD})
    os.mkfifo(repo / "workflows" / "pipe.yaml")
    fifo = ("workflows/pipe.yaml:1:1: error FP012 cannot read the workflow file: not a regular"
            " file (a FIFO)")
    checked = flowplan("check", repo, timeout=FINISHES)
    assert checked.returncode == 1 and checked.stdout.splitlines()[0] == fifo
    published = flowplan("publish", repo, "--store", tmp_path / "store", timeout=FINISHES)
    assert published.returncode == 1 and "good: version 1 (new)" in published.stdout
    settings = make_repo({"workflows/good.yaml": GOOD}, root=tmp_path / "settings")
    os.mkfifo(settings / "flowplan.yaml")
    checked = flowplan("check", settings, timeout=FINISHES)
    assert checked.returncode == 1
    assert checked.stdout.startswith("flowplan.yaml:1:1: error FP012 cannot read the settings"
                                     " file: not a regular file (a FIFO)")


def test_a_workflow_file_name_that_is_not_utf8_is_reported_and_the_others_publish(
        make_repo, tmp_path):
    repo = make_repo({"workflows/good.yaml": GOOD})
    (repo / "workflows" / "\xe9t\xe9.yaml".encode("latin-1").decode(
        "utf-8", "surrogateescape")).write_text(GOOD)
    named = ("workflows/\\xe9t\\xe9.yaml:1:1: error FP012 cannot read the workflow file: its"
             " name is not UTF-8; rename it with a UTF-8 name")
    checked = flowplan("check", repo)
    assert checked.returncode == 1 and checked.stdout.splitlines()[0] == named
    published = flowplan("publish", repo, "--store", tmp_path / "store")
    assert published.returncode == 1 and "good: version 1 (new)" in published.stdout


def test_a_fifo_in_the_plan_store_does_not_hold_publish(make_repo, tmp_path):
    repo, store = make_repo({"workflows/good.yaml": GOOD}), tmp_path / "store"
    assert flowplan("publish", repo, "--store", store).returncode == 0
    os.mkfifo(store / "good" / "2.json")  # the latest version, as publish reads it
    again = flowplan("publish", repo, "--store", store, timeout=FINISHES)
    assert again.returncode == 0, again.stderr
    assert "good: version 3 (new)" in again.stdout  # the unreadable latest is passed over


def test_a_fifo_as_a_lock_file_of_the_store_is_named_not_a_traceback(make_repo, tmp_path):
    repo, store = make_repo({"workflows/good.yaml": GOOD}), tmp_path / "store"
    store.mkdir()
    os.mkfifo(store / ".lock")
    done = flowplan("publish", repo, "--store", store, timeout=FINISHES)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.endswith(f"flowplan publish: cannot publish to {store}: {store}/.lock:"
                                " not a regular file (a FIFO); remove it\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "first"]):
        subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)
    (store / ".lock").unlink()
    os.mkfifo(store / ".git-publish.lock")
    done = flowplan("publish", "--git", repo, "--store", store, timeout=FINISHES)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr == (f"flowplan publish: cannot lock {store}/.git-publish.lock: not a"
                           " regular file (a FIFO); remove it\n")
    (store / ".git-publish.lock").unlink()
    os.mkfifo(store / ".lock")  # past the git lock: the store's own
    done = flowplan("publish", "--git", repo, "--store", store, timeout=FINISHES)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.endswith(f"flowplan publish: cannot publish to {store}: {store}/.lock:"
                                " not a regular file (a FIFO); remove it\n")
    home = tmp_path / "home"
    (home / "store").mkdir(parents=True)
    os.mkfifo(home / "store" / ".lock")
    done = flowplan("up", repo, "--home", home, "--listen", "127.0.0.1:0", "--http",
                    "127.0.0.1:0", timeout=FINISHES)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.endswith(f"flowplan up: cannot publish to {home}/store:"
                                f" {home}/store/.lock: not a regular file (a FIFO); remove it\n")
