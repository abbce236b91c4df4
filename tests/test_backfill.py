"""Backfills: one run per tick of the range, oldest first, bounded parallelism, dry run,
reprocess modes, cancel, fair sharing of queues with scheduled runs, restarts, errors, and
`${ds}` of each backfilled run written by a real node."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from engine_fakes import Behaviour
from scheduling_harness import Catalog, World, play

from flowplan.daemon.domain import BackfillStatus, Reprocess, RunStatus, RunTrigger
from flowplan.daemon.engine.clock import SystemClock
from flowplan.daemon.engine.engine import Engine, EngineSettings, RunError
from flowplan.daemon.engine.launcher import LocalLauncher
from flowplan.daemon.scheduler.backfills import AbandonedError, BackfillRequest, Backfills
from flowplan.daemon.state.store import StateStore

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
DAILY = ("name: w\n{extra}schedule: {{every: day, at: \"02:00\", timezone: Europe/Amsterdam}}\n"
         "nodes:\n  - {{name: a, command: a}}\n")


def catalog(extra: str = "") -> Catalog:
    c = Catalog()
    c.publish(DAILY.format(extra=extra))
    c.publish("name: manual\nnodes:\n  - {name: a, command: a}\n")
    return c


def day(n: int) -> datetime:
    """Day n of May 2026, 02:00 in Amsterdam (CEST)."""
    return datetime(2026, 5, n, 0, tzinfo=UTC)


def request(first: int, last: int, **kwargs: object) -> BackfillRequest:
    return BackfillRequest(workflow="w", start_time=day(first), end_time=day(last),
                           **kwargs)  # type: ignore[arg-type]


def launch_days(world: World) -> list[int]:
    """The day of each run, in the order their node launched."""
    by_start = sorted((r.node("a").attempts[0].started_at, r.logical_time.day)
                      for r in world.store.list_runs(limit=1000, with_nodes=True)
                      if r.node("a").attempts)
    return [d for _, d in by_start]


def test_one_run_per_tick_oldest_first_at_most_parallel(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        answer = world.backfills.start(request(1, 10, max_parallel_runs=3, remarks="fix"))
        assert [t.day for t in answer.logical_times] == list(range(1, 11))
        assert len(answer.run_ids) == 10 and answer.backfill_id
        progress = world.backfills.get(answer.backfill_id).progress
        assert (progress.total, progress.running, progress.pending) == (10, 3, 7)
        await world.clock.advance(60)
        backfill = world.backfills.get(answer.backfill_id)
        assert backfill.status is BackfillStatus.SUCCEEDED and backfill.finished_at
        assert backfill.progress.succeeded == 10

    world = play(tmp_path, NOW, body, catalog=catalog(), )
    assert launch_days(world) == list(range(1, 11))
    assert world.launcher.peak == 3
    runs = world.runs()
    assert all(r.trigger is RunTrigger.BACKFILL and r.remarks == "fix" for r in runs)
    first = min(runs, key=lambda r: r.logical_time)
    assert first.data_interval_start == datetime(2026, 4, 30, 0, tzinfo=UTC)
    assert first.data_interval_end == first.logical_time == day(1)


def test_the_next_run_starts_the_moment_one_ends(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        world.launcher.scripts["a"] = [Behaviour(seconds=7)] * 4
        world.backfills.start(request(1, 4, max_parallel_runs=1))
        await world.clock.advance(60)

    world = play(tmp_path, NOW, body, catalog=catalog())
    starts = sorted(r.node("a").attempts[0].started_at
                    for r in world.store.list_runs(with_nodes=True))
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(starts)] \
        == [7.0, 7.0, 7.0]  # no polling delay between one run's end and the next start


def test_parallelism_defaults_to_max_active_runs(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        answer = world.backfills.start(request(1, 6))
        assert answer.backfill_id
        assert world.backfills.get(answer.backfill_id).max_parallel_runs == 2
        await world.clock.advance(30)

    world = play(tmp_path, NOW, body, catalog=catalog("max_active_runs: 2\n"))
    assert world.launcher.peak == 2


def test_dry_run_lists_the_ticks_and_creates_nothing(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        answer = world.backfills.start(request(1, 3, dry_run=True))
        assert answer.backfill_id is None and answer.run_ids == ()
        assert answer.logical_times == (day(1), day(2), day(3))

    world = play(tmp_path, NOW, body, catalog=catalog())
    assert world.runs() == [] and world.store.list_backfills() == []


def test_reprocess_missing_failed_and_all(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        world.launcher.scripts["a"] = [Behaviour(), Behaviour(code=1), Behaviour(),
                                       Behaviour(code=1)] + [Behaviour()] * 20
        first = world.backfills.start(request(1, 4, max_parallel_runs=1))
        await world.clock.advance(30)
        assert first.backfill_id
        done = world.backfills.get(first.backfill_id)
        assert done.status is BackfillStatus.FAILED
        assert (done.progress.succeeded, done.progress.failed) == (2, 2)
        dry = {mode: world.backfills.start(request(1, 5, reprocess=mode, dry_run=True))
               for mode in Reprocess}
        assert [t.day for t in dry[Reprocess.MISSING].logical_times] == [2, 4, 5]
        assert [t.day for t in dry[Reprocess.FAILED].logical_times] == [2, 4]
        assert [t.day for t in dry[Reprocess.ALL].logical_times] == [1, 2, 3, 4, 5]
        again = world.backfills.start(request(1, 5, reprocess=Reprocess.FAILED))
        await world.clock.advance(30)
        assert again.backfill_id
        assert world.backfills.get(again.backfill_id).status is BackfillStatus.SUCCEEDED
        assert world.backfills.start(request(1, 4, reprocess=Reprocess.MISSING,
                                             dry_run=True)).logical_times == ()
        nothing = world.backfills.start(request(1, 4, reprocess=Reprocess.MISSING))
        assert nothing.backfill_id is None and nothing.run_ids == ()  # nothing created

    play(tmp_path, NOW, body, catalog=catalog())


def test_reprocess_reads_the_newest_run_of_each_tick(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        world.launcher.scripts["a"] = [Behaviour(code=1), Behaviour(), Behaviour(code=1)]
        for _ in range(3):  # day 1: failed, then succeeded, then failed again
            world.backfills.start(request(1, 1))
            await world.clock.advance(5)
        failed = world.backfills.start(request(1, 1, reprocess=Reprocess.FAILED, dry_run=True))
        missing = world.backfills.start(request(1, 1, reprocess=Reprocess.MISSING,
                                                dry_run=True))
        assert failed.logical_times == (day(1),)  # its newest run failed
        assert missing.logical_times == ()  # it has succeeded once

    play(tmp_path, NOW, body, catalog=catalog())


def test_cancel_cancels_pending_and_running_runs(tmp_path: Path) -> None:
    finished = []

    async def body(world: World) -> None:
        world.backfills.on_finished(finished.append)
        world.launcher.scripts["a"] = [Behaviour(hang=True)] * 10
        answer = world.backfills.start(request(1, 10, max_parallel_runs=2))
        await world.clock.advance(5)
        assert answer.backfill_id
        cancelled = world.backfills.cancel(answer.backfill_id)
        assert cancelled.status is BackfillStatus.CANCELLED
        await world.clock.advance(1)
        progress = world.backfills.get(answer.backfill_id).progress
        assert (progress.cancelled, progress.unfinished) == (10, 0)
        with pytest.raises(RunError) as again:
            world.backfills.cancel(answer.backfill_id)
        assert again.value.precondition

    world = play(tmp_path, NOW, body, catalog=catalog())
    assert {r.status for r in world.runs()} == {RunStatus.CANCELLED}
    assert len(world.launcher.launches) == 2  # the pending ones never started
    assert [b.status for b in finished] == [BackfillStatus.CANCELLED]


def test_a_resumed_run_that_succeeds_turns_a_failed_backfill_succeeded(tmp_path: Path
                                                                        ) -> None:
    finished = []

    async def body(world: World) -> None:
        world.backfills.on_finished(finished.append)
        world.launcher.scripts["a"] = [Behaviour(code=1), Behaviour(code=0), Behaviour(code=1)]
        answer = world.backfills.start(request(1, 1))
        assert answer.backfill_id
        await world.clock.advance(10)
        assert world.backfills.get(answer.backfill_id).status is BackfillStatus.FAILED
        fixed = world.engine.resume_run(answer.run_ids[0], ["a"])
        await world.clock.advance(10)
        backfill = world.backfills.get(answer.backfill_id)
        assert (backfill.status, backfill.progress.succeeded, backfill.progress.failed) == (
            BackfillStatus.SUCCEEDED, 1, 0)
        world.engine.resume_run(fixed.run_id or "", ["a"])  # and back, should it fail again
        await world.clock.advance(10)
        assert world.backfills.get(answer.backfill_id).status is BackfillStatus.FAILED

    play(tmp_path, NOW, body, catalog=catalog())
    assert [b.status for b in finished] == [BackfillStatus.FAILED, BackfillStatus.SUCCEEDED,
                                            BackfillStatus.FAILED]


FAIR = ("name: w\nschedule: {every: 5m, timezone: UTC}\nqueue: solo\nnodes:\n"
        + "".join(f"  - {{name: n{i}, command: x}}\n" for i in range(10)))


def test_scheduled_runs_and_a_big_backfill_share_a_queue_fairly(tmp_path: Path) -> None:
    c = Catalog()
    c.publish(FAIR)

    async def body(world: World) -> None:
        for i in range(10):
            world.launcher.scripts[f"n{i}"] = [Behaviour(seconds=10)] * 100
        answer = world.backfills.start(BackfillRequest(
            workflow="w", start_time=NOW - timedelta(hours=3), end_time=NOW - timedelta(hours=1),
            max_parallel_runs=5))
        assert answer.backfill_id and len(answer.run_ids) == 25
        await world.clock.advance(5 * 60 + 25)  # the 12:05 tick, and 25 s more
        (scheduled,) = world.runs(trigger=RunTrigger.SCHEDULE)
        run = world.store.get_run(scheduled.run_id)
        assert run is not None
        started = [n for n in run.nodes if n.attempts]
        # 50 backfill nodes wait on the one slot; first come first served would make the
        # scheduled run wait 500 s. Turns between the lanes start it within two slots.
        assert started, "the scheduled run is starved by the backfill"
        await world.clock.advance(300)
        run = world.store.get_run(scheduled.run_id)
        assert run is not None and run.status is RunStatus.SUCCEEDED
        assert world.backfills.get(answer.backfill_id).progress.succeeded >= 1

    play(tmp_path, NOW, body, catalog=c)


def test_a_restart_continues_the_backfill_within_its_parallelism(tmp_path: Path) -> None:
    c = catalog()

    async def first(world: World) -> None:
        world.launcher.scripts["a"] = [Behaviour(seconds=10)] * 10
        world.backfills.start(request(1, 8, max_parallel_runs=2))
        await world.clock.advance(15)  # two done, two running, four pending

    play(tmp_path, NOW, first, catalog=c)

    async def second(world: World) -> None:
        await world.clock.advance(120)

    world = play(tmp_path, NOW + timedelta(seconds=15), second, catalog=c)
    (backfill,) = world.store.list_backfills()
    assert backfill.progress.total == 8
    # the two running when the engine stopped were lost (the fake launcher cannot adopt)
    # and failed; the others ran, two at a time
    assert backfill.progress.succeeded == 6 and backfill.status is BackfillStatus.FAILED
    assert world.launcher.peak == 2


@pytest.mark.parametrize(("change", "field", "message"), [
    (dict(workflow="manual"), "workflow", "has no schedule"),
    (dict(workflow="nope"), "workflow", "does not exist"),
    (dict(end_time=day(1) - timedelta(days=1)), "end_time", "before start_time"),
    (dict(start_time=datetime(2026, 5, 1)), "start_time", "time zone"),
    (dict(max_parallel_runs=0), "max_parallel_runs", "between 1 and"),
    (dict(queue="gpu"), "queue", "'gpu' is not defined"),
    (dict(failure_emails=("ok@example.com", "nope")), "failure_emails[1]", "e-mail"),
    (dict(start_time=day(1) + timedelta(hours=1), end_time=day(1) + timedelta(hours=2)),
     "start_time", "no tick"),
])
def test_bad_requests_name_the_field(tmp_path: Path, change: dict[str, object], field: str,
                                     message: str) -> None:
    async def body(world: World) -> None:
        values = {"workflow": "w", "start_time": day(1), "end_time": day(3), **change}
        with pytest.raises(RunError, match=message) as error:
            world.backfills.start(BackfillRequest(**values))  # type: ignore[arg-type]
        assert error.value.field == field

    world = play(tmp_path, NOW, body, catalog=catalog())
    assert world.runs() == []


def test_a_range_over_20000_ticks_or_200000_node_runs_is_refused(tmp_path: Path) -> None:
    c = Catalog()
    c.publish("name: w\nschedule: {every: 1m, timezone: UTC}\nnodes:\n  - {name: a, command: a}\n")
    c.publish("name: wide\nschedule: {every: 1h, timezone: UTC}\nnodes:\n"
              + "".join(f"  - {{name: n{i}, command: a}}\n" for i in range(20)))

    async def body(world: World) -> None:
        minutes = day(1) - timedelta(minutes=20_000)
        with pytest.raises(RunError, match="more than 20,000 ticks") as error:
            world.backfills.start(BackfillRequest(workflow="w", start_time=minutes,
                                                  end_time=day(1)))
        assert error.value.field == "end_time"
        assert len(world.backfills.start(BackfillRequest(
            workflow="w", start_time=minutes + timedelta(minutes=1), end_time=day(1),
            dry_run=True)).logical_times) == 20_000
        hours = day(1) - timedelta(hours=10_000)  # 10,001 ticks of 20 nodes
        with pytest.raises(RunError, match="10,001 runs of wide would hold 200,020 node runs,"
                                           " more than the 200,000") as error:
            world.backfills.start(BackfillRequest(workflow="wide", start_time=hours,
                                                  end_time=day(1), dry_run=True))
        assert error.value.field == "end_time"

    play(tmp_path, NOW, body, catalog=c)


def test_a_backfill_its_caller_gave_up_on_is_not_created(tmp_path: Path) -> None:
    async def body(world: World) -> None:
        with pytest.raises(AbandonedError, match="none was created"):
            world.backfills.start(request(1, 3), abandoned=lambda: True)
        assert world.store.list_backfills() == []
        assert world.backfills.start(request(1, 3)).backfill_id is not None

    world = play(tmp_path, NOW, body, catalog=catalog())
    assert len(world.runs()) == 3


def test_each_backfilled_run_writes_its_own_ds_with_a_real_node(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    c = Catalog()
    c.publish("name: w\nparams: {out: " + str(out) + "}\n"
              "schedule: {every: day, at: \"23:30\", timezone: America/New_York}\n"
              "nodes:\n  - name: write\n"
              "    command: echo ${ds} ${data_interval_start} > ${params.out}/${ds_nodash}\n")

    async def main() -> None:
        state = tmp_path / "state"
        store = StateStore(state)
        engine = Engine(store=store, plans=c, launcher=LocalLauncher(), clock=SystemClock(),
                        settings=EngineSettings(state_dir=state))
        backfills = Backfills(engine=engine, store=store, catalog=c, clock=SystemClock())
        await engine.start()
        answer = backfills.start(BackfillRequest(
            workflow="w", start_time=datetime(2026, 3, 7, tzinfo=UTC),
            end_time=datetime(2026, 3, 10, 12, tzinfo=UTC), max_parallel_runs=2))
        for run_id in answer.run_ids:
            await engine.wait_run(run_id)
        await engine.stop()
        assert answer.backfill_id
        assert backfills.get(answer.backfill_id).status is BackfillStatus.SUCCEEDED

    asyncio.run(asyncio.wait_for(main(), 30))
    written = {p.name: p.read_text().strip() for p in out.iterdir()}
    # 23:30 in New York is the next day in UTC: ds is the date in the schedule's zone,
    # across the spring-forward of 2026-03-08
    assert written == {
        "20260306": "2026-03-06 2026-03-05T23:30:00-05:00",  # 2026-03-07T04:30Z
        "20260307": "2026-03-07 2026-03-06T23:30:00-05:00",
        "20260308": "2026-03-08 2026-03-07T23:30:00-05:00",
        "20260309": "2026-03-09 2026-03-08T23:30:00-04:00",
    }
