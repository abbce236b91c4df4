"""The daemon's plan watcher on a real store and real filesystem events: new versions load
within seconds, well before the periodic rescan (RESCAN_SECONDS) would find them."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.plan import Plan
from flowplan.compiler.repo import read_repo
from flowplan.compiler.store import PlanStore
from flowplan.daemon.watcher import RESCAN_SECONDS, PlanCatalog, watch_plans

WITHIN_SECONDS = 5.0  # far below RESCAN_SECONDS: only an event can have loaded it


def _compiled(make_repo: Any, name: str, command: str = "true") -> list[Plan]:
    result = compile_repo(read_repo(make_repo({f"workflows/{name}.yaml": (
        f"name: {name}\nnodes:\n  - {{name: x, command: '{command}'}}\n")})))
    assert result.ok, [str(d) for d in result.diagnostics]
    return list(result.plans)


def test_a_workflow_folder_that_arrives_with_its_plan_inside_is_loaded_at_once(
        tmp_path: Path, make_repo: Any) -> None:
    # inotify watches one folder at a time: a plan written into a new workflow's folder
    # before the watcher watches that folder (a store synced or restored by `mv`, `rsync`,
    # or a publish racing the watcher on a busy machine) makes no event of its own
    assert RESCAN_SECONDS > 4 * WITHIN_SECONDS  # both waits end before the first one
    store = PlanStore(tmp_path / "store")
    store.publish(_compiled(make_repo, "first"))
    catalog = PlanCatalog(store)
    loaded: list[str] = []

    async def until(workflow: str, what: str) -> None:
        started = time.monotonic()
        while workflow not in loaded:
            assert time.monotonic() - started < WITHIN_SECONDS, f"{what} not loaded"
            await asyncio.sleep(0.02)

    async def body() -> None:
        stop = asyncio.Event()
        watcher = asyncio.ensure_future(watch_plans(
            catalog, lambda plans: loaded.extend(plan.workflow for plan in plans), stop))
        try:
            # the watcher is up once it sees a new version of a workflow it has: one is
            # published every 0.5 s until then (awatch may take a moment to start)
            deadline = time.monotonic() + 3 * WITHIN_SECONDS
            version = 1
            while "first" not in loaded:
                assert time.monotonic() < deadline, "the watcher never saw a new version"
                version += 1
                store.publish(_compiled(make_repo, "first", f"echo {version}"))
                for _ in range(25):
                    if "first" in loaded:
                        break
                    await asyncio.sleep(0.02)
            staging = PlanStore(tmp_path / "staging")
            staging.publish(_compiled(make_repo, "late"))
            os.rename(staging.root / "late", store.root / "late")
            await until("late", "a workflow folder moved into the store")
            latest = catalog.latest("late")
            assert latest is not None and latest.version == 1
        finally:
            stop.set()
            await asyncio.wait_for(watcher, 5)

    asyncio.run(body())


def test_a_version_read_while_it_was_copied_is_read_again_once_the_copy_is_done(
        tmp_path: Path, make_repo: Any) -> None:
    """A folder copied in by `cp -r` or scp shows a version file half written: it is skipped
    then, and loaded by the next rescan once it has changed, not skipped for good."""
    staging = PlanStore(tmp_path / "staging")
    staging.publish(_compiled(make_repo, "daily"))
    whole = (staging.root / "daily" / "1.json").read_bytes()
    store = PlanStore(tmp_path / "store")
    (store.root / "daily").mkdir(parents=True)
    (store.root / "daily" / "1.json").write_bytes(whole[: len(whole) // 2])
    catalog = PlanCatalog(store)
    assert catalog.latest("daily") is None and catalog.skipped() == 1
    assert catalog.rescan() == []  # unchanged: not read again
    (store.root / "daily" / "1.json").write_bytes(whole)
    assert [plan.version for plan in catalog.rescan()] == [1]
    assert catalog.skipped() == 0


def test_only_the_most_recently_used_versions_stay_parsed_and_the_latest_always_does(
        tmp_path: Path, make_repo: Any) -> None:
    """A daemon fed by CI for months must not keep every version it ever read (each
    carries its job sources): beyond `cached`, the least recently used one is read again
    from the store when asked for."""
    loads: list[int] = []

    class Counted(PlanStore):
        def load(self, workflow: str, version: int) -> Plan:
            loads.append(version)
            return super().load(workflow, version)

    store = Counted(tmp_path / "store")
    for version in range(1, 6):
        store.publish(_compiled(make_repo, "daily", f"echo {version}"))
    loads.clear()  # what publishing read
    catalog = PlanCatalog(store, cached=2)
    assert loads == [5]
    loads.clear()
    for version in (1, 2, 1, 3, 2, 5, 5):
        plan = catalog.get("daily", version)
        assert plan.version == version
    # 1, 2 read; 1 kept; 3 read (2 goes); 2 read again (1 goes); 5 the latest, never again
    assert loads == [1, 2, 3, 2]
    latest = catalog.latest("daily")
    assert latest is not None and catalog.get("daily", 5) is latest
    # a listing of every version (ListPlanVersions) reads each file not kept parsed once
    # for good, and leaves the parsed ones as they were: 3 and 2 (and 5, the latest)
    loads.clear()
    for _ in range(2):
        headers = [catalog.header("daily", version) for version in range(1, 6)]
        assert [h.version for h in headers] == [1, 2, 3, 4, 5]
        assert all(h.content is None and not h.tombstone and h.digest for h in headers)
    assert loads == [1, 4]
    loads.clear()
    for version in (3, 2, 5):
        catalog.get("daily", version)
    assert loads == []
