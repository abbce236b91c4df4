"""The daemon's background loops: a folder the kernel will not watch is polled instead, and a
loop that ends by itself stops the daemon with exit 1 rather than leaving it serving without
that loop (docs/operations.md)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import free_port

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.plan import Plan
from flowplan.compiler.repo import read_repo
from flowplan.compiler.store import PlanStore
from flowplan.daemon import watcher
from flowplan.daemon.server import app
from flowplan.daemon.server.app import Daemon
from flowplan.daemon.server.config import ServeConfig

REFUSED = "OS file watch limit reached"  # watchfiles' words for the kernel's inotify limits


def _compiled(make_repo: Any, command: str) -> list[Plan]:
    result = compile_repo(read_repo(make_repo({"workflows/daily.yaml": (
        f"name: daily\nnodes:\n  - {{name: x, command: '{command}'}}\n")})))
    assert result.ok, [str(d) for d in result.diagnostics]
    return list(result.plans)


def test_a_store_the_kernel_will_not_watch_is_polled_and_new_versions_still_load(
        tmp_path: Path, make_repo: Any, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    real = watcher.awatch
    calls: list[bool | None] = []

    def kernel_refuses(*paths: Any, force_polling: bool | None = None,
                       **options: Any) -> AsyncIterator[Any]:
        calls.append(force_polling)
        if not force_polling:
            raise OSError(REFUSED)
        return real(*paths, force_polling=force_polling, **options)

    monkeypatch.setattr(watcher, "awatch", kernel_refuses)
    store = PlanStore(tmp_path / "store")
    store.publish(_compiled(make_repo, "echo 1"))
    catalog = watcher.PlanCatalog(store)
    loaded: list[int] = []

    async def body() -> None:
        stop = asyncio.Event()
        watching = asyncio.ensure_future(watcher.watch_plans(
            catalog, lambda plans: loaded.extend(p.version or 0 for p in plans), stop))
        try:
            # a version every 0.5 s until one is seen: the poller needs a moment to start
            deadline = time.monotonic() + 10
            version = 1
            while not loaded:
                assert not watching.done(), watching.result()
                assert time.monotonic() < deadline, "no new version loaded while polling"
                version += 1
                store.publish(_compiled(make_repo, f"echo {version}"))
                for _ in range(25):
                    if loaded:
                        break
                    await asyncio.sleep(0.02)
            assert watcher.RESCAN_SECONDS > 10  # so the poller found it, not the rescan
        finally:
            stop.set()
            await asyncio.wait_for(watching, 5)

    with caplog.at_level(logging.WARNING, logger="flowplan.plans"):
        asyncio.run(body())
    assert calls[:2] == [None, True]
    assert loaded and min(loaded) >= 2
    said = [r.getMessage() for r in caplog.records if "cannot watch" in r.getMessage()]
    assert said == [f"cannot watch the plan store {store.root} for changes ({REFUSED}):"
                    f" polling it every 0.5 s instead"]


def test_a_loop_that_ends_by_itself_stops_the_daemon_with_exit_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    async def broken(*_: Any) -> None:
        await asyncio.sleep(0.2)
        raise RuntimeError("a defect")

    monkeypatch.setattr(app, "watch_writes", broken)
    daemon = _daemon(tmp_path)
    with caplog.at_level(logging.INFO):
        code = asyncio.run(asyncio.wait_for(daemon.run(), 30))
    assert code == 1 and daemon.failed == "state write watch"
    said = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert [r.getMessage() for r in said] == [
        "the state write watch stopped (RuntimeError('a defect')): stopping the daemon"
        " (exit 1) so that it is started again"]
    assert said[0].exc_info is not None  # its traceback
    messages = [r.getMessage() for r in caplog.records]
    assert messages.index("shutting down") > messages.index(said[0].getMessage())
    assert "stopped" in messages
    assert not [r for r in caplog.records if r.levelno == logging.ERROR]  # said once


def _daemon(tmp_path: Path) -> Daemon:
    return Daemon(ServeConfig(store=tmp_path / "store", state=tmp_path / "state",
                              listen=f"127.0.0.1:{free_port()}"))


async def _serve_then_stop(daemon: Daemon) -> int:
    """The daemon's exit code, shut down once it serves."""
    running = asyncio.ensure_future(daemon.run())
    await asyncio.wait_for(daemon.ready.wait(), 30)
    daemon.shutdown()
    return await asyncio.wait_for(running, 30)


def test_a_daemon_stopped_on_purpose_still_exits_0(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    daemon = _daemon(tmp_path)

    with caplog.at_level(logging.INFO):
        assert asyncio.run(_serve_then_stop(daemon)) == 0
    assert daemon.failed is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_daemon_whose_run_is_cancelled_blames_no_loop(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An embedding program cancels `run()` (a timeout, its own shutdown): its loops then
    end on purpose, with no shutdown() called first."""
    daemon = _daemon(tmp_path)

    async def serve_then_cancel() -> None:
        running = asyncio.ensure_future(daemon.run())
        await asyncio.wait_for(daemon.ready.wait(), 30)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(running, 30)

    with caplog.at_level(logging.INFO):
        asyncio.run(serve_then_cancel())
    assert daemon.failed is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "stopped" in [r.getMessage() for r in caplog.records]


def test_a_loop_that_fails_as_the_daemon_stops_is_logged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    async def fails_at_the_end(*args: Any) -> None:
        await args[-1].wait()  # the loops' stop event
        raise RuntimeError("at the end")

    monkeypatch.setattr(app, "watch_writes", fails_at_the_end)
    daemon = _daemon(tmp_path)

    with caplog.at_level(logging.INFO):
        assert asyncio.run(_serve_then_stop(daemon)) == 0  # stopped on purpose
    said = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in said] == [
        "the state write watch failed as the daemon stopped"]
    assert said[0].exc_info is not None
