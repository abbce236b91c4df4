"""Templates that `check` cannot judge (their values come from a run's params) against a real
`flowplan serve`: the daemon keeps answering while they fail, each at its first attempt."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from conftest import MakeRepo, wait_until
from daemon_harness import publish, running_daemon
from google.protobuf import struct_pb2

from flowplan.daemon.engine.clock import SystemClock
from flowplan.daemon.engine.commands import process_problem
from flowplan.v1 import workflow_service_pb2 as pb

FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
    "workflows/bombs.yaml": """
        name: bombs
        params: {base: 7, exp: 2, s: "ab", n: 2, t: "ok"}
        retries: 3
        retry_delay: 1s
        nodes:
          - {name: power, command: "echo ${ params.base ** params.exp }"}
          - {name: repeat, command: "echo ${ (params.s * params.n) | length }"}
          - {name: nul, command: "echo \\"$VALUE\\"", env: {VALUE: "${ params.t }"}}
        """,
}


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def test_template_bombs_fail_at_once_and_the_daemon_keeps_answering(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    store = tmp_path / "store"
    publish(make_repo(FILES), store)  # publish checks: these templates pass `check`
    with running_daemon(store, tmp_path / "state") as d:
        params = struct_pb2.Struct()
        params.update({"exp": 3 * 10**7, "n": 10**9, "t": "a\0b"})
        run_id = d.call("StartRun", pb.StartRunRequest(workflow="bombs", params=params)
                        ).run.run_id

        def finished() -> pb.Run | None:
            # the event loop must stay free: every RPC answers well within its deadline
            assert d.call("ListWorkflows", pb.ListWorkflowsRequest(), timeout=2).workflows
            run = d.call("GetRun", pb.GetRunRequest(run_id=run_id, include_graph=True),
                         timeout=2).run
            return run if run.status == pb.RUN_STATUS_FAILED else None

        run = wait_until(finished, "the run to fail", timeout=30)
        nodes = {n.name: n for n in run.nodes}
        assert all(n.status == pb.NODE_STATUS_FAILED for n in nodes.values())
        assert all(len(n.attempts) == 1 for n in nodes.values()), "never retried"
        assert "has more than 4,000 digits" in nodes["power"].attempts[0].error
        assert "limited to 1,048,576" in nodes["repeat"].attempts[0].error
        assert "env 'VALUE' contains a NUL character" in nodes["nul"].attempts[0].error
        assert peak_rss_mib(d.process.pid) < 400  # 'ab' * 10**9 alone would be 2 GB


def test_run_bounded_gives_up_at_its_limit_and_the_loop_goes_on() -> None:
    async def main() -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        running = asyncio.create_task(ticker())
        clock = SystemClock()
        assert await clock.run_bounded(lambda: 42, 5) == 42
        with pytest.raises(TimeoutError):
            await clock.run_bounded(lambda: time.sleep(0.5), 0.1)
        running.cancel()
        assert ticks > 1  # the loop ran while the work blocked its thread

    asyncio.run(main())


@pytest.mark.parametrize(("argv", "env", "fragment"), [
    (("sh", "-c", "echo a\0b"), {}, "argument 2 contains a NUL character"),
    (("sh",), {"A=B": "x"}, "env name 'A=B' is not a valid name"),
    (("sh",), {"": "x"}, "env name '' is not a valid name"),
    (("sh",), {"X": "a\0b"}, "env 'X' contains a NUL character"),
    (("sh", "x" * 200_000), {}, "argument 1 has 200,000 characters"),
    (("sh",), {"X": "x" * 200_000}, "env 'X' has 200,000 characters"),
])
def test_process_problem_names_what_no_process_can_take(
        argv: tuple[str, ...], env: dict[str, str], fragment: str) -> None:
    problem = process_problem(argv, env, env)
    assert problem is not None and fragment in problem


def test_process_problem_accepts_an_ordinary_command() -> None:
    assert process_problem(("sh", "-c", "echo ok"), {"_A1": "x"}, {"_A1": "x"}) is None

