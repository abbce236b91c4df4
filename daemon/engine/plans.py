"""Plans held in memory, for debug runs of an unpublished working tree. The daemon's plan
provider over the plan store is `flowplan.daemon.watcher.PlanCatalog`; both fit the engine's
`PlanProvider`."""

from __future__ import annotations

from collections.abc import Iterable

from flowplan.compiler.plan import Plan, PlanError


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
