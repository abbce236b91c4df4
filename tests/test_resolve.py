"""Resolution: defaults, queue precedence, tags, topological order, schedules, sources."""

from __future__ import annotations

import hashlib
import shutil
from datetime import datetime, timedelta, timezone

import pytest

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.diagnostics import Code
from flowplan.compiler.plan import WorkflowPlan
from flowplan.compiler.repo import MAX_EMBEDDED_BYTES, MAX_SOURCE_BYTES, read_repo

SETTINGS = """
defaults:
  timezone: Europe/Amsterdam
  queue: main
  retries: 1
  retry_delay: 5s
  timeout: 2h
queues:
  main: {concurrency: 4}
  heavy: {executor: local, concurrency: 1}
  other: {concurrency: 2}
"""
WORKFLOW = """
name: wf
queue: other
retries: 2
retry_backoff: 2.0
tags: {team: sales, tier: gold}
on_failure: {email: [a@example.com]}
schedule: {every: 2h, window: ["08:00", "20:00"], start: "2026-01-01T06:00:00"}
nodes:
  - name: last
    command: echo last
    upstream: [mid_b, mid_a]
  - name: mid_b
    command: echo b
    upstream: [first]
    queue: heavy
    timeout: none
  - name: mid_a
    source: jobs/a.py
    upstream: [first]
    retries: 0
    tags: {tier: silver, owner: ana}
    notify: {email: [ana@example.com]}
  - name: first
    source: jobs/first.sh
    timeout: 10m
"""


def _plan(make_repo, workflow: str = WORKFLOW, settings: str | None = SETTINGS) -> WorkflowPlan:
    files = {"workflows/wf.yaml": workflow, "jobs/a.py": "print('a')\n",
             "jobs/first.sh": "echo first\n"}
    if settings is not None:
        files["flowplan.yaml"] = settings
    result = compile_repo(read_repo(make_repo(files)))
    assert result.ok, result.diagnostics
    content = result.plan("wf").content
    assert content is not None
    return content


def test_topological_order_keeps_declaration_order_among_ready_nodes(make_repo):
    plan = _plan(make_repo)
    assert [n.name for n in plan.nodes] == ["first", "mid_b", "mid_a", "last"]


def test_node_then_workflow_then_repository_defaults(make_repo):
    plan = _plan(make_repo)
    first, mid_b, mid_a, last = (plan.node(n) for n in ("first", "mid_b", "mid_a", "last"))
    assert (first.retries, mid_a.retries) == (2, 0)
    assert first.retry_delay_seconds == 5.0 and first.retry_backoff == 2.0
    assert first.timeout_seconds == 600 and last.timeout_seconds == 7200
    assert mid_b.timeout_seconds is None  # explicit none beats the default
    assert (first.queue, first.queue_pinned) == ("other", False)
    assert (mid_b.queue, mid_b.queue_pinned) == ("heavy", True)
    assert plan.queue == "other" and plan.timezone == "Europe/Amsterdam"
    assert plan.on_failure_email == ("a@example.com",)
    assert mid_a.notify is not None and mid_a.notify.on == ("failed",)


def test_tags_merge_and_name_tags(make_repo):
    mid_a = _plan(make_repo).node("mid_a")
    assert mid_a.tags == {"team": "sales", "tier": "silver", "owner": "ana",
                          "workflow_name": "wf", "task_name": "mid_a"}


def test_schedule_normalized_with_start_in_schedule_zone(make_repo):
    schedule = _plan(make_repo).schedule
    assert schedule is not None
    assert (schedule.kind, schedule.every_seconds, schedule.window) == (
        "interval", 7200, ("08:00", "20:00"))
    assert schedule.timezone == "Europe/Amsterdam"
    assert schedule.start == datetime(2026, 1, 1, 6, tzinfo=timezone(timedelta(hours=1)))
    assert (schedule.enabled, schedule.catchup) == (True, "latest")


@pytest.mark.parametrize(("zone", "start", "instant"), [
    ("Europe/London", "2026-03-29T01:30", "2026-03-29T02:00:00+01:00"),  # the gap's jump
    ("Australia/Lord_Howe", "2026-10-04T02:15", "2026-10-04T02:30:00+11:00"),  # 30 minutes
    ("America/New_York", "2026-03-08T02:30", "2026-03-08T03:00:00-04:00"),
    ("Europe/London", "2026-10-25T01:30", "2026-10-25T01:30:00+01:00"),  # repeated: 1st
])
def test_a_start_wall_time_that_does_not_exist_is_the_jump_after_it(make_repo, zone, start,
                                                                     instant):
    """As a tick at that wall time fires (docs/scheduling.md): else the day's tick is lost."""
    repo = make_repo({"workflows/w.yaml": (
        f"name: w\nschedule: {{every: day, at: '{start[11:]}', timezone: {zone},"
        f" start: '{start}'}}\nnodes:\n  - {{name: a, command: 'true'}}\n")})
    result = compile_repo(read_repo(repo))
    assert result.ok, [str(d) for d in result.diagnostics]
    schedule = result.plans[0].content.schedule  # type: ignore[union-attr]
    assert schedule is not None and schedule.start is not None
    assert schedule.start.isoformat() == instant


def test_sources_embedded_with_sha256(make_repo):
    source = _plan(make_repo).node("mid_a").source
    assert source is not None
    assert (source.path, source.text) == ("jobs/a.py", "print('a')\n")
    assert source.sha256 == hashlib.sha256(b"print('a')\n").hexdigest()


def test_a_workflow_embeds_at_most_32_mib_of_sources_whatever_each_one_is(make_repo):
    """Each node carries its own copy: 36 nodes of one 8 MB source made a 289 MB plan, past
    what a plan file may be (the daemon refused to read it, and each publish of the same
    content then wrote a new version). The node past the limit is named at its source."""
    big = "x = 1\n" * (MAX_SOURCE_BYTES // 6)  # just under the 8 MiB a source may be
    nodes = "".join(f"  - {{name: n{i}, source: jobs/big.py}}\n" for i in range(5))
    repo = make_repo({"workflows/w.yaml": "name: w\nnodes:\n" + nodes, "jobs/big.py": big})
    result = compile_repo(read_repo(repo), plans=False)
    assert [(d.code, d.file, d.line, d.column) for d in result.diagnostics] == [
        (Code.SOURCE_NOT_TEXT, "workflows/w.yaml", 7, 24)]
    assert result.diagnostics[0].message == (
        f"node 'n4' brings the sources this workflow embeds to {5 * len(big)} bytes; at most"
        f" {MAX_EMBEDDED_BYTES} are embedded in a plan (each node that names a source carries"
        " a copy): split the workflow, or make the sources smaller")
    four = make_repo({"workflows/w.yaml": "name: w\nnodes:\n" + nodes.rsplit("  -", 1)[0]
                      .rstrip() + "\n", "jobs/big.py": big})
    assert compile_repo(read_repo(four), plans=False).ok


def test_no_settings_file_gives_default_queue_sized_by_the_daemon(make_repo):
    plan = _plan(make_repo, workflow="name: wf\nnodes: [{name: a, command: x}]\n",
                 settings=None)
    assert list(plan.queues) == ["default"]
    assert plan.queues["default"].concurrency is None  # the daemon's CPU count, not ours
    assert plan.node("a").retry_delay_seconds == 30.0 and plan.timezone == "UTC"


def test_same_repository_compiles_to_identical_bytes_from_any_path(make_repo, tmp_path):
    first = make_repo({"workflows/wf.yaml": WORKFLOW, "flowplan.yaml": SETTINGS,
                       "jobs/a.py": "print('a')\n", "jobs/first.sh": "echo first\n"})
    second = tmp_path / "elsewhere" / "deeper" / "copy"
    shutil.copytree(first, second)
    runs = [compile_repo(read_repo(first)), compile_repo(read_repo(first)),
            compile_repo(read_repo(second))]
    texts = [[p.to_json() for p in r.plans] for r in runs]
    assert texts[0] == texts[1] == texts[2]
    assert str(tmp_path) not in texts[0][0]


def test_digest_ignores_publish_metadata_but_not_content(make_repo):
    a = compile_repo(read_repo(make_repo({"workflows/wf.yaml": "nodes: [{name: a, command: x}]"})))
    plan = a.plans[0]
    stamped = plan.model_copy(update={"version": 4, "remarks": "r", "commit": "c"})
    from flowplan.compiler.plan import compute_digest

    assert compute_digest(stamped.workflow, stamped.content, tombstone=False) == plan.digest
    b = compile_repo(read_repo(make_repo({"workflows/wf.yaml": "nodes: [{name: a, command: y}]"})))
    assert b.plans[0].digest != plan.digest
