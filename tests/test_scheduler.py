"""The scheduling loop on a fake clock: each schedule kind across DST, windows, `start`,
catch-up after downtime, the switch rules, max_active_runs, manual runs, and exactly-once
ticks across a crash (a real process killed between recording a tick and creating its run)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from engine_fakes import Behaviour
from scheduling_harness import Catalog, World, play

from flowplan.daemon.domain import RunStatus, RunTrigger
from flowplan.daemon.engine.engine import RunError
from flowplan.daemon.scheduler.manual import EARLIEST, LATEST, start_run
from flowplan.daemon.scheduler.scheduler import SchedulerSettings
from flowplan.daemon.state.store import StateStore

DAY = 86400.0


def workflow(schedule: str, *, name: str = "w", extra: str = "") -> str:
    return f"name: {name}\n{extra}schedule: {schedule}\nnodes:\n  - {{name: a, command: a}}\n"


def utc(text: str) -> str:
    return datetime.fromisoformat(text).astimezone(UTC).isoformat()


def published(*yamls: str) -> Catalog:
    catalog = Catalog()
    for yaml in yamls:
        catalog.publish(yaml)
    return catalog


def test_daily_across_both_dst_changes_in_amsterdam(tmp_path: Path) -> None:
    catalog = published(workflow('{every: day, at: "02:30", timezone: Europe/Amsterdam}'))

    world = play(tmp_path, datetime(2026, 3, 27, 12, tzinfo=UTC),
                 lambda w: w.clock.advance(4 * DAY), catalog=catalog)  # spring forward: 03-29
    assert world.logical_times() == [
        "2026-03-28T01:30:00+00:00",  # 02:30 CET
        "2026-03-29T01:00:00+00:00",  # 02:30 does not exist: 03:00 CEST, once
        "2026-03-30T00:30:00+00:00",  # 02:30 CEST
        "2026-03-31T00:30:00+00:00"]
    runs = world.runs()
    assert all(r.trigger is RunTrigger.SCHEDULE for r in runs)
    assert runs[1].data_interval_start == runs[0].logical_time
    assert runs[1].data_interval_end == runs[1].logical_time

    autumn = tmp_path / "autumn"
    world = play(autumn, datetime(2026, 10, 23, 12, tzinfo=UTC),
                 lambda w: w.clock.advance(3 * DAY), catalog=catalog)
    assert world.logical_times() == [
        "2026-10-24T00:30:00+00:00",  # 02:30 CEST
        "2026-10-25T00:30:00+00:00",  # 02:30 happens twice: the first one, once
        "2026-10-26T01:30:00+00:00"]  # 02:30 CET


def test_ds_is_the_ticks_date_in_the_schedule_timezone(tmp_path: Path) -> None:
    catalog = published(workflow('{every: day, at: "00:30", timezone: Asia/Tokyo}'))
    world = play(tmp_path, datetime(2026, 5, 1, 12, tzinfo=UTC),
                 lambda w: w.clock.advance(DAY), catalog=catalog)
    (run,) = world.runs()
    assert run.logical_time.isoformat() == "2026-05-01T15:30:00+00:00"
    from flowplan.daemon.engine.commands import RunContext
    context = RunContext(run_id=run.run_id, workflow="w", timezone="Asia/Tokyo",
                         logical_time=run.logical_time,
                         data_interval_start=run.data_interval_start,
                         data_interval_end=run.data_interval_end, params={},
                         workspace=tmp_path)
    values = context.variables("a", 1)
    assert values["ds"] == "2026-05-02" and values["ds_nodash"] == "20260502"
    assert values["data_interval_start"] == "2026-05-01T00:30:00+09:00"


def test_interval_window_edges_and_the_fall_back_hour(tmp_path: Path) -> None:
    catalog = published(workflow(
        '{every: 1h, window: ["00:00", "04:00"], timezone: Europe/Amsterdam}'))
    world = play(tmp_path, datetime(2026, 10, 24, 12, tzinfo=UTC),
                 lambda w: w.clock.advance(DAY), catalog=catalog)
    assert world.logical_times() == [
        "2026-10-24T22:00:00+00:00",  # 00:00 CEST, the window's start
        "2026-10-24T23:00:00+00:00",
        "2026-10-25T00:00:00+00:00",  # 02:00 CEST; 02:00 CET (the same wall time) not again
        "2026-10-25T02:00:00+00:00",  # 03:00 CET
        "2026-10-25T03:00:00+00:00"]  # 04:00 CET: the window's end is included


def test_interval_across_spring_forward(tmp_path: Path) -> None:
    catalog = published(workflow(
        '{every: 30m, window: ["01:00", "04:00"], timezone: Europe/Amsterdam}'))
    world = play(tmp_path, datetime(2026, 3, 28, 12, tzinfo=UTC),
                 lambda w: w.clock.advance(DAY), catalog=catalog)
    assert world.logical_times() == [
        "2026-03-29T00:00:00+00:00", "2026-03-29T00:30:00+00:00",
        "2026-03-29T01:00:00+00:00",  # 02:00, 02:30 and 03:00 are all 03:00 CEST: once
        "2026-03-29T01:30:00+00:00", "2026-03-29T02:00:00+00:00"]


def test_cron_across_both_dst_changes_in_new_york(tmp_path: Path) -> None:
    catalog = published(workflow('{cron: "30 1 * * *", timezone: America/New_York}'),
                        workflow('{cron: "30 2 * * *", timezone: America/New_York}',
                                 name="spring"))
    world = play(tmp_path, datetime(2026, 10, 30, 12, tzinfo=UTC),
                 lambda w: w.clock.advance(3 * DAY), catalog=catalog)
    assert world.logical_times(workflow="w") == [
        "2026-10-31T05:30:00+00:00",  # 01:30 EDT
        "2026-11-01T05:30:00+00:00",  # 01:30 happens twice: once (croniter alone fires twice)
        "2026-11-02T06:30:00+00:00"]  # 01:30 EST
    world = play(tmp_path / "spring", datetime(2026, 3, 6, 12, tzinfo=UTC),
                 lambda w: w.clock.advance(3 * DAY), catalog=catalog)
    assert world.logical_times(workflow="spring") == [
        "2026-03-07T07:30:00+00:00",  # 02:30 EST
        "2026-03-08T07:00:00+00:00",  # 02:30 does not exist: 03:00 EDT
        "2026-03-09T06:30:00+00:00"]  # 02:30 EDT


def test_no_tick_before_start(tmp_path: Path) -> None:
    catalog = published(workflow(
        '{every: day, at: "06:00", timezone: UTC, start: "2026-05-03T06:00:00"}'))
    world = play(tmp_path, datetime(2026, 5, 1, 12, tzinfo=UTC),
                 lambda w: w.clock.advance(3 * DAY), catalog=catalog)
    assert world.logical_times() == ["2026-05-03T06:00:00+00:00", "2026-05-04T06:00:00+00:00"]


def downtime(tmp_path: Path, catchup: str, days: int = 3, **kwargs: object) -> World:
    """Run a day, stop the daemon for `days`, start it again."""
    catalog = published(workflow(f'{{every: day, at: "06:00", timezone: UTC,'
                                 f' catchup: {catchup}}}'))
    start = datetime(2026, 5, 1, 12, tzinfo=UTC)
    play(tmp_path, start, lambda w: w.clock.advance(DAY), catalog=catalog)  # runs 05-02
    later = start + timedelta(days=1 + days)
    return play(tmp_path, later, lambda w: w.clock.advance(10), catalog=catalog, **kwargs)


@pytest.mark.parametrize(("catchup", "expected"), [
    ("none", ["2026-05-02"]),
    ("latest", ["2026-05-02", "2026-05-05"]),
    ("all", ["2026-05-02", "2026-05-03", "2026-05-04", "2026-05-05"]),
])
def test_catchup_after_downtime(tmp_path: Path, catchup: str, expected: list[str]) -> None:
    world = downtime(tmp_path, catchup)
    assert [t[:10] for t in world.logical_times()] == expected
    assert all(r.status is RunStatus.SUCCEEDED for r in world.runs()[:-1])


def test_catchup_all_is_capped_to_the_newest_ticks(tmp_path: Path) -> None:
    world = downtime(tmp_path, "all", days=10, settings=SchedulerSettings(catchup_cap=2))
    assert [t[:10] for t in world.logical_times()] == ["2026-05-02", "2026-05-11", "2026-05-12"]


@pytest.mark.parametrize(("late", "runs"), [(30, True), (60, True), (61, False)])
def test_a_tick_within_the_grace_is_on_time_even_with_catchup_none(
        tmp_path: Path, late: int, runs: bool) -> None:
    """At most 60 s old (the grace, one exactly that old included): on time."""
    catalog = published(workflow('{every: day, at: "06:00", timezone: UTC, catchup: none}'))
    start = datetime(2026, 5, 1, 12, tzinfo=UTC)
    play(tmp_path, start, lambda w: w.clock.advance(1), catalog=catalog)
    # down from 12:00 to 06:00 + `late` s the next day
    world = play(tmp_path, datetime(2026, 5, 2, 6, 0, tzinfo=UTC) + timedelta(seconds=late),
                 lambda w: w.clock.advance(1), catalog=catalog)
    assert world.logical_times() == (["2026-05-02T06:00:00+00:00"] if runs else [])


def test_first_sight_runs_nothing_from_the_past(tmp_path: Path) -> None:
    catalog = published(workflow(
        '{every: 1h, timezone: UTC, start: "2026-01-01T00:00:00", catchup: all}'))
    world = play(tmp_path, datetime(2026, 5, 1, 12, 30, tzinfo=UTC),
                 lambda w: w.clock.advance(3600), catalog=catalog)
    assert world.logical_times() == ["2026-05-01T13:00:00+00:00"]


def test_switch_pause_unpause_catchup_and_git_reset(tmp_path: Path) -> None:
    hourly = '{every: 1h, timezone: UTC, catchup: latest}'
    catalog = published(workflow(hourly, extra="description: v1\n"))

    async def body(world: World) -> None:
        await world.clock.advance(3600)  # 13:00 runs
        state = world.scheduler.set_enabled("w", False)
        assert not state.enabled and state.enabled_in_git and state.next_tick is None
        await world.clock.advance(3 * 3600 + 600)  # 14:00..16:00 paused: nothing
        assert len(world.runs()) == 1
        state = world.scheduler.set_enabled("w", True)  # missed while paused: `latest`
        await world.clock.settle()
        assert state.next_tick == datetime(2026, 5, 1, 17, tzinfo=UTC)
        assert world.logical_times()[-1] == "2026-05-01T16:00:00+00:00"
        world.scheduler.set_enabled("w", False)
        catalog.publish(workflow(hourly, extra="description: v2\n"))  # `enabled` unchanged
        world.scheduler.wake()
        await world.clock.advance(3600)
        assert not world.scheduler.switch_state("w").enabled  # the runtime switch holds
        catalog.publish(workflow(hourly.replace("}", ", enabled: false}")))
        world.scheduler.wake()
        await world.clock.settle()
        assert not world.scheduler.switch_state("w").enabled
        world.scheduler.set_enabled("w", True)  # flipped at run time again
        catalog.publish(workflow(hourly))  # git says enabled again: reset to git (on)
        world.scheduler.wake()
        await world.clock.settle()
        state = world.scheduler.switch_state("w")
        assert state.enabled and state.enabled_in_git

    play(tmp_path, datetime(2026, 5, 1, 12, 30, tzinfo=UTC), body, catalog=catalog)


@pytest.mark.parametrize(("catchup", "runs"), [("none", []), ("latest", ["12:47:00"])])
def test_a_tick_that_fell_while_paused_is_missed_however_recent(tmp_path: Path, catchup: str,
                                                                runs: list[str]) -> None:
    """Paused 12:46:18-12:47:15: the 12:47 tick is 15 s old at the un-pause, inside the
    misfire grace, but it fell while paused, so it follows `catchup` and the answer's next
    tick is the truth."""
    minutely = f"{{every: 1m, timezone: UTC, catchup: {catchup}}}"
    catalog = published(workflow(minutely))

    async def body(world: World) -> None:
        await world.clock.advance(18)  # 12:46:18: first sight, nothing from the past
        world.scheduler.set_enabled("w", False)
        await world.clock.advance(57)  # 12:47:15
        state = world.scheduler.set_enabled("w", True)
        await world.clock.settle()
        assert state.next_tick == datetime(2026, 5, 1, 12, 48, tzinfo=UTC)
        assert [t[11:19] for t in world.logical_times()] == runs
        await world.clock.advance(50)  # 12:48:05: the next tick runs
        assert [t[11:19] for t in world.logical_times()] == [*runs, "12:48:00"]

    play(tmp_path, datetime(2026, 5, 1, 12, 46, tzinfo=UTC), body, catalog=catalog)


def test_a_pause_ended_by_git_also_misses_its_ticks(tmp_path: Path) -> None:
    minutely = "{every: 1m, timezone: UTC, catchup: none}"
    catalog = published(workflow(minutely.replace("}", ", enabled: false}")))

    async def body(world: World) -> None:
        await world.clock.advance(18)  # 12:46:18, off in git
        await world.clock.advance(57)  # 12:47:15: git turns it on
        catalog.publish(workflow(minutely))
        world.scheduler.wake()
        await world.clock.settle()
        assert world.logical_times() == []
        assert world.scheduler.switch_state("w").next_tick == datetime(2026, 5, 1, 12, 48,
                                                                       tzinfo=UTC)

    play(tmp_path, datetime(2026, 5, 1, 12, 46, tzinfo=UTC), body, catalog=catalog)


START = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
MANUAL = "name: w\nnodes:\n  - {name: a, command: a}\n"


@pytest.mark.parametrize("before", ["daily", "manual", "removed"])
def test_a_schedule_runs_no_tick_from_before_its_version(tmp_path: Path, before: str) -> None:
    """Hourly with catchup all, published at 15:20 after a daily schedule since 12:30, or
    after hourly until 13:05 and then none or a deleted file: the 14:00 and 15:00 ticks
    belonged to no published version, so they were not missed and do not run. The loop
    slept all along (no other workflow)."""
    hourly = workflow("{every: 1h, timezone: UTC, catchup: all}")
    catalog = Catalog()
    catalog.publish(workflow('{every: day, at: "02:00", timezone: UTC, catchup: all}')
                    if before == "daily" else hourly, at=START)
    earlier = [] if before == "daily" else ["2026-05-01T13:00:00+00:00"]

    async def body(world: World) -> None:
        await world.clock.advance(35 * 60)  # 13:05
        if before == "manual":
            catalog.publish(MANUAL, at=world.clock.now())
        elif before == "removed":
            catalog.remove("w", at=world.clock.now())
        world.scheduler.wake()
        await world.clock.advance(2 * 3600 + 15 * 60)  # 15:20
        catalog.publish(hourly, at=world.clock.now())
        world.scheduler.wake()
        await world.clock.advance(50 * 60)  # 16:10
        assert world.logical_times() == [*earlier, "2026-05-01T16:00:00+00:00"]

    play(tmp_path, START, body, catalog=catalog)


def test_a_new_version_with_the_same_ticks_keeps_the_missed_ones(tmp_path: Path) -> None:
    """A version published while the daemon was down that changes only a command (or
    catchup, or the switch) leaves the schedule in force: its missed ticks follow catchup."""
    hourly = "{every: 1h, timezone: UTC, catchup: all}"
    catalog = Catalog()
    catalog.publish(workflow(hourly), at=START - timedelta(days=1))
    play(tmp_path, START, lambda w: w.clock.advance(1), catalog=catalog)  # first sight
    catalog.publish(workflow(hourly, extra="description: fixed\n"), at=START + timedelta(hours=2))
    world = play(tmp_path, START + timedelta(hours=3), lambda w: w.clock.advance(1),
                 catalog=catalog)
    assert world.logical_times() == ["2026-05-01T13:00:00+00:00", "2026-05-01T14:00:00+00:00",
                                     "2026-05-01T15:00:00+00:00"]


def test_switch_errors_name_the_workflow(tmp_path: Path) -> None:
    catalog = published(workflow('{every: 1h}'),
                        "name: manual\nnodes:\n  - {name: a, command: a}\n")

    async def body(world: World) -> None:
        with pytest.raises(RunError) as missing:
            world.scheduler.set_enabled("nope", False)
        assert missing.value.not_found and missing.value.field == "workflow"
        with pytest.raises(RunError, match="no schedule") as manual:
            world.scheduler.set_enabled("manual", False)
        assert manual.value.precondition

    play(tmp_path, datetime(2026, 5, 1, tzinfo=UTC), body, catalog=catalog)


def test_a_due_tick_at_max_active_runs_waits_as_pending(tmp_path: Path) -> None:
    catalog = published(
        "name: w\nmax_active_runs: 1\nschedule: {every: 1m, timezone: UTC}\n"
        "nodes:\n  - {name: a, command: a}\n")

    async def body(world: World) -> None:
        world.launcher.scripts["a"] = [Behaviour(seconds=150)] * 3
        await world.clock.advance(60)  # 12:01 starts and runs for 150 s
        await world.clock.advance(60)  # 12:02 is due: PENDING behind it
        statuses = [r.status for r in world.runs()]
        assert statuses == [RunStatus.RUNNING, RunStatus.PENDING]
        await world.clock.advance(100)  # 12:03:40: the first ended, the second started
        assert [r.status for r in world.runs()] == [RunStatus.SUCCEEDED, RunStatus.RUNNING,
                                                      RunStatus.PENDING]

    play(tmp_path, datetime(2026, 5, 1, 12, tzinfo=UTC), body, catalog=catalog)


def test_the_loop_sleeps_until_the_next_tick_without_polling(tmp_path: Path) -> None:
    catalog = published(workflow('{every: day, at: "06:00", timezone: UTC}'))

    async def body(world: World) -> None:
        passes = []
        original = world.scheduler.tick
        world.scheduler.tick = lambda now: passes.append(now) or original(now)  # type: ignore
        await world.clock.advance(DAY)
        assert [p.isoformat() for p in passes] == ["2026-05-02T06:00:00+00:00"]

    play(tmp_path, datetime(2026, 5, 1, 12, tzinfo=UTC), body, catalog=catalog)


def test_manual_run_now_or_at_a_named_time_with_checked_params(tmp_path: Path) -> None:
    catalog = published("name: m\nparams: {region: eu}\nnodes:\n  - {name: a, command: a}\n")

    async def body(world: World) -> None:
        now = world.clock.now()
        run = start_run(world.engine, world.catalog, world.clock, "m", remarks="why")
        assert run.logical_time == now and run.trigger is RunTrigger.MANUAL
        assert (run.data_interval_start, run.data_interval_end) == (now, now)
        at = datetime(2026, 1, 31, 2, tzinfo=UTC)
        run = start_run(world.engine, world.catalog, world.clock, "m", logical_time=at,
                        params={"region": "us"})
        assert run.logical_time == at and run.params == {"region": "us"}
        with pytest.raises(RunError) as typo:
            start_run(world.engine, world.catalog, world.clock, "m", params={"regoin": "us"})
        assert typo.value.field == "params.regoin" and "declared: region" in str(typo.value)
        with pytest.raises(RunError) as unknown:
            start_run(world.engine, world.catalog, world.clock, "nope")
        assert unknown.value.not_found
        with pytest.raises(RunError) as naive:
            start_run(world.engine, world.catalog, world.clock, "m",
                      logical_time=datetime(2026, 1, 1))
        assert naive.value.field == "logical_time"
        await world.clock.advance(5)

    world = play(tmp_path, datetime(2026, 5, 1, 12, tzinfo=UTC), body, catalog=catalog)
    assert [r.status for r in world.runs()] == [RunStatus.SUCCEEDED] * 2


def test_a_manual_logical_time_no_time_zone_could_show_is_refused(tmp_path: Path) -> None:
    """Every node of a run at 0001-01-01T00:00Z in New York failed on its templates (the
    time has no local date there): such a time is refused, and the first and last times
    every zone can show run."""
    catalog = published(
        *(f"name: {name}\nschedule: {{every: day, at: '02:00', timezone: {zone}}}\n"
          "nodes:\n  - {name: a, command: 'echo ${ds}'}\n"
          for name, zone in (("west", "America/New_York"), ("east", "Pacific/Kiritimati"))))
    second = timedelta(seconds=1)

    async def body(world: World) -> None:
        for workflow, outside in (("west", EARLIEST - second), ("east", LATEST + second)):
            with pytest.raises(RunError) as refused:
                start_run(world.engine, world.catalog, world.clock, workflow,
                          logical_time=outside)
            assert refused.value.field == "logical_time"
            assert str(refused.value) == (
                f"logical_time {outside.isoformat()} is out of range: give a time from"
                " 0001-01-02 to 9999-12-30")
        start_run(world.engine, world.catalog, world.clock, "west", logical_time=EARLIEST)
        start_run(world.engine, world.catalog, world.clock, "east", logical_time=LATEST)
        await world.clock.advance(5)

    world = play(tmp_path, datetime(2026, 5, 1, 12, tzinfo=UTC), body, catalog=catalog)
    assert sorted((r.workflow, r.status) for r in world.runs()) == [
        ("east", RunStatus.SUCCEEDED), ("west", RunStatus.SUCCEEDED)]


DRIVER = Path(__file__).with_name("scheduler_crash_driver.py")


def drive(state: Path, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(DRIVER), str(state), mode],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_exactly_one_run_per_tick_when_killed_between_tick_and_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = drive(state, "kill-before-run")
    assert first.returncode == -9, first.stderr  # SIGKILL right after the ticks' commit
    store = StateStore(state)
    recorded = store.ticks_without_runs()
    assert len(recorded) == 3 and not store.list_runs()
    store.close()
    second = drive(state, "restart")
    assert second.returncode == 0, second.stderr
    third = drive(state, "restart")  # and once more: nothing new
    assert third.returncode == 0, third.stderr
    store = StateStore(state)
    runs = sorted(store.list_runs(limit=100), key=lambda r: r.logical_time)
    assert [r.run_id for r in runs] == [run_id for _, _, run_id in recorded]
    assert [r.logical_time.isoformat()[11:16] for r in runs] == ["12:01", "12:02", "12:03"]
    assert not store.ticks_without_runs()


def test_a_tick_cannot_yield_a_second_run(tmp_path: Path) -> None:
    catalog = published(workflow('{every: 1m, timezone: UTC}'))

    async def body(world: World) -> None:
        await world.clock.advance(60)
        (run,) = world.runs()
        plan = world.catalog.latest("w")
        assert plan is not None and plan.content is not None
        assert plan.content.schedule is not None
        # the same tick again, as a bug or a second daemon on the same state would
        assert not world.scheduler._create(plan, plan.content.schedule, run.logical_time,
                                           "wr_other")
        assert len(world.runs()) == 1

    play(tmp_path, datetime(2026, 5, 1, 12, tzinfo=UTC), body, catalog=catalog)


def test_one_broken_workflow_does_not_stop_the_others(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    catalog = published(workflow('{every: 1m, timezone: UTC}'),
                        workflow('{every: 1m, timezone: UTC}', name="x"))

    async def body(world: World) -> None:
        def broken(workflow: str) -> object:
            if workflow == "x":
                raise OSError("unreadable plan")
            return Catalog.latest(world.catalog, workflow)
        world.catalog.latest = broken  # type: ignore[method-assign, assignment]
        await world.clock.advance(60)
        await asyncio.sleep(0)

    world = play(tmp_path, datetime(2026, 5, 1, 12, tzinfo=UTC), body, catalog=catalog)
    assert world.logical_times(workflow="w") == ["2026-05-01T12:01:00+00:00"]
    assert "scheduling x failed" in caplog.text


def test_a_tick_the_database_refuses_is_recorded_once_it_can_be(tmp_path: Path) -> None:
    """Another connection holds SQLite's write lock (busy_timeout 0: refused at once, as a
    full disk refuses): the 12:02 tick waits, and its run comes within a second of the
    release, with no wake."""
    catalog = published(workflow('{every: 1m, timezone: UTC}'))

    async def body(world: World) -> None:
        await world.clock.advance(60)
        world.store._db.execute("PRAGMA busy_timeout=0")
        blocker = sqlite3.connect(world.store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        await world.clock.advance(60)
        assert world.logical_times() == ["2026-05-01T12:01:00+00:00"]
        blocker.execute("ROLLBACK")
        blocker.close()
        await world.clock.advance(1)
        assert world.logical_times() == ["2026-05-01T12:01:00+00:00",
                                         "2026-05-01T12:02:00+00:00"]

    play(tmp_path, datetime(2026, 5, 1, 12, tzinfo=UTC), body, catalog=catalog)
