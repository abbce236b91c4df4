"""The engine with real processes, a real plan store and real SQLite: templates, FLOWPLAN_*
variables, logs, SQL nodes, process-tree timeouts, and resume after a fix."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import marked, running, wait_until

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.repo import read_repo
from flowplan.compiler.store import PlanStore
from flowplan.daemon.domain import NodeStatus, RunStatus, RunTrigger
from flowplan.daemon.engine.clock import SystemClock
from flowplan.daemon.engine.engine import Engine, EngineSettings, RunError
from flowplan.daemon.engine.launcher import LocalLauncher
from flowplan.daemon.state.store import StateStore
from flowplan.daemon.watcher import PlanCatalog

LOGICAL = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)  # 2026-03-29 in Amsterdam




class Env:
    """A real engine (processes, SQLite, a plan store) over repositories a test publishes."""

    logical_time = LOGICAL
    kill_grace_seconds = 1.0

    def __init__(self, tmp: Path, make_repo: Any) -> None:
        self.tmp = tmp
        self.make_repo = make_repo
        self.store = PlanStore(tmp / "store")
        self.state_dir = tmp / "state"
        self.catalog = PlanCatalog(self.store)
        self.engine = Engine(store=StateStore(self.state_dir), plans=self.catalog,
                             launcher=LocalLauncher(), clock=SystemClock(),
                             settings=EngineSettings(
                                 state_dir=self.state_dir,
                                 kill_grace_seconds=self.kill_grace_seconds))

    def publish(self, files: dict[str, str]) -> None:
        result = compile_repo(read_repo(self.make_repo(files)))
        assert result.ok, [str(d) for d in result.diagnostics]
        self.store.publish(result.plans)
        self.catalog.rescan()

    def start(self, workflow: str, **kwargs: Any) -> str:
        plan = self.store.latest(workflow)
        assert plan is not None
        kwargs.setdefault("trigger", RunTrigger.MANUAL)
        kwargs.setdefault("logical_time", self.logical_time)
        return self.engine.create_run(plan, **kwargs).run_id


def drive(tmp_path: Path, make_repo: Any, body: Callable[[Any], Awaitable[None]], *,
          env_type: type[Env] = Env, limit: float = 30) -> None:
    env = env_type(tmp_path, make_repo)

    async def main() -> None:
        await env.engine.start()
        try:
            await body(env)
        finally:
            await env.engine.stop()

    asyncio.run(asyncio.wait_for(main(), limit))


def test_templates_context_env_and_logs(tmp_path, make_repo):
    out = tmp_path / "out.txt"
    files = {"workflows/t.yaml": f"""
name: t
params: {{region: eu, API_TOKEN: s3cr3t-value}}
schedule: {{every: day, at: "00:30", timezone: Europe/Amsterdam}}
nodes:
  - name: write
    source: jobs/write.sh
    args: ["${{ds}}", "${{ds_nodash}}", "${{params.region}}", "${{attempt}}", "{out}"]
    env: {{REGION: "${{params.region | upper}}"}}
""", "jobs/write.sh": 'echo "$1 $2 $3 $4 $REGION $FLOWPLAN_DS $FLOWPLAN_WORKFLOW $FLOWPLAN_NODE'
                      ' $FLOWPLAN_RUN_ID" > "$5"\necho "token is $(echo $FLOWPLAN_PARAMS)"\n'}

    async def body(env: Env) -> None:
        env.publish(files)
        run_id = env.start("t", params={"region": "us"})
        done = await env.engine.wait_run(run_id)
        assert done.status is RunStatus.SUCCEEDED
        assert out.read_text().split() == ["2026-03-29", "20260329", "us", "1", "US",
                                           "2026-03-29", "t", "write", run_id]
        attempt = done.node("write").attempts[0]
        raw = Path(attempt.log_path or "").read_text()
        assert "s3cr3t-value" in raw  # the file under the state dir is raw ...
        assert "s3cr3t-value" not in env.engine.masked(run_id, raw)  # ... shown masked
        assert "********" in env.engine.masked(run_id, raw)

    drive(tmp_path, make_repo, body)


def test_a_runs_nodes_share_its_workspace_as_their_working_directory(tmp_path, make_repo):
    files = {"workflows/w.yaml": """
name: w
nodes:
  - {name: write, command: 'test "$(pwd)" = "$FLOWPLAN_WORKSPACE" && echo hello >> shared.txt'}
  - {name: read, upstream: [write],
     command: 'test "$(pwd)" = "$FLOWPLAN_WORKSPACE" && grep -q hello shared.txt'}
"""}

    async def body(env: Env) -> None:
        env.publish(files)
        first, second = env.start("w"), env.start("w", logical_time=LOGICAL.replace(day=27))
        for run_id in (first, second):
            done = await env.engine.wait_run(run_id)
            assert done.status is RunStatus.SUCCEEDED, done
            workspace = env.state_dir / "runs" / run_id / "workspace"
            assert (workspace / "shared.txt").read_text() == "hello\n"  # one folder per run

    drive(tmp_path, make_repo, body)


def test_sources_run_from_the_plan_not_the_repository(tmp_path, make_repo):
    files = {"workflows/s.yaml": "name: s\nnodes: [{source: jobs/say.sh}]\n",
             "jobs/say.sh": "echo published\n"}

    async def body(env: Env) -> None:
        env.publish(files)
        env.make_repo({"jobs/say.sh": "echo edited-after-publish\n"})
        done = await env.engine.wait_run(env.start("s"))
        log = Path(done.node("say").attempts[0].log_path or "").read_text()
        assert log == "published\n"

    drive(tmp_path, make_repo, body)


def test_sql_node_runs_on_embedded_sqlite_and_tables_persist(tmp_path, make_repo):
    files = {"workflows/q.yaml": "name: q\nnodes: [{source: jobs/q.sql}]\n",
             "jobs/q.sql": "CREATE TABLE IF NOT EXISTS t (ds TEXT);\n"
                           "INSERT INTO t VALUES ('${ds}');\nSELECT count(*) AS n FROM t;\n"}

    async def body(env: Env) -> None:
        env.publish(files)
        for expected in ("1", "2"):
            done = await env.engine.wait_run(env.start("q"))
            assert done.status is RunStatus.SUCCEEDED
            log = Path(done.node("q").attempts[0].log_path or "").read_text()
            assert log.split() == ["n", expected]

    drive(tmp_path, make_repo, body)


def test_timeout_kills_the_whole_process_tree(tmp_path, make_repo):
    pidfile = tmp_path / "grandchild.pid"
    files = {"workflows/k.yaml": f"""
name: k
nodes:
  - name: tree
    command: sh -c 'sleep 60 & echo $! > {pidfile}; wait'
    timeout: 1s
"""}

    async def body(env: Env) -> None:
        env.publish(files)
        started = time.monotonic()
        done = await env.engine.wait_run(env.start("k"))
        assert time.monotonic() - started < 5
        assert done.status is RunStatus.FAILED
        assert done.node("tree").attempts[0].error == "timed out after 1s"
        grandchild = int(pidfile.read_text())
        deadline = time.monotonic() + 2
        while running(grandchild):  # SIGKILL sent to its group; its end takes a moment
            assert time.monotonic() < deadline, "the timed-out node's grandchild still runs"
            await asyncio.sleep(0.01)

    drive(tmp_path, make_repo, body)


class QuickKill(Env):
    kill_grace_seconds = 0.3


@pytest.mark.parametrize("cgroups", ["on", "off"])
def test_an_attempt_leaves_nothing_behind_and_never_runs_beside_its_retry(
        tmp_path, make_repo, monkeypatch, cgroups):
    """Children that ignore TERM die with the KILL after the grace although the node's shell
    died of the TERM, before the retry starts; a node that succeeds leaving a background child
    leaves nothing either. With a cgroup per attempt where the machine allows it, and with
    the process group alone (FLOWPLAN_CGROUPS=off: the shim reads it when it starts)."""
    monkeypatch.setenv("FLOWPLAN_CGROUPS", cgroups)
    mark = f"retry-{tmp_path.name}-{time.monotonic_ns()}"
    trace = tmp_path / "trace"
    body_loop = f"while :; do echo $FLOWPLAN_ATTEMPT >> {trace}; sleep 0.05; done"
    files = {"workflows/k.yaml": f"""
name: k
nodes:
  - name: stuck
    command: >-
      echo start $FLOWPLAN_ATTEMPT >> {trace};
      for i in 1 2 3; do (trap '' TERM; {body_loop}) & done; wait
    timeout: 500ms
    retries: 1
    retry_delay: 0
    env: {{FLOWPLAN_TEST_MARK: {mark}}}
  - name: bg
    command: sleep 60 & echo ok
    env: {{FLOWPLAN_TEST_MARK: {mark}}}
"""}

    async def body(env: Env) -> None:
        env.publish(files)
        done = await env.engine.wait_run(env.start("k"))
        assert done.status is RunStatus.FAILED
        assert [a.error for a in done.node("stuck").attempts] == ["timed out after 0.5s"] * 2
        assert done.node("bg").status is NodeStatus.SUCCEEDED
        lines = trace.read_text().split("\n")
        second = lines.index("start 2")
        assert "1" in lines[:second] and "1" not in lines[second:]  # never beside attempt 2
        wait_until(lambda: not marked(mark), "every process of the run to be gone")

    drive(tmp_path, make_repo, body, env_type=QuickKill)


RESUME_V1 = """
name: glue
nodes:
  - {name: J1, command: "echo J1 >> %(log)s"}
  - {name: J2, command: "echo J2 >> %(log)s; exit %(fail)s", upstream: [J1]}
  - {name: J3, command: "echo J3 >> %(log)s; exit %(fail)s", upstream: [J1]}
  - {name: J4, command: "echo J4 >> %(log)s", upstream: [J2]}
  - {name: J5, command: "echo J5 >> %(log)s", upstream: [J3]}
"""


def test_resume_after_a_fix_reruns_selected_and_downstream_copies_the_rest(tmp_path,
                                                                           make_repo):
    trace = tmp_path / "trace.log"

    async def body(env: Env) -> None:
        env.publish({"workflows/glue.yaml": RESUME_V1 % {"log": trace, "fail": 1}})
        first = await env.engine.wait_run(env.start("glue"))
        assert first.status is RunStatus.FAILED
        assert {n.name: n.status.value for n in first.nodes} == {
            "J1": "SUCCEEDED", "J2": "FAILED", "J3": "FAILED", "J4": "SKIPPED",
            "J5": "SKIPPED"}
        env.publish({"workflows/glue.yaml": RESUME_V1 % {"log": trace, "fail": 0}})  # fix
        trace.write_text("")
        dry = env.engine.resume_run(first.run_id, ["J3", "J2"], dry_run=True)
        assert (dry.run_id, dry.node_names) == (None, ("J2", "J3"))
        answer = env.engine.resume_run(first.run_id, ["J2", "J3"])
        assert answer.node_names == ("J2", "J3") and answer.run_id != first.run_id
        second = await env.engine.wait_run(answer.run_id or "")
        assert second.status is RunStatus.SUCCEEDED
        assert second.previous_run_id == first.run_id
        assert second.trigger is RunTrigger.RESUME and second.plan_version == 2
        j1 = second.node("J1")
        assert (j1.status, j1.copied_from_run_id, j1.plan_version) == (
            NodeStatus.SUCCEEDED, first.run_id, 1)
        assert [a.copied_from_run_id for a in j1.attempts] == [first.run_id]
        assert j1.attempts[0].started_at == first.node("J1").attempts[0].started_at
        for name in ("J2", "J3", "J4", "J5"):
            node = second.node(name)
            assert node.status is NodeStatus.SUCCEEDED and node.copied_from_run_id is None
            assert node.plan_version == 2
        assert [a.number for a in second.node("J2").attempts] == [1]  # a new run: from 1
        assert sorted(trace.read_text().split()) == ["J2", "J3", "J4", "J5"]  # J1 not rerun
        redundant = env.engine.resume_run(second.run_id, ["J4", "J2"], dry_run=True)
        assert redundant.node_names == ("J2",)  # J4 is downstream of J2: it runs anyway
        third = env.engine.resume_run(second.run_id, ["J5"])  # a resumed run resumes again
        again = await env.engine.wait_run(third.run_id or "")
        assert again.status is RunStatus.SUCCEEDED
        assert again.node("J2").copied_from_run_id == second.run_id
        assert again.node("J1").copied_from_run_id == first.run_id

    drive(tmp_path, make_repo, body)


def test_resume_errors(tmp_path, make_repo):
    trace = tmp_path / "trace.log"

    async def body(env: Env) -> None:
        env.publish({"workflows/glue.yaml": RESUME_V1 % {"log": trace, "fail": 1}})
        done = await env.engine.wait_run(env.start("glue"))
        with pytest.raises(RunError, match="never attempted") as never:
            env.engine.resume_run(done.run_id, ["J4"])
        assert never.value.precondition and never.value.field == "node_names[0]"
        with pytest.raises(RunError, match="not a node"):
            env.engine.resume_run(done.run_id, ["J9"])
        with pytest.raises(RunError, match="'J9' is not a node") as repeated:
            env.engine.resume_run(done.run_id, ["J2", "J2", "J9"])  # named where it was sent
        assert repeated.value.field == "node_names[2]"
        assert env.engine.resume_run(done.run_id, ["J2", "J2"], dry_run=True).node_names \
            == ("J2",)
        with pytest.raises(RunError, match="does not exist") as missing:
            env.engine.resume_run("wr_missing", ["J2"])
        assert missing.value.not_found
        env.publish({"workflows/glue.yaml": "name: glue\nnodes: [{name: J1, command: x}]\n"})
        with pytest.raises(RunError, match="version 2 of glue has no such node") as gone:
            env.engine.resume_run(done.run_id, ["J2"])
        assert gone.value.field == "plan_version"
        answer = env.engine.resume_run(done.run_id, ["J2"], plan_version=1)  # named version
        assert answer.run_id is not None
        running = env.start("glue")
        with pytest.raises(RunError, match="only a finished run") as busy:
            env.engine.resume_run(running, ["J1"])
        assert busy.value.precondition
        await env.engine.wait_run(answer.run_id)
        await env.engine.wait_run(running)

    drive(tmp_path, make_repo, body)


def test_resume_refuses_what_it_cannot_do_as_answered(tmp_path, make_repo):
    """A starting node that its trigger would skip at once, and a removed workflow even with
    a version named, are refused; params a fix added get their defaults."""
    trigger_v1 = ("name: t\nparams: {p: one}\nnodes:\n  - {name: a, command: 'exit 1'}\n"
                  "  - {name: e, command: 'exit 1', upstream: [a], trigger: all_done}\n")

    async def body(env: Env) -> None:
        env.publish({"workflows/t.yaml": trigger_v1})
        first = await env.engine.wait_run(env.start("t"))
        assert first.node("e").status is NodeStatus.FAILED
        env.publish({"workflows/t.yaml": trigger_v1.replace("all_done", "all_succeeded")})
        for dry_run in (True, False):
            with pytest.raises(RunError, match="node 'e' would be skipped, not started: trigger"
                               " all_succeeded: upstream a FAILED in the copied") as skipped:
                env.engine.resume_run(first.run_id, ["e"], dry_run=dry_run)
            assert (skipped.value.field, skipped.value.precondition) == ("node_names[0]", True)
        assert env.engine.resume_run(first.run_id, ["a", "e"], dry_run=True).node_names == (
            "a",)  # with its upstream re-run, e is decided later

        env.publish({"workflows/t.yaml": "name: t\nparams: {p: two, q: added}\nnodes:\n"
                                         "  - {name: a, command: 'true'}\n  - {name: e,"
                                         " command: 'test ${params.q} = added', upstream: [a]}\n"})
        fixed = await env.engine.wait_run(env.engine.resume_run(first.run_id, ["a"]).run_id or "")
        assert fixed.status is RunStatus.SUCCEEDED
        assert fixed.params == {"p": "one", "q": "added"}  # the run's own p, q's default

        (env.make_repo({}) / "workflows/t.yaml").unlink()
        env.publish({})  # removed: version 4 is a tombstone
        for version in (None, 1, 4):
            with pytest.raises(RunError, match="was removed") as removed:
                env.engine.resume_run(first.run_id, ["a"], plan_version=version, dry_run=True)
            assert (removed.value.field, removed.value.precondition) == ("run_id", True)

    drive(tmp_path, make_repo, body)


def test_a_resumed_node_runs_on_its_new_versions_queue_and_concurrency(tmp_path, make_repo):
    """The fix pushed to git takes effect: a re-run node uses its queue as its new version
    defines it (here one that did not exist before), and a queue's concurrency stays the
    newest published one however old the resumed run's version is."""
    failing = "name: w\nnodes:\n  - {name: a, command: 'exit 1'}\n"
    fixed = "name: w\nnodes:\n  - {name: a, command: 'true', queue: big}\n"

    async def body(env: Env) -> None:
        env.publish({"flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
                     "workflows/w.yaml": failing})
        first = await env.engine.wait_run(env.start("w"))
        assert first.status is RunStatus.FAILED
        env.publish({"flowplan.yaml": "queues:\n  default: {concurrency: 1}\n"
                                      "  big: {concurrency: 2}\n", "workflows/w.yaml": fixed})
        await env.engine.wait_run(env.start("w"))  # a run of version 2 sizes the queues
        assert env.engine.resume_run(first.run_id, ["a"], dry_run=True).plan_version == 2
        answer = env.engine.resume_run(first.run_id, ["a"])
        resumed = await env.engine.wait_run(answer.run_id or "")
        assert (resumed.status, resumed.node("a").queue) == (RunStatus.SUCCEEDED, "big")
        old = env.engine.resume_run(first.run_id, ["a"], plan_version=1)  # its old queue
        assert (await env.engine.wait_run(old.run_id or "")).status is RunStatus.FAILED
        assert {q.name: q.capacity for q in env.engine.queue_usage()} == {
            "default": 1, "big": 2}

    drive(tmp_path, make_repo, body)


def test_missing_interpreter_fails_the_attempt_with_a_reason(tmp_path, make_repo):
    files = {"flowplan.yaml": "queues:\n  default: {python: /nonexistent/python3}\n",
             "workflows/p.yaml": "name: p\nnodes:\n  - {source: jobs/x.py, retries: 1,"
                                 " retry_delay: 0}\n  - {name: after, command: 'true',"
                                 " upstream: [x], trigger: all_done}\n",
             "jobs/x.py": "print('x')\n"}

    async def body(env: Env) -> None:
        env.publish(files)
        done = await env.engine.wait_run(env.start("p"))
        assert done.status is RunStatus.FAILED
        attempts = done.node("x").attempts
        assert len(attempts) == 2
        assert attempts[0].error == "exited with code 127: command not found (see the log)"
        assert "/nonexistent/python3" in Path(attempts[0].log_path or "").read_text()
        assert done.node("after").status is NodeStatus.SUCCEEDED

    drive(tmp_path, make_repo, body)


class CountingClock(SystemClock):
    """The system clock, counting the work it runs in its worker threads."""

    def __init__(self) -> None:
        super().__init__()
        self.bounded = 0

    async def run_bounded(self, function: Callable[[], Any], seconds: float) -> Any:
        self.bounded += 1
        return await super().run_bounded(function, seconds)


def test_only_commands_with_something_to_render_are_built_in_a_worker_thread(
        tmp_path, make_repo):
    """A local command without `$` in it, its args or env is its own rendering: built on
    the event loop, with no hop to a worker thread and back; one with a template renders
    in the worker thread, as before."""
    out = tmp_path / "out.txt"
    files = {"workflows/t.yaml": f"""
name: t
nodes:
  - {{name: plain, command: 'echo plain >> {out}', env: {{A: one}}}}
  - {{name: templated, command: 'echo ${{ node }} >> {out}', upstream: [plain]}}
  - {{name: in_env, command: 'echo "$B" >> {out}', env: {{B: x}}, upstream: [templated]}}
"""}

    class CountingEnv(Env):
        def __init__(self, tmp: Path, make_repo: Any) -> None:
            super().__init__(tmp, make_repo)
            self.clock = CountingClock()
            self.engine = Engine(store=StateStore(self.state_dir), plans=self.catalog,
                                 launcher=LocalLauncher(), clock=self.clock,
                                 settings=EngineSettings(state_dir=self.state_dir))

    async def body(env: Any) -> None:
        env.publish(files)
        done = await env.engine.wait_run(env.start("t"))
        assert done.status is RunStatus.SUCCEEDED
        # `templated` has a template; `in_env`'s command has a `$` (the shell's own)
        assert env.clock.bounded == 2
        assert out.read_text() == "plain\ntemplated\nx\n"

    drive(tmp_path, make_repo, body, env_type=CountingEnv)
