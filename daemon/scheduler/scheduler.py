"""The scheduling loop: one run per tick of every enabled workflow, exactly once.

Each workflow has a cursor in the state store: the instant up to which its ticks have been
dealt with. A pass at `now` takes the ticks in (cursor, now]. Ticks at most
`misfire_grace_seconds` old are on time and always run; older ones were missed (the daemon
was down, or the workflow paused) and are handled per the schedule's `catchup`:
`none` skips them, `latest` runs the newest one (unless an on-time tick supersedes it),
`all` runs them oldest first, at most `catchup_cap` of them (the newest).

The ticks chosen to run and the new cursor are committed together first (each tick with
the id of the run it will create), then the runs are created; a restart creates the runs
of recorded ticks that have none. The runs table refuses a second scheduled run for the
same (workflow, logical time), so a tick never yields two runs.

The loop sleeps until the earliest next tick of all enabled workflows; a new plan version or
a switch change wakes it early (`wake`).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from flowplan.compiler.plan import Plan, SchedulePlan
from flowplan.daemon import ids
from flowplan.daemon.domain import DuplicateRunError, RunTrigger
from flowplan.daemon.engine.clock import Clock
from flowplan.daemon.engine.engine import Engine, RunError
from flowplan.daemon.scheduler.ticks import iter_ticks, next_ticks, previous_tick, ticks_between
from flowplan.daemon.state.store import StateStore, StateWriteError

log = logging.getLogger("flowplan.scheduler")

WRITE_RETRY_SECONDS = 1.0  # a pass the state database refused is tried again this soon


class Catalog(Protocol):
    """The published plans the scheduler reads: every workflow, its latest version, and its
    earlier ones (to know since when its schedule is in force)."""

    def workflows(self) -> list[str]: ...

    def latest(self, workflow: str) -> Plan | None: ...

    def versions(self, workflow: str) -> list[int]: ...

    def get(self, workflow: str, version: int) -> Plan: ...


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    misfire_grace_seconds: float = 60.0
    # `catchup: all` after a long downtime runs at most this many missed ticks (the newest):
    # a minute schedule down for a day would otherwise queue 1,440 runs at once. A backfill
    # is the tool for more history.
    catchup_cap: int = 1000


@dataclass(frozen=True, slots=True)
class SwitchState:
    workflow: str
    enabled: bool
    enabled_in_git: bool
    next_tick: datetime | None


def _tick_rule(schedule: SchedulePlan) -> dict[str, Any]:
    """What decides a schedule's ticks: all of it but the switch and `catchup`."""
    return schedule.model_dump(exclude={"enabled", "catchup"})


def latest_plan(catalog: Catalog, workflow: str) -> Plan:
    """The workflow's latest version, or the error a client should see."""
    if not workflow:
        raise RunError("workflow is required", field="workflow")
    plan = catalog.latest(workflow)
    if plan is None:
        known = ", ".join(catalog.workflows()) or "none published"
        raise RunError(f"workflow '{workflow}' does not exist (workflows: {known})",
                       field="workflow", not_found=True)
    if plan.content is None:
        raise RunError(f"workflow '{workflow}' was removed (version {plan.version} is a"
                       " tombstone)", field="workflow", precondition=True)
    return plan


def data_interval(schedule: SchedulePlan, tick: datetime) -> tuple[datetime, datetime]:
    """A tick's data interval: from the schedule's previous tick (ignoring `start`, so the
    first run has an interval too) to the tick."""
    previous = previous_tick(schedule.model_copy(update={"start": None}), tick)
    return (previous or tick, tick)


class Scheduler:
    def __init__(self, *, engine: Engine, store: StateStore, catalog: Catalog, clock: Clock,
                 settings: SchedulerSettings | None = None,
                 on_created: Callable[[str, float], None] | None = None) -> None:
        """`on_created(workflow, lag_seconds)` hears of each tick's run as it is created,
        with how late that is after the tick's due time (for metrics; must not block)."""
        self._engine = engine
        self._on_created = on_created
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._settings = settings or SchedulerSettings()
        self._wake = asyncio.Event()
        self._stopping = False
        self._unrecorded = False  # a tick's run could not be stored: `recover` at next pass

    # ---- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Create scheduled runs until `stop`. Call `recover` first, after the engine starts."""
        while not self._stopping:
            self._wake.clear()
            next_at = self.tick(self._clock.now())
            woken = asyncio.ensure_future(self._wake.wait())
            waits: set[asyncio.Future[Any]] = {woken}
            if next_at is not None:
                delay = max(0.0, (next_at - self._clock.now()).total_seconds())
                waits.add(asyncio.ensure_future(self._clock.sleep(delay)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()

    def wake(self) -> None:
        """Look again now: a new plan version was loaded or a switch changed."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def recover(self) -> int:
        """Create the runs of ticks recorded before a crash that came before their runs."""
        created = 0
        for workflow, tick, run_id in self._store.ticks_without_runs():
            plan = self._catalog.latest(workflow)
            if plan is None or plan.content is None or plan.content.schedule is None:
                log.warning("tick %s of %s: the workflow is gone, no run", tick, workflow)
                continue
            if self._create(plan, plan.content.schedule, tick, run_id):
                created += 1
        return created

    def tick(self, now: datetime) -> datetime | None:
        """One pass at `now`: create the due runs. Returns the earliest next tick."""
        earliest: datetime | None = None
        if self._unrecorded:  # ticks recorded while their runs could not be
            self._unrecorded = False
            try:
                self.recover()
            except StateWriteError:
                self._unrecorded = True
        for workflow in self._catalog.workflows():
            try:
                upcoming = self._pass(workflow, now)
            except StateWriteError as exc:  # a full disk: the cursor did not move
                log.warning("scheduling %s: %s; trying again in %gs", workflow, exc,
                            WRITE_RETRY_SECONDS)
                upcoming = now + timedelta(seconds=WRITE_RETRY_SECONDS)
            except Exception:  # one broken workflow must not stop the others' schedules
                log.exception("scheduling %s failed", workflow)
                continue
            if upcoming is not None and (earliest is None or upcoming < earliest):
                earliest = upcoming
        return earliest

    def _pass(self, workflow: str, now: datetime) -> datetime | None:
        plan = self._catalog.latest(workflow)
        if plan is None or plan.content is None or plan.content.schedule is None:
            return None
        schedule = plan.content.schedule
        if not self._sync_switch(workflow, schedule.enabled, now):
            return None
        cursor = self._store.schedule_cursor(workflow)
        if cursor is None:
            # first time this workflow is scheduled: nothing before now was missed
            self._store.record_ticks(workflow, [], considered_until=now, at=now)
            cursor = now
        elif cursor < now:
            self._fire(plan, schedule, self._in_force_from(plan, cursor, now), now)
            cursor = now
        upcoming = next_ticks(schedule, cursor, 1)
        return upcoming[0] if upcoming else None

    def _fire(self, plan: Plan, schedule: SchedulePlan, cursor: datetime, now: datetime,
              *, paused: bool = False) -> None:
        chosen, skipped = self._due(schedule, cursor, now, paused=paused)
        ticks = [(tick, ids.run_id(now)) for tick in chosen]
        self._store.record_ticks(plan.workflow, ticks, considered_until=now, at=now)
        if skipped:
            log.warning("%s: %d missed tick(s) between %s and %s skipped (catchup: %s)",
                        plan.workflow, skipped, cursor.isoformat(), now.isoformat(),
                        schedule.catchup)
        for tick, run_id in ticks:
            self._create(plan, schedule, tick, run_id)

    def _due(self, schedule: SchedulePlan, cursor: datetime, now: datetime, *,
             paused: bool = False) -> tuple[list[datetime], int]:
        """The ticks in (cursor, now] to run, oldest first, and how many are skipped.

        `paused`: the workflow was paused until `now`, so none of them is on time, however
        recent: each was missed and follows `catchup`.
        """
        if paused:
            on_time: list[datetime] = []
            missed = itertools.takewhile(lambda t: t <= now, iter_ticks(schedule, cursor))
        else:  # a tick at most the grace old is on time, one exactly that old included
            grace = now - timedelta(seconds=self._settings.misfire_grace_seconds)
            on_time = [t for t in ticks_between(schedule, max(cursor, grace), now)
                       if t > cursor]
            if cursor >= grace:
                return on_time, 0
            missed = itertools.takewhile(lambda t: t < grace, iter_ticks(schedule, cursor))
        if schedule.catchup == "all":
            newest: collections.deque[datetime] = collections.deque(
                maxlen=self._settings.catchup_cap)
            total = 0
            for tick in missed:
                newest.append(tick)
                total += 1
            return [*newest, *on_time], total - len(newest)
        latest, total = None, 0
        for latest in missed:  # noqa: B007 - the loop keeps the last one
            total += 1
        if schedule.catchup == "latest" and latest is not None and not on_time:
            return [latest], total - 1
        return on_time, total

    def _create(self, plan: Plan, schedule: SchedulePlan, tick: datetime, run_id: str) -> bool:
        try:
            self._engine.create_run(plan, trigger=RunTrigger.SCHEDULE, logical_time=tick,
                                    data_interval=data_interval(schedule, tick), run_id=run_id)
        except DuplicateRunError:
            log.warning("%s: the tick %s already has its run", plan.workflow, tick.isoformat())
            return False
        except StateWriteError as exc:  # its tick is recorded: the next pass creates it
            log.warning("%s: the run of the tick %s waits: %s", plan.workflow,
                        tick.isoformat(), exc)
            self._unrecorded = True
            return False
        except RunError as exc:
            log.error("%s: no run for the tick %s: %s", plan.workflow, tick.isoformat(), exc)
            return False
        if self._on_created is not None:
            self._on_created(plan.workflow, (self._clock.now() - tick).total_seconds())
        return True

    # ---- the scheduling switch ----------------------------------------------------------

    def _sync_switch(self, workflow: str, git_enabled: bool, now: datetime) -> bool:
        """The switch, reset to git's `enabled` when a new plan version changed it."""
        stored = self._store.switch(workflow)
        if stored is None or stored[1] != git_enabled:
            if git_enabled and stored is not None and not stored[0]:
                self._close_pause(workflow, now)
            self._store.set_switch(workflow, enabled=git_enabled, git_enabled=git_enabled,
                                   at=now)
            return git_enabled
        return stored[0]

    def _close_pause(self, workflow: str, now: datetime) -> None:
        """Deal with the ticks that fell while `workflow` was paused, as missed ones.

        Without this the loop would take a tick of the last `misfire_grace_seconds` before
        the un-pause for an on-time one and run it, though it fell while paused.
        """
        plan = self._catalog.latest(workflow)
        cursor = self._store.schedule_cursor(workflow)
        if plan is None or plan.content is None or plan.content.schedule is None \
                or cursor is None or cursor >= now:
            return
        self._fire(plan, plan.content.schedule, self._in_force_from(plan, cursor, now), now,
                   paused=True)

    def _in_force_from(self, plan: Plan, cursor: datetime, now: datetime) -> datetime:
        """`cursor`, or the publication of the version since which the workflow's ticks are
        what its latest version says, when that came later: a new schedule (or one back after
        none, or after the workflow was removed) has no ticks before it to run or to miss.
        A version that only pauses, unpauses or changes `catchup` keeps the ticks."""
        assert plan.content is not None and plan.content.schedule is not None
        since = plan.published_at
        if since is None or since <= cursor:  # the usual case: no listing of versions
            return cursor
        ticks = _tick_rule(plan.content.schedule)
        for version in reversed(self._catalog.versions(plan.workflow)):
            if since is None or since <= cursor:
                return cursor
            if plan.version is not None and version >= plan.version:
                continue
            try:
                older = self._catalog.get(plan.workflow, version)
            except Exception:  # an unreadable version: its schedule is not known
                break
            if older.content is None or older.content.schedule is None or (
                    _tick_rule(older.content.schedule) != ticks):
                break
            since = older.published_at
        if since is None or since <= cursor:
            return cursor
        log.info("%s: its schedule is in force since %s: no tick before it runs",
                 plan.workflow, since.isoformat())
        return min(since, now)

    def set_enabled(self, workflow: str, enabled: bool) -> SwitchState:
        """Flip the scheduling switch at run time; it holds until git changes `enabled`."""
        schedule = self._schedule_of(workflow)
        now = self._clock.now()
        was_enabled = self._sync_switch(workflow, schedule.enabled, now)
        if enabled and not was_enabled:
            self._close_pause(workflow, now)
        self._store.set_switch(workflow, enabled=enabled, git_enabled=schedule.enabled, at=now)
        self.wake()
        return self.switch_state(workflow)

    def switch_state(self, workflow: str) -> SwitchState:
        """The switch and the next tick the workflow will run (None while paused)."""
        schedule = self._schedule_of(workflow)
        stored = self._store.switch(workflow)
        enabled = schedule.enabled if stored is None or stored[1] != schedule.enabled \
            else stored[0]
        upcoming: datetime | None = None
        if enabled:
            cursor = self._store.schedule_cursor(workflow)
            now = self._clock.now()
            found = next_ticks(schedule, max(cursor, now) if cursor else now, 1)
            upcoming = found[0] if found else None
        return SwitchState(workflow=workflow, enabled=enabled,
                           enabled_in_git=schedule.enabled, next_tick=upcoming)

    def _schedule_of(self, workflow: str) -> SchedulePlan:
        plan = latest_plan(self._catalog, workflow)
        assert plan.content is not None
        if plan.content.schedule is None:
            raise RunError(f"workflow '{workflow}' has no schedule (it runs manually only);"
                           " add `schedule:` to its YAML to schedule it", field="workflow",
                           precondition=True)
        return plan.content.schedule
