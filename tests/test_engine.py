"""Engine behaviour on a fake clock and a scripted launcher: retries, backoff, timeouts,
queues, max_active_runs, triggers, cancel and resume, in milliseconds."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from engine_fakes import Behaviour, FakeClock, FakeLauncher

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.plan import Plan, PlanError
from flowplan.compiler.repo import MemorySources, RepoSnapshot
from flowplan.daemon.domain import NodeStatus, RunStatus, RunTrigger
from flowplan.daemon.engine import spark
from flowplan.daemon.engine.engine import Engine, EngineSettings, RunError
from flowplan.daemon.engine.launcher import Recovered
from flowplan.daemon.engine.plans import MemoryPlans
from flowplan.daemon.state.store import StateStore

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SETTINGS = (b"queues:\n  default: {concurrency: 4}\n  solo: {concurrency: 1}\n"
            b"  dev: {concurrency: 2}\n")


def compile_one(yaml: str, settings: bytes = SETTINGS,
                sources: dict[str, bytes] | None = None) -> Plan:
    result = compile_repo(RepoSnapshot(settings=settings, workflows={"workflows/w.yaml":
                                                                     yaml.encode()},
                                       sources=MemorySources(sources or {})))
    assert result.ok, [str(d) for d in result.diagnostics]
    return result.plans[0]


class Harness:
    def __init__(self, tmp: Path, plan: Plan, *, grace: float = 5.0, at: datetime = T0
                 ) -> None:
        self.clock = FakeClock(at)
        self.launcher = FakeLauncher(self.clock)
        self.plans = MemoryPlans([plan])
        self.store = StateStore(tmp / "state")
        self.engine = Engine(store=self.store, plans=self.plans, launcher=self.launcher,
                             clock=self.clock, settings=EngineSettings(
                                 state_dir=tmp / "state", kill_grace_seconds=grace,
                                 base_env={}))
        self.events: list[tuple[str | None, str]] = []
        self.engine.subscribe(lambda e: self.events.append((e.node, e.status)))

    def plan(self, workflow: str = "w") -> Plan:
        plan = self.plans.latest(workflow)
        assert plan is not None
        return plan

    def start(self, **kwargs: Any) -> str:
        kwargs.setdefault("trigger", RunTrigger.MANUAL)
        kwargs.setdefault("logical_time", T0)
        return self.engine.create_run(self.plan(), **kwargs).run_id

    def node_times(self, node: str) -> list[float]:
        return [at - T0.timestamp() for name, at in self.launcher.launches if name == node]


def run(tmp_path: Path, yaml: str, body: Callable[[Harness], Awaitable[None]],
        **kwargs: Any) -> Harness:
    harness = Harness(tmp_path, compile_one(yaml), **kwargs)

    async def main() -> None:
        await harness.engine.start()
        await body(harness)
        await harness.engine.stop()

    asyncio.run(asyncio.wait_for(main(), 10))
    return harness


CHAIN = """
nodes:
  - {name: a, command: a, retries: 2, retry_delay: 10s, retry_backoff: 2}
  - {name: b, command: b, upstream: [a]}
"""


def test_retries_wait_delay_with_backoff_then_succeed(tmp_path):
    async def body(h: Harness) -> None:
        h.launcher.scripts["a"] = [Behaviour(code=1, seconds=1), Behaviour(code=1, seconds=1),
                                   Behaviour(code=0, seconds=1)]
        run_id = h.start()
        await h.clock.advance(100)
        done = h.engine.get_run(run_id)
        assert done.status is RunStatus.SUCCEEDED
        a = done.node("a")
        assert [(x.number, x.exit_code) for x in a.attempts] == [(1, 1), (2, 1), (3, 0)]
        assert a.attempts[0].error == "exited with code 1"

    h = run(tmp_path, CHAIN, body)
    # attempt 1 at 0, ends at 1; delay 10 -> 11; ends 12; delay 20 -> 32; b after 33
    assert h.node_times("a") == [0, 11, 32]
    assert h.node_times("b") == [33]
    assert ("a", "RETRYING") in h.events


def test_retries_exhausted_fail_node_and_skip_downstream(tmp_path):
    async def body(h: Harness) -> None:
        h.launcher.scripts["a"] = [Behaviour(code=3)] * 3
        run_id = h.start()
        await h.clock.advance(100)
        done = h.engine.get_run(run_id)
        assert done.status is RunStatus.FAILED
        assert done.node("a").status is NodeStatus.FAILED
        assert len(done.node("a").attempts) == 3
        assert done.node("b").status is NodeStatus.SKIPPED
        assert done.node("b").attempts == ()

    run(tmp_path, CHAIN, body)


TIMEOUT = """
nodes:
  - {name: slow, command: x, timeout: 30s, retries: 1, retry_delay: 0}
"""


def test_timeout_terms_then_kills_after_grace_and_counts_as_failed_attempt(tmp_path):
    async def body(h: Harness) -> None:
        h.launcher.scripts["slow"] = [Behaviour(hang=True, ignore_term=True),
                                      Behaviour(hang=True)]
        run_id = h.start()
        await h.clock.advance(30)
        first = h.launcher.processes["slow"][0]
        assert first.signals == [signal.SIGTERM]  # TERM at the timeout ...
        await h.clock.advance(5)
        assert first.signals == [signal.SIGTERM, signal.SIGKILL]  # ... KILL after grace
        await h.clock.advance(30)
        second = h.launcher.processes["slow"][1]
        assert second.signals == [signal.SIGTERM]  # it obeyed TERM: no KILL
        done = h.engine.get_run(run_id)
        assert done.status is RunStatus.FAILED
        assert [a.error for a in done.node("slow").attempts] == [
            "timed out after 30s", "timed out after 30s"]
        assert [a.exit_code for a in done.node("slow").attempts] == [137, 143]

    run(tmp_path, TIMEOUT, body)


FAN = """
queue: solo
nodes:
""" + "".join(f"  - {{name: n{i}, command: x}}\n" for i in range(4))


def test_queue_bounds_running_nodes_across_runs(tmp_path):
    async def body(h: Harness) -> None:
        first, second = h.start(), h.start()
        await h.clock.advance(20)
        assert h.launcher.peak == 1
        for run_id in (first, second):
            assert h.engine.get_run(run_id).status is RunStatus.SUCCEEDED

    h = run(tmp_path, FAN.replace("nodes:", "max_active_runs: 2\nnodes:"), body)
    assert sorted(at for _, at in h.launcher.launches) == [float(T0.timestamp() + i)
                                                            for i in range(8)]


def test_queue_override_applies_except_to_nodes_with_their_own_queue(tmp_path):
    yaml = """
nodes:
  - {name: free, command: x}
  - {name: pinned, command: x, queue: solo}
"""

    async def body(h: Harness) -> None:
        run_id = h.start(queue="dev")
        run_ = h.engine.get_run(run_id)
        assert (run_.node("free").queue, run_.node("pinned").queue) == ("dev", "solo")
        with pytest.raises(RunError, match="queue 'nope' is not defined"):
            h.start(queue="nope")
        await h.clock.advance(5)

    run(tmp_path, yaml, body)


def test_a_node_sent_to_a_spark_queue_by_the_runs_override_fails_naming_that_queue(
        tmp_path, monkeypatch):
    """Not the plan's queue: the one the node would have run on."""
    settings = SETTINGS + b"  heavy: {executor: spark, concurrency: 1, master: 'local[1]'}\n"
    yaml = """
nodes:
  - {name: sh, command: echo hi, retries: 2}
  - {name: j, source: jobs/j.py, retries: 2}
"""
    monkeypatch.setattr(spark, "locate", lambda: None)  # no spark-submit here

    async def body(h: Harness) -> None:
        run_id = h.start(queue="heavy")
        await h.clock.advance(5)
        done = h.engine.get_run(run_id)
        assert done.status is RunStatus.FAILED
        assert (done.node("sh").queue, done.node("j").queue) == ("heavy", "heavy")
        assert _attempts(h, run_id, "sh") == [
            (1, "FAILED", None, "queue 'heavy' uses executor spark, which runs python and sql"
             " sources; node 'sh' is a shell command: put it on a local queue")]
        assert _attempts(h, run_id, "j") == [
            (1, "FAILED", None, "queue 'heavy' uses executor spark, but spark-submit was not"
             " found: pip install 'flowplan[spark]' (or set SPARK_HOME)")]
        assert h.launcher.launches == []

    h = Harness(tmp_path, compile_one(yaml, settings, {"jobs/j.py": b"print('hi')\n"}))

    async def main() -> None:
        await h.engine.start()
        await body(h)
        await h.engine.stop()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_max_active_runs_keeps_extra_runs_pending_then_starts_them(tmp_path):
    async def body(h: Harness) -> None:
        first, second = h.start(), h.start()
        await h.clock.settle()
        assert h.engine.get_run(second).status is RunStatus.PENDING
        await h.clock.advance(4)
        assert h.engine.get_run(first).status is RunStatus.SUCCEEDED
        assert h.engine.get_run(second).status is RunStatus.RUNNING
        await h.clock.advance(4)
        assert h.engine.get_run(second).status is RunStatus.SUCCEEDED

    run(tmp_path, FAN, body)


TRIGGERS = """
nodes:
  - {name: root, command: x}
  - {name: bad, command: x, upstream: [root]}
  - {name: good, command: x, upstream: [root]}
  - {name: after_good, command: x, upstream: [good]}
  - {name: after_bad, command: x, upstream: [bad]}
  - {name: any_ok, command: x, upstream: [bad, good], trigger: any_succeeded}
  - {name: all_done, command: x, upstream: [bad, good], trigger: all_done}
  - {name: on_fail, command: x, upstream: [bad, good], trigger: any_failed}
  - {name: all_fail, command: x, upstream: [bad, good], trigger: all_failed}
"""


def test_triggers_and_independent_branches_after_a_failure(tmp_path):
    async def body(h: Harness) -> None:
        h.launcher.scripts["bad"] = [Behaviour(code=1)]
        run_id = h.start()
        await h.clock.advance(20)
        done = h.engine.get_run(run_id)
        status = {n.name: n.status.value for n in done.nodes}
        assert status == {
            "root": "SUCCEEDED", "bad": "FAILED", "good": "SUCCEEDED",
            "after_good": "SUCCEEDED", "after_bad": "SKIPPED", "any_ok": "SUCCEEDED",
            "all_done": "SUCCEEDED", "on_fail": "SUCCEEDED", "all_fail": "SKIPPED"}
        assert done.status is RunStatus.FAILED
        assert done.node("after_bad").skip_reason == "trigger all_succeeded: upstream bad FAILED"
        assert done.node("all_fail").skip_reason == (
            "trigger all_failed: upstream good SUCCEEDED")

    run(tmp_path, TRIGGERS, body)


def test_cleanup_node_skipped_after_success_does_not_fail_the_run(tmp_path):
    async def body(h: Harness) -> None:
        run_id = h.start()
        await h.clock.advance(20)
        done = h.engine.get_run(run_id)
        assert done.node("on_fail").status is NodeStatus.SKIPPED
        assert done.node("on_fail").skip_reason == "trigger any_failed: no upstream failed"
        assert done.status is RunStatus.SUCCEEDED

    run(tmp_path, TRIGGERS.replace("  - {name: all_fail, command: x, upstream: [bad, good],"
                                   " trigger: all_failed}\n", "")
        .replace("  - {name: after_bad, command: x, upstream: [bad]}\n", ""), body)


def test_cancel_kills_running_and_cancels_pending(tmp_path):
    yaml = """
nodes:
  - {name: a, command: x}
  - {name: b, command: x, upstream: [a]}
  - {name: c, command: x}
"""

    async def body(h: Harness) -> None:
        h.launcher.scripts["a"] = [Behaviour(hang=True)]
        h.launcher.scripts["c"] = [Behaviour(seconds=0.5)]
        run_id = h.start()
        await h.clock.advance(1)
        h.engine.cancel_run(run_id)
        await h.clock.advance(1)
        done = h.engine.get_run(run_id)
        assert done.status is RunStatus.CANCELLED
        assert {n.name: n.status.value for n in done.nodes} == {
            "a": "CANCELLED", "b": "CANCELLED", "c": "SUCCEEDED"}
        assert h.launcher.processes["a"][0].signals == [signal.SIGTERM]
        assert done.node("a").attempts[0].error == "cancelled"
        with pytest.raises(RunError, match="already finished") as info:
            h.engine.cancel_run(run_id)
        assert info.value.precondition
        with pytest.raises(RunError, match="does not exist") as missing:
            h.engine.cancel_run("wr_nope")
        assert missing.value.not_found

    run(tmp_path, yaml, body)


def test_a_cancel_while_a_nodes_command_is_built_starts_nothing(tmp_path):
    """The run is CANCELLED once nothing of it runs: a node whose templates were rendering
    when the cancel came is never launched, nor recorded as started."""
    yaml = """
nodes:
  - {name: a, command: "echo ${ ds }"}
"""

    async def body(h: Harness) -> None:
        h.clock.render_seconds = 2
        run_id = h.start()
        await h.clock.advance(1)
        h.engine.cancel_run(run_id)
        await h.clock.advance(5)
        done = h.engine.get_run(run_id)
        assert (done.status, done.node("a").status) == (RunStatus.CANCELLED,
                                                        NodeStatus.CANCELLED)
        assert (h.launcher.launches, done.node("a").attempts) == ([], ())
        assert ("a", "RUNNING") not in h.events

    run(tmp_path, yaml, body)


def _attempts(h: Harness, run_id: str, node: str) -> list[tuple[int, str, int | None, str]]:
    return [(a.number, a.status.value, a.exit_code, a.error or "")
            for a in h.engine.get_run(run_id).node(node).attempts]


def test_an_attempt_whose_files_cannot_be_written_fails_and_is_retried(tmp_path):
    """Its own attempt records why (attempt 1's result stays); the node's retries apply."""
    plan = compile_one("nodes:\n  - {name: q, source: jobs/q.sql, retries: 2, retry_delay: 10s}\n",
                       sources={"jobs/q.sql": b"SELECT '${ds}';\n"})
    harness = Harness(tmp_path, plan)

    async def main() -> None:
        await harness.engine.start()
        harness.launcher.scripts["q"] = [Behaviour(code=1), Behaviour(code=0)]
        run_id = harness.start()
        await harness.clock.advance(2)
        blocked = tmp_path / "state" / "runs" / run_id / "q" / "2"  # a file: no folder there
        blocked.parent.mkdir(parents=True, exist_ok=True)
        blocked.write_text("")
        await harness.clock.advance(15)
        assert _attempts(harness, run_id, "q")[:2] == [
            (1, "FAILED", 1, "exited with code 1"),
            (2, "FAILED", None, "cannot write the attempt's files: File exists")]
        await harness.clock.advance(30)
        assert [a[:2] for a in _attempts(harness, run_id, "q")] == [
            (1, "FAILED"), (2, "FAILED"), (3, "SUCCEEDED")]
        assert harness.engine.get_run(run_id).status is RunStatus.SUCCEEDED
        await harness.engine.stop()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_fault_before_an_attempt_is_recorded_fails_a_new_attempt_not_the_last(tmp_path):
    """A bug of flowplan's own fails the node at once, on an attempt of its own."""
    async def body(h: Harness) -> None:
        h.launcher.scripts["a"] = [Behaviour(code=1)]
        run_id = h.start()
        await h.clock.advance(2)

        async def broken(*args: Any) -> Any:
            raise RuntimeError("a bug")

        h.engine._build_command = broken  # type: ignore[method-assign]
        await h.clock.advance(10)
        assert _attempts(h, run_id, "a") == [(1, "FAILED", 1, "exited with code 1"),
                                             (2, "FAILED", None, "internal error: a bug")]
        assert h.engine.get_run(run_id).node("a").status is NodeStatus.FAILED

    run(tmp_path, CHAIN, body)


def test_after_a_restart_a_queue_runs_no_more_than_its_concurrency(tmp_path):
    """The adopted attempts hold their queue's slots before any pending node asks for one,
    whatever the order of their runs: here the older run's node waits, as before the stop."""
    yaml = """
max_active_runs: 2
nodes:
  - {name: x, command: x}
  - {name: s, command: s, queue: solo, upstream: [x]}
"""
    first = Harness(tmp_path, compile_one(yaml))
    first.launcher.scripts = {"x": [Behaviour(seconds=5), Behaviour(seconds=1)],
                              "s": [Behaviour(seconds=100)] * 2}

    async def before() -> None:
        await first.engine.start()
        first.start()
        first.start(logical_time=T0 + timedelta(hours=1))  # its x ends first: its s runs
        await first.clock.advance(10)
        assert [(q.name, q.running, q.waiting) for q in first.engine.queue_usage()
                if q.name == "solo"] == [("solo", 1, 1)]
        await first.engine.stop()

    asyncio.run(asyncio.wait_for(before(), 10))
    again = Harness(tmp_path, first.plan())
    again.launcher.adopt = Behaviour(seconds=100)
    again.launcher.scripts = {"s": [Behaviour(seconds=100)]}

    async def after() -> None:
        await again.engine.start()
        await again.clock.advance(1)
        assert [(q.name, q.running, q.waiting) for q in again.engine.queue_usage()
                if q.name == "solo"] == [("solo", 1, 1)]
        assert (again.launcher.peak, again.launcher.launches) == (1, [])
        await again.engine.stop()

    asyncio.run(asyncio.wait_for(after(), 10))


def _ended_while_down(tmp_path: Path, *, down_at: float, up_at: float,
                      ended_at: float | None, cancel: bool = False,
                      plan_gone: bool = False) -> tuple[Harness, str]:
    """Node a of CHAIN (retry_delay 10s) runs from T0; the engine stops at `down_at` s
    (`cancel`: just after the run's cancel, before a ended); a new one starts at `up_at` s
    (`plan_gone`: its plan cannot be loaded any more) and finds a's attempt 1 ended with
    code 3 at `ended_at` s (its exit file's time; None: unknown). Runs until T0 + 100 s."""
    first = Harness(tmp_path, compile_one(CHAIN))
    first.launcher.scripts["a"] = [Behaviour(hang=True, ignore_term=True)]

    async def before() -> str:
        await first.engine.start()
        run_id = first.start()
        await first.clock.advance(down_at)
        if cancel:
            first.engine.cancel_run(run_id)
            await first.clock.advance(0)
        await first.engine.stop()
        return run_id

    run_id = asyncio.run(asyncio.wait_for(before(), 10))
    again = Harness(tmp_path, first.plan(), at=T0 + timedelta(seconds=up_at))
    found: list[Path] = []

    def recover(attempt_dir: Path, pid: int | None, pid_start: int | None) -> Recovered:
        found.append(attempt_dir)
        return Recovered(exit_code=3, pid=pid, ended_at=None if ended_at is None
                         else T0 + timedelta(seconds=ended_at))

    again.launcher.recover = recover  # type: ignore[method-assign]
    if plan_gone:
        def gone(workflow: str, version: int) -> Plan:
            raise PlanError(f"{workflow} version {version}: the plan file is damaged")

        again.plans.get = gone  # type: ignore[method-assign]

    async def after() -> None:
        await again.engine.start()
        await again.clock.advance(100 - up_at)
        await again.engine.stop()

    asyncio.run(asyncio.wait_for(after(), 10))
    assert [(f.parent.name, f.name) for f in found] == [("a", "1")]
    return again, run_id


def test_an_attempt_that_ended_while_the_engine_was_down_ends_when_its_process_did(
        tmp_path):
    """Its finished_at is its exit file's time, not the restart's, and its retry is due
    retry_delay after that: the downtime does not delay it."""
    h, run_id = _ended_while_down(tmp_path, down_at=1, up_at=8, ended_at=4)
    a = h.engine.get_run(run_id).node("a")
    assert [(x.number, x.exit_code) for x in a.attempts] == [(1, 3), (2, 0)]
    assert a.attempts[0].finished_at == T0 + timedelta(seconds=4)
    assert a.attempts[0].error == "exited with code 3"
    assert h.node_times("a") == [14]  # 4 + 10, not 8 + 10
    assert h.engine.get_run(run_id).status is RunStatus.SUCCEEDED


def test_a_retry_already_due_at_the_restart_starts_at_once(tmp_path):
    h, run_id = _ended_while_down(tmp_path, down_at=1, up_at=30, ended_at=4)
    assert h.engine.get_run(run_id).node("a").attempts[0].finished_at == (
        T0 + timedelta(seconds=4))
    assert h.node_times("a") == [30]


def test_a_cancelled_attempt_that_ended_while_the_engine_was_down_ends_when_it_did(
        tmp_path):
    h, run_id = _ended_while_down(tmp_path, down_at=1, up_at=8, ended_at=4, cancel=True)
    done = h.engine.get_run(run_id)
    assert done.status is RunStatus.CANCELLED
    [first] = done.node("a").attempts
    assert (first.status.value, first.exit_code, first.error) == ("CANCELLED", 3, "cancelled")
    assert first.finished_at == T0 + timedelta(seconds=4)
    assert h.node_times("a") == []


def test_an_attempt_of_a_run_that_cannot_be_recovered_ends_when_its_process_did(tmp_path):
    """The run fails (its plan is gone), and the attempt that ended by itself while the
    engine was down keeps its own end, not the restart's."""
    h, run_id = _ended_while_down(tmp_path, down_at=1, up_at=8, ended_at=4, plan_gone=True)
    done = h.store.get_run(run_id)
    assert done is not None and done.status is RunStatus.FAILED
    [first] = done.node("a").attempts
    assert (first.status.value, first.exit_code, first.error) == (
        "FAILED", 3, "exited with code 3")
    assert first.finished_at == T0 + timedelta(seconds=4)
    assert done.finished_at == T0 + timedelta(seconds=8)  # the run itself fails now
    assert h.node_times("a") == []


@pytest.mark.parametrize(("left_running", "waiting"), [(False, False), (True, False),
                                                       (False, True)],
                         ids=["found-ended", "stopped", "waiting-for-admission"])
def test_a_run_that_cannot_be_recovered_is_heard_failing_in_the_commit_that_fails_it(
        tmp_path, left_running, waiting):
    """Its watchers wake, and a durable listener (the outbox, backfills) writes inside the
    commit that fails it: whether its node had ended or is stopped first (after the grace),
    or it was still waiting for admission (max_active_runs) and is failed when admitted."""
    first = Harness(tmp_path, compile_one("max_active_runs: 1\n" + CHAIN))
    first.launcher.scripts["a"] = [Behaviour(hang=True, ignore_term=True)]

    async def before() -> str:
        await first.engine.start()
        running = first.start()
        queued = first.start(logical_time=T0 + timedelta(hours=1))
        await first.clock.advance(1)
        await first.engine.stop()
        return queued if waiting else running

    run_id = asyncio.run(asyncio.wait_for(before(), 10))
    again = Harness(tmp_path, first.plan(), at=T0 + timedelta(seconds=8))
    again.launcher.adopt = Behaviour(hang=True, ignore_term=True) if left_running else None

    def gone(workflow: str, version: int) -> Plan:
        raise PlanError(f"{workflow} version {version}: the plan file is damaged")

    again.plans.get = gone  # type: ignore[method-assign]
    heard: list[tuple[str, RunStatus | None]] = []

    def durable(event: Any) -> None:  # what it reads is what its writes commit with
        if event.node is None and event.status != "PENDING":  # (queued again at start)
            found = again.store.get_run(event.run_id, with_nodes=False)
            heard.append((event.status, found and found.status))

    again.engine.subscribe(durable, durable=True)

    async def after() -> None:
        await again.engine.start()
        await again.clock.advance(30)  # the grace (5 s) for a node left running
        await again.engine.stop()

    asyncio.run(asyncio.wait_for(after(), 10))
    assert heard == [("FAILED", RunStatus.FAILED)] * 2  # the running run's, the waiting one's
    assert [e for e in again.events if e[1] != "PENDING"] == [(None, "FAILED")] * 2
    done = again.store.get_run(run_id)
    assert done is not None and done.status is RunStatus.FAILED
    assert done.finished_at == T0 + timedelta(seconds=13 if left_running else 8)
    assert [n.skip_reason for n in done.nodes] == [
        "cannot recover: w version 1: the plan file is damaged"] * 2


@pytest.mark.parametrize(("ended_at", "finished"), [
    (-5, 0),  # before the attempt started (a clock set back, a file's time changed): its start
    (50, 8),  # after the restart (the same, forward): the restart
    (None, 8),  # unknown: the restart, as before
], ids=["before-its-start", "after-now", "unknown"])
def test_the_end_time_of_an_attempt_found_ended_is_kept_between_its_start_and_now(
        tmp_path, ended_at, finished):
    h, run_id = _ended_while_down(tmp_path, down_at=1, up_at=8, ended_at=ended_at)
    first = h.engine.get_run(run_id).node("a").attempts[0]
    assert first.started_at == T0
    assert first.finished_at == T0 + timedelta(seconds=finished)
    assert h.node_times("a") == [max(finished + 10, 8)]


def test_a_cancelled_pending_run_records_each_nodes_cancel_in_its_history(tmp_path):
    """WatchRun replays a run's history: a run cancelled while it waited for admission has
    its nodes' CANCELLED there too, as live watchers saw them, before the run's."""
    yaml = "max_active_runs: 1\nnodes:\n  - {name: a, command: x}\n  - {name: b, command: x}\n"

    async def body(h: Harness) -> None:
        h.launcher.scripts["a"] = [Behaviour(hang=True)]
        h.start()
        waiting = h.start(logical_time=T0 + timedelta(hours=1))
        await h.clock.advance(1)
        h.engine.cancel_run(waiting)
        assert [(e.node, e.status) for e in h.store.events_after(waiting, 0)] == [
            (None, "PENDING"), ("a", "CANCELLED"), ("b", "CANCELLED"), (None, "CANCELLED")]

    run(tmp_path, yaml, body)


def test_cancel_of_retrying_node_stops_the_retry(tmp_path):
    async def body(h: Harness) -> None:
        h.launcher.scripts["a"] = [Behaviour(code=1)]
        run_id = h.start()
        await h.clock.advance(2)
        assert h.engine.get_run(run_id).node("a").status is NodeStatus.RETRYING
        h.engine.cancel_run(run_id)
        await h.clock.advance(100)
        done = h.engine.get_run(run_id)
        assert done.status is RunStatus.CANCELLED
        assert len(done.node("a").attempts) == 1

    run(tmp_path, CHAIN, body)


def test_a_result_the_database_refuses_waits_in_memory_and_is_committed_later(tmp_path):
    """While another connection holds SQLite's write lock (busy_timeout 0: refused at
    once, as a full disk refuses), a's end is kept and retried; b starts only once it is
    committed, and a listener that fails does not stop the run."""

    def deaf(event: Any) -> None:
        raise RuntimeError("a listener that fails")

    async def body(h: Harness) -> None:
        h.engine.subscribe(deaf)
        h.launcher.scripts["a"] = [Behaviour(code=0, seconds=1)]
        run_id = h.start()
        await h.clock.advance(0)
        h.store._db.execute("PRAGMA busy_timeout=0")
        blocker = sqlite3.connect(h.store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        await h.clock.advance(30)  # a ended at 1; every commit since was refused
        assert h.store.write_error == "database is locked"
        assert h.node_times("b") == []
        blocker.execute("ROLLBACK")
        blocker.close()
        assert h.engine.get_run(run_id).node("a").status is NodeStatus.RUNNING
        await h.clock.advance(2)  # the next retry (backoff up to 2 s) commits
        assert h.store.write_error is None
        await h.clock.advance(10)
        done = h.engine.get_run(run_id)
        assert done.status is RunStatus.SUCCEEDED
        assert done.node("a").attempts[0].finished_at == T0 + timedelta(seconds=1)

    h = run(tmp_path, CHAIN, body)
    assert len(h.node_times("b")) == 1 and h.node_times("b")[0] > 30  # after the release
