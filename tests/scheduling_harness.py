"""A scheduler, backfills and engine on a fake clock, a scripted launcher and real SQLite,
over plans that tests can publish new versions of."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from engine_fakes import FakeClock, FakeLauncher
from test_engine import compile_one

from flowplan.compiler.plan import Plan, PlanError, tombstone_plan
from flowplan.daemon.domain import Run
from flowplan.daemon.engine.engine import Engine, EngineSettings
from flowplan.daemon.scheduler.backfills import Backfills
from flowplan.daemon.scheduler.scheduler import Scheduler, SchedulerSettings
from flowplan.daemon.state.store import StateStore


class Catalog:
    """Published versions in memory: `publish` adds version N+1 of a workflow."""

    def __init__(self) -> None:
        self._versions: dict[str, list[Plan]] = {}

    def publish(self, yaml: str, *, at: datetime | None = None) -> Plan:
        """Version N+1 of the workflow in `yaml`, published `at` (None: unknown)."""
        plan = compile_one(yaml)
        return self._add(plan, at)

    def remove(self, workflow: str, *, at: datetime | None = None) -> Plan:
        """A tombstone version: the workflow's file was deleted."""
        return self._add(tombstone_plan(workflow, compiler_version="test"), at)

    def _add(self, plan: Plan, at: datetime | None) -> Plan:
        versions = self._versions.setdefault(plan.workflow, [])
        plan = plan.model_copy(update={"version": len(versions) + 1, "published_at": at})
        versions.append(plan)
        return plan

    def versions(self, workflow: str) -> list[int]:
        return list(range(1, len(self._versions.get(workflow, [])) + 1))

    def get(self, workflow: str, version: int) -> Plan:
        versions = self._versions.get(workflow, [])
        if not 1 <= version <= len(versions):
            raise PlanError(f"{workflow} version {version}: no such plan")
        return versions[version - 1]

    def latest(self, workflow: str) -> Plan | None:
        versions = self._versions.get(workflow)
        return versions[-1] if versions else None

    def workflows(self) -> list[str]:
        return sorted(self._versions)


class World:
    def __init__(self, tmp: Path, start: datetime, *, catalog: Catalog | None = None,
                 settings: SchedulerSettings | None = None) -> None:
        self.tmp = tmp
        self.clock = FakeClock(start)
        self.catalog = catalog or Catalog()
        self.launcher = FakeLauncher(self.clock)
        self.store = StateStore(tmp / "state")
        self.engine = Engine(store=self.store, plans=self.catalog, launcher=self.launcher,
                             clock=self.clock, settings=EngineSettings(
                                 state_dir=tmp / "state", base_env={}))
        self.scheduler = Scheduler(engine=self.engine, store=self.store, catalog=self.catalog,
                                   clock=self.clock, settings=settings)
        self.backfills = Backfills(engine=self.engine, store=self.store, catalog=self.catalog,
                                   clock=self.clock)
        self._loop: asyncio.Task[None] | None = None

    async def start(self, *, loop: bool = True) -> None:
        await self.engine.start()
        self.scheduler.recover()
        self.backfills.recover()
        if loop:
            self._loop = asyncio.get_running_loop().create_task(self.scheduler.run())
            await self.clock.settle()

    async def stop(self) -> None:
        self.scheduler.stop()
        if self._loop is not None:
            await self._loop
        await self.engine.stop()

    def runs(self, **filters: Any) -> list[Run]:
        """All runs, oldest first."""
        return list(reversed(self.store.list_runs(limit=1_000_000, **filters)))

    def logical_times(self, **filters: Any) -> list[str]:
        return [r.logical_time.isoformat() for r in self.runs(**filters)]


def play(tmp_path: Path, start: datetime, body: Callable[[World], Awaitable[None]],
         **kwargs: Any) -> World:
    world = World(tmp_path, start, **kwargs)

    async def main() -> None:
        await world.start()
        try:
            await body(world)
        finally:
            await world.stop()

    asyncio.run(asyncio.wait_for(main(), 30))
    return world
