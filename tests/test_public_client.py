"""The public Python client (`flowplan.client`) against a real `flowplan serve`: a run started,
waited for, failed and resumed; the watch and log iterators, also across a daemon restart;
retries on UNAVAILABLE for reads and none for StartRun; the error type; sync and asyncio.
And what `import flowplan.client` and a client command import (not the compiler, the
server or the engine)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ROOT, MakeRepo, wait_until
from daemon_harness import Daemon, publish

from flowplan.client import AsyncClient, Client, ClientError, Retry
from flowplan.v1 import workflow_service_pb2 as pb

FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
    "workflows/chain.yaml": """
        name: chain
        params: {region: eu, code: "0"}
        nodes:
          - {name: a, command: "echo a ${params.region}"}
          - {name: b, command: "echo b; exit ${params.code}", upstream: [a]}
          - {name: c, command: "echo c", upstream: [b]}
        """,
    "workflows/ticker.yaml": """
        name: ticker
        params: {lines: "30"}
        nodes:
          - name: tick
            command: "for i in $(seq 1 ${params.lines}); do echo line $i; sleep 0.1; done"
          - {name: after, command: "echo done", upstream: [tick]}
        """,
    "workflows/quiet.yaml": """
        name: quiet
        params: {gate: ""}
        nodes:
          - {name: wait, command: "while [ ! -e ${params.gate} ]; do sleep 0.05; done; echo awake"}
        """,
}
PATIENT = Retry(first_delay=0.05, max_delay=0.5, give_up_after=60.0)


@pytest.fixture
def deployed(make_repo: MakeRepo, tmp_path: Path) -> tuple[Path, Path]:
    store = tmp_path / "store"
    publish(make_repo(FILES), store)
    return store, tmp_path / "state"


@pytest.fixture
def daemon(deployed: tuple[Path, Path]) -> Iterator[Daemon]:
    d = Daemon(*deployed)
    try:
        yield d
    finally:
        if d.process.poll() is None:
            d.stop(signal.SIGKILL)


def _event(change: pb.WatchRunResponse) -> tuple[int, int, str, int]:
    """A status change without the node's details (a replay shows the node as it is now)."""
    return change.sequence, change.run_status, change.node.name, change.node.status


def restart(d: Daemon, signum: int) -> Daemon:
    """Stop `d` with `signum` and start a daemon on the same port, store and state."""
    d.stop(signum)
    return Daemon(d.store, d.state, port=d.port)


def test_the_documented_example_starts_a_run(daemon):
    run = Client(daemon.address).start_run("chain")
    assert run.workflow == "chain" and run.run_id.startswith("wr_")
    assert daemon.wait_run(run.run_id).status == pb.RUN_STATUS_SUCCEEDED


def test_start_wait_fail_and_resume_from_the_failed_node(daemon):
    with Client(daemon.address) as client:
        run = client.start_run("chain", params={"code": 3}, remarks="from a script")
        ended = client.wait_run(run.run_id, timeout=30)
        assert ended.status == pb.RUN_STATUS_FAILED
        assert {n.name: n.status for n in ended.nodes} == {
            "a": pb.NODE_STATUS_SUCCEEDED, "b": pb.NODE_STATUS_FAILED,
            "c": pb.NODE_STATUS_SKIPPED}
        assert ended.nodes[1].attempts[-1].exit_code == 3

        dry = client.resume_run(run.run_id, ["b"], dry_run=True)
        assert (dry.run_id, list(dry.node_names)) == ("", ["b"])
        resumed = client.resume_run(run.run_id, ["b"])
        assert list(resumed.node_names) == ["b"]
        # the params are the failed run's: b fails again, a is copied from the first run
        again = client.wait_run(resumed.run_id, timeout=30)
        assert again.status == pb.RUN_STATUS_FAILED
        assert again.nodes[0].copied_from_run_id == run.run_id

        listed = client.list_runs(workflow="chain", status=pb.RUN_STATUS_FAILED)
        assert [r.run_id for r in listed.runs] == [resumed.run_id, run.run_id]
        assert client.get_workflow("chain").name == "chain"
        assert [w.name for w in client.list_workflows().workflows] == ["chain", "quiet", "ticker"]
        assert [v.version for v in client.list_plan_versions("chain").plan_versions] == [1]
        with pytest.raises(ClientError) as caught:  # a manual workflow has no switch
            client.set_scheduling("chain", enabled=False)
        assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION


def test_wait_run_gives_up_after_its_timeout(daemon):
    with Client(daemon.address) as client:
        run = client.start_run("ticker", params={"lines": "100"})
        with pytest.raises(TimeoutError, match=f"run {run.run_id} has not ended after 0.3s"):
            client.wait_run(run.run_id, timeout=0.3)
        assert client.cancel_run(run.run_id).cancel_requested_at.seconds > 0
        assert client.wait_run(run.run_id, timeout=30).status == pb.RUN_STATUS_CANCELLED


def test_watch_and_log_iterators(daemon):
    with Client(daemon.address) as client:
        run = client.start_run("ticker", params={"lines": "5"})
        changes = list(client.watch_run(run.run_id))
        assert changes[-1].run_status == pb.RUN_STATUS_SUCCEEDED
        sequences = [c.sequence for c in changes]
        assert sequences == sorted(set(sequences))
        assert list(client.watch_run(run.run_id, after_sequence=sequences[-2])) == changes[-1:]
        log = b"".join(c.data for c in client.node_log(run.run_id, "tick", follow=False))
        assert log == b"".join(b"line %d\n" % i for i in range(1, 6))
        tail = b"".join(c.data for c in client.node_log(run.run_id, "tick", offset=7))
        assert tail == log[7:]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_watch_and_log_follow_go_on_across_a_daemon_restart(daemon, signum):
    """SIGTERM ends the streams cleanly, SIGKILL breaks them (UNAVAILABLE): either way the
    iterators go on once the daemon is back, without repeating or skipping anything."""
    notes: list[str] = []
    client = Client(daemon.address, retry=PATIENT, on_reconnect=notes.append)
    client.poll_seconds = 0.05
    run = client.start_run("ticker", params={"lines": "40"})
    changes: list[pb.WatchRunResponse] = []
    log: list[bytes] = []
    failures: list[BaseException] = []

    def consume(items: Iterator[Any], into: list[Any]) -> None:
        try:
            into.extend(items)
        except BaseException as exc:  # reported by the test
            failures.append(exc)

    threads = [threading.Thread(target=consume, args=(client.watch_run(run.run_id), changes)),
               threading.Thread(target=consume, args=(
                   (c.data for c in client.node_log(run.run_id, "tick")), log))]
    for thread in threads:
        thread.start()
    wait_until(lambda: b"line 3\n" in b"".join(log), "the first lines of the log")
    daemon = restart(daemon, signum)
    try:
        for thread in threads:
            thread.join(timeout=60)
        assert not failures, failures
        assert changes[-1].run_status == pb.RUN_STATUS_SUCCEEDED
        assert b"".join(log) == b"".join(b"line %d\n" % i for i in range(1, 41))
        with Client(daemon.address) as fresh:  # the whole history, read in one go
            assert [_event(c) for c in changes] == [
                _event(c) for c in fresh.watch_run(run.run_id)]
        if signum == signal.SIGKILL:
            assert any(n.startswith("lost the daemon (UNAVAILABLE") for n in notes), notes
            assert "reconnected" in notes
    finally:
        client.close()
        daemon.stop(signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_a_log_followed_before_its_first_byte_goes_on_across_a_daemon_restart(
        daemon, tmp_path, signum):
    """As the CLI follows (no retry until the daemon has answered), on a log still empty:
    the stream's headers, sent as the daemon takes it, are an answer, so the follow goes on
    once the daemon is back, instead of 'is the daemon running?', whether the daemon ended
    the stream as it stopped or was killed."""
    gate = tmp_path / "gate"
    with Client(daemon.address) as starter:
        run = starter.start_run("quiet", params={"gate": str(gate)})
        wait_until(lambda: starter.get_run(run.run_id).nodes[0].status
                   == pb.NODE_STATUS_RUNNING, "the quiet node running")
    notes: list[str] = []
    follower = Client(daemon.address, retry=Retry(first_delay=0.05, max_delay=0.5,
                                                  give_up_after=60.0, before_answer=False),
                      on_reconnect=notes.append)
    log: list[bytes] = []
    failures: list[BaseException] = []

    def follow() -> None:
        try:
            log.extend(c.data for c in follower.node_log(run.run_id, "wait", until_end=False))
        except BaseException as exc:  # reported by the test
            failures.append(exc)

    thread = threading.Thread(target=follow)
    thread.start()
    wait_until(lambda: follower.answered, "the daemon taking the follow's stream")
    assert not log
    daemon = restart(daemon, signum)
    try:
        # through again as the new daemon takes the stream, before anything comes on it
        wait_until(lambda: "reconnected" in notes, "the follow reconnected")
        assert not log and not failures
        gate.touch()  # the node ends, its one line comes
        thread.join(timeout=60)
        assert not failures, failures
        assert b"".join(log) == b"awake\n"
        assert notes[0].startswith("lost the daemon (UNAVAILABLE: " + (
            "the daemon is shutting down" if signum == signal.SIGTERM else ""))
    finally:
        follower.close()
        daemon.stop(signal.SIGKILL)


def test_a_read_is_tried_again_on_unavailable_until_the_daemon_is_back(daemon):
    notes: list[str] = []
    with Client(daemon.address, retry=PATIENT, on_reconnect=notes.append) as client:
        run = client.start_run("chain")
        client.wait_run(run.run_id, timeout=30)
        daemon.stop()
        answer: list[pb.Run] = []
        reader = threading.Thread(target=lambda: answer.append(client.get_run(run.run_id)))
        reader.start()
        wait_until(lambda: notes, "the client noticing that the daemon is gone")
        back = Daemon(daemon.store, daemon.state, port=daemon.port)
        try:
            reader.join(timeout=60)
            assert [r.run_id for r in answer] == [run.run_id]
            assert notes[0].startswith("lost the daemon (UNAVAILABLE:")
            assert notes[-1] == "reconnected"
        finally:
            back.stop()


def test_start_run_is_sent_once_even_with_retries(daemon):
    with Client(daemon.address, retry=PATIENT) as client:
        client.list_workflows()  # the daemon has answered this client
        daemon.stop()
        began = time.monotonic()
        with pytest.raises(ClientError) as caught:
            client.start_run("chain")
        assert caught.value.code is grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - began < 5  # not tried again for 60 s
        with pytest.raises(ClientError) as caught:  # a read that may not retry gives up
            Client(daemon.address, retry=Retry(give_up_after=0)).get_run("wr_x")
        assert caught.value.code is grpc.StatusCode.UNAVAILABLE


def test_errors_carry_the_code_the_message_and_the_fields(daemon):
    with Client(daemon.address) as client:
        with pytest.raises(ClientError) as caught:
            client.start_run("chain", params={"regoin": "us"})
        error = caught.value
        assert error.code is grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error.violations] == ["params.regoin"]
        assert error.message and str(error).startswith("INVALID_ARGUMENT: ")
        with pytest.raises(ClientError) as caught:
            client.get_run("wr_nope")
        assert (caught.value.code, caught.value.violations) == (grpc.StatusCode.NOT_FOUND, ())


def test_the_options_come_from_the_environment_like_the_cli(daemon, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("")
    with pytest.raises(ValueError, match=f"token file {token_file} is empty"):
        Client(environ={"FLOWPLAN_TOKEN_FILE": str(token_file)})
    client = Client(environ={"FLOWPLAN_ADDRESS": daemon.address}, timeout=5)
    assert (client.target.address, client.target.unary_timeout) == (daemon.address, 5)
    assert client.list_workflows().workflows
    client.close()
    # a token given directly: the environment's token file is not read
    with Client(daemon.address, token="direct", environ={
            "FLOWPLAN_TOKEN_FILE": str(tmp_path / "missing")}) as direct:
        assert (direct.target.token, direct.target.token_file) == ("direct", None)
        assert direct.list_workflows().workflows
    token_file.write_text("from-file\n")
    with pytest.raises(ValueError, match="either as token= or in token_file=, not both"):
        Client(daemon.address, token="direct", token_file=token_file)


def test_a_time_outside_the_calendar_in_utc_is_refused_naming_the_parameter(daemon):
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))  # 0000-12-31 in UTC
    late = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))
    with Client(daemon.address) as client:
        with pytest.raises(ValueError, match=r"^logical_time 0001-01-01T00:00:00\+01:00 is"):
            client.start_run("chain", logical_time=early)
        with pytest.raises(ValueError, match=r"^end 9999-12-31T23:00:00-05:00 is"):
            client.start_backfill("chain", start=datetime(9999, 1, 1, tzinfo=UTC), end=late)
        assert not client.list_runs().runs  # nothing was sent


def test_the_async_client_has_the_same_methods(daemon):
    async def script() -> None:
        async with AsyncClient(daemon.address) as client:
            run = await client.start_run("chain", params={"code": "1"})
            ended = await client.wait_run(run.run_id, timeout=30)
            assert ended.status == pb.RUN_STATUS_FAILED
            changes = [c async for c in client.watch_run(run.run_id)]
            assert changes[-1].run_status == pb.RUN_STATUS_FAILED
            log = b"".join([c.data async for c in client.node_log(run.run_id, "a")])
            assert log == b"a eu\n"
            resumed = await client.resume_run(run.run_id, ["b"])
            again = await client.wait_run(resumed.run_id, timeout=30)
            assert again.nodes[0].copied_from_run_id == run.run_id
            with pytest.raises(ClientError) as caught:
                await client.start_run("chain", params={"regoin": "us"})
            assert [v.field for v in caught.value.violations] == ["params.regoin"]
            assert (await client.list_runs(workflow="chain")).runs

    asyncio.run(script())
    sync_names = {n for n in vars(Client) if not n.startswith("_")} - {"connected"}
    assert sync_names <= set(vars(AsyncClient))


def test_the_async_client_is_answered_once_the_daemon_takes_its_stream(daemon, tmp_path):
    """Before anything comes on it: the stream's headers say the daemon took it."""
    gate = tmp_path / "gate"

    async def script() -> None:
        async with AsyncClient(daemon.address) as starter:
            run = await starter.start_run("quiet", params={"gate": str(gate)})
        async with AsyncClient(daemon.address) as follower:
            first = asyncio.create_task(anext(aiter(follower.node_log(run.run_id, "wait"))))
            deadline = time.monotonic() + 30
            while not follower.answered:
                assert time.monotonic() < deadline, "the daemon never took the stream"
                await asyncio.sleep(0.01)
            assert not first.done()  # nothing came on the stream: the log is still empty
            gate.touch()
            assert (await asyncio.wait_for(first, timeout=30)).data == b"awake\n"

    asyncio.run(script())


def test_the_async_client_tries_a_read_again_and_resumes_a_watch_across_a_restart(daemon):
    notes: list[str] = []

    async def script() -> Daemon:
        async with AsyncClient(daemon.address, retry=PATIENT, on_reconnect=notes.append
                               ) as client:
            client.poll_seconds = 0.05
            run = await client.start_run("ticker", params={"lines": "30"})
            changes: list[pb.WatchRunResponse] = []

            async def watch() -> None:
                async for change in client.watch_run(run.run_id):
                    changes.append(change)

            watching = asyncio.create_task(watch())
            deadline = time.monotonic() + 30
            while not changes:  # the first change, or the watch's error if it failed first
                if watching.done():
                    watching.result()
                assert time.monotonic() < deadline, "no change came on the watch"
                await asyncio.sleep(0.01)
            back = await asyncio.to_thread(restart, daemon, signal.SIGKILL)
            await asyncio.wait_for(watching, timeout=60)
            assert changes[-1].run_status == pb.RUN_STATUS_SUCCEEDED
            sequences = [c.sequence for c in changes]
            assert sequences == sorted(set(sequences))
            assert (await client.get_run(run.run_id)).status == pb.RUN_STATUS_SUCCEEDED
            return back

    back = asyncio.run(script())
    back.stop()
    assert notes[0].startswith("lost the daemon (UNAVAILABLE") and "reconnected" in notes


def _loaded(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


HEAVY = ("flowplan.compiler.compile", "flowplan.compiler.plan", "flowplan.compiler.cli",
         "flowplan.daemon.server", "flowplan.daemon.engine", "flowplan.daemon.scheduler",
         "flowplan.daemon.state", "pydantic", "jinja2", "croniter")


def test_importing_the_client_imports_neither_the_compiler_nor_the_server():
    loaded = _loaded("import json, sys; import flowplan.client;"
                     " print(json.dumps(sorted(sys.modules)))")
    assert "flowplan.daemon.client.api" in loaded
    assert not {m for m in loaded if m.startswith(HEAVY)}


def test_a_client_command_starts_without_the_compiler_the_server_or_the_engine():
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    loaded = _loaded(
        "import json, sys; from flowplan.daemon import cli\n"
        f"code = cli.main(['status', 'wr_x', '--address', '{address}'])\n"
        "assert code == 3, code\n"
        "print(json.dumps(sorted(sys.modules)))")
    assert "flowplan.daemon.client.commands" in loaded
    assert not {m for m in loaded if m.startswith(HEAVY)}
    # any other command gets the whole parser
    loaded = _loaded("import json, sys; from flowplan.daemon import cli\n"
                     "import contextlib, io\n"
                     "with contextlib.redirect_stdout(io.StringIO()):\n"
                     "    cli.main(['schema'])\n"
                     "print(json.dumps(sorted(sys.modules)))")
    assert "flowplan.compiler.cli" in loaded


def test_a_client_command_has_the_same_help_as_in_the_whole_parser(capsys):
    from flowplan.daemon import cli

    with pytest.raises(SystemExit):
        cli.main(["status", "--help"])
    alone = capsys.readouterr().out
    whole = cli.command_parser(cli.build_parser(), argparse.Namespace(command="status"))
    assert alone == whole.format_help()
    assert "daemon connection:" in alone and "--tls-ca FILE" in alone
