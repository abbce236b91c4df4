"""Manual runs: now (or at a logical time the request names), whatever the switch says."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flowplan.compiler.plan import Plan
from flowplan.daemon.domain import Run, RunTrigger
from flowplan.daemon.engine.clock import Clock
from flowplan.daemon.engine.engine import Engine, RunError
from flowplan.daemon.scheduler.scheduler import Catalog, latest_plan

_SCALARS = (str, int, float, bool, type(None))
# the logical times every time zone can show: a day inside Python's datetime range each side
EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


def check_params(plan: Plan, params: Mapping[str, Any]) -> None:
    """Only declared params, with JSON scalar values: a typo must not pass silently."""
    assert plan.content is not None
    declared = plan.content.params
    for name, value in params.items():
        if name not in declared:
            names = ", ".join(sorted(declared)) or "none"
            raise RunError(f"'{name}' is not a param of {plan.workflow} (declared: {names})",
                           field=f"params.{name}")
        if not isinstance(value, _SCALARS):
            raise RunError(f"param '{name}' must be a string, number, boolean or null, not"
                           f" {type(value).__name__}", field=f"params.{name}")


def start_run(engine: Engine, catalog: Catalog, clock: Clock, workflow: str, *,
              params: Mapping[str, Any] | None = None, queue: str | None = None,
              remarks: str = "", logical_time: datetime | None = None) -> Run:
    """Start a manual run of the workflow's latest version.

    Its logical time is `logical_time` if given, else now; its data interval is that instant
    (start = end), since a manual run answers no schedule cycle.
    """
    plan = latest_plan(catalog, workflow)
    check_params(plan, params or {})
    if logical_time is not None and logical_time.tzinfo is None:
        raise RunError("logical_time needs a time zone (e.g. 2026-01-31T02:00:00Z)",
                       field="logical_time")
    if logical_time is not None and not EARLIEST <= logical_time <= LATEST:
        # the workflow's zone could not show it: every node would fail on its templates
        raise RunError(f"logical_time {logical_time.isoformat()} is out of range: give a time"
                       f" from {EARLIEST.date()} to {LATEST.date()}", field="logical_time")
    moment = logical_time or clock.now()
    return engine.create_run(plan, trigger=RunTrigger.MANUAL, logical_time=moment,
                             params=params, queue=queue or None, remarks=remarks,
                             data_interval=(moment, moment))
