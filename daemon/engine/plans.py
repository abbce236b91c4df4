"""Plan providers for the engine: the plan store (verified, cached: versions are immutable),
or plans held in memory (debug runs of an unpublished working tree)."""

from __future__ import annotations

from collections.abc import Iterable

from compiler.plan import Plan, PlanError
from compiler.store import PlanStore


class StorePlans:
    def __init__(self, store: PlanStore) -> None:
        self._store = store
        self._cache: dict[tuple[str, int], Plan] = {}

    def get(self, workflow: str, version: int) -> Plan:
        key = (workflow, version)
        if key not in self._cache:
            self._cache[key] = self._store.load(workflow, version)
        return self._cache[key]

    def latest(self, workflow: str) -> Plan | None:
        versions = self._store.versions(workflow)
        return self.get(workflow, versions[-1]) if versions else None

    def workflows(self) -> list[str]:
        return self._store.workflows()


class MemoryPlans:
    """Unpublished plans, numbered as version 1 of their workflow."""

    def __init__(self, plans: Iterable[Plan]) -> None:
        self._plans = {p.workflow: p.model_copy(update={"version": 1}) for p in plans}

    def get(self, workflow: str, version: int) -> Plan:
        plan = self._plans.get(workflow)
        if plan is None or version != 1:
            raise PlanError(f"{workflow} version {version}: no such plan")
        return plan

    def latest(self, workflow: str) -> Plan | None:
        return self._plans.get(workflow)

    def workflows(self) -> list[str]:
        return sorted(self._plans)
