"""The scheduler's tick functions: exact instants across DST changes, window and start edges,
and properties checked against a brute-force oracle that steps minute by minute."""

from __future__ import annotations

import time as clock
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flowplan.compiler.plan import SchedulePlan
from flowplan.daemon.scheduler import ticks as ticks_module
from flowplan.daemon.scheduler.ticks import (
    TooManyTicks,
    iter_ticks,
    next_ticks,
    previous_tick,
    ticks_between,
)

PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
MINUTE = timedelta(minutes=1)
MICRO = timedelta(microseconds=1)
AMS, NYC, LHI = "Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe"


def plan(kind: str, timezone: str = "UTC", **fields: Any) -> SchedulePlan:
    return SchedulePlan(kind=kind, timezone=timezone, enabled=True, catchup="latest", **fields)


def daily(at: str, timezone: str = "UTC", **fields: Any) -> SchedulePlan:
    return plan("daily", timezone, at=at, **fields)


def interval(every_seconds: int, window: tuple[str, str] | None, timezone: str = "UTC",
             **fields: Any) -> SchedulePlan:
    return plan("interval", timezone, every_seconds=every_seconds, window=window, **fields)


def cron(expression: str, timezone: str = "UTC", **fields: Any) -> SchedulePlan:
    return plan("cron", timezone, cron=expression, **fields)


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


# --- exact instants across DST changes ------------------------------------------------------
# Europe/Amsterdam 2026: 02:00 CET -> 03:00 CEST on Mar 29 at 01:00Z; 03:00 CEST -> 02:00 CET
# on Oct 25 at 01:00Z. America/New_York 2026: 02:00 EST -> 03:00 EDT on Mar 8 at 07:00Z;
# 02:00 EDT -> 01:00 EST on Nov 1 at 06:00Z. Australia/Lord_Howe 2026 (30-minute DST):
# 02:00 +11 -> 01:30 +10:30 on Apr 5 (Apr 4 15:00Z); 02:00 +10:30 -> 02:30 +11 on Oct 4
# (Oct 3 15:30Z).

DST_CASES: list[tuple[str, SchedulePlan, datetime, list[datetime]]] = [
    ("daily ams spring: 02:30 is missing, fires at 03:00 CEST",
     daily("02:30", AMS), utc(2026, 3, 27),
     [utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0),
      utc(2026, 3, 30, 0, 30)]),
    ("daily ams fall: 02:30 twice, fires at the first (CEST)",
     daily("02:30", AMS), utc(2026, 10, 24),
     [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]),
    ("daily nyc spring: 02:30 is missing, fires at 03:00 EDT",
     daily("02:30", NYC), utc(2026, 3, 7),
     [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]),
    ("daily nyc fall: 01:30 twice, fires at the first (EDT)",
     daily("01:30", NYC), utc(2026, 10, 31),
     [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]),
    ("interval ams spring: 02:00, 02:30 and 03:00 are one tick",
     interval(1800, ("01:00", "04:00"), AMS), utc(2026, 3, 28, 22),
     [utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 0),
      utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2, 0), utc(2026, 3, 29, 23, 0)]),
    ("interval ams fall: the repeated 02:xx fire once, in CEST",
     interval(1800, ("01:00", "04:00"), AMS), utc(2026, 10, 24, 22),
     [utc(2026, 10, 24, 23, 0), utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 0, 0),
      utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2, 0), utc(2026, 10, 25, 2, 30),
      utc(2026, 10, 25, 3, 0), utc(2026, 10, 26, 0, 0)]),
    ("interval nyc spring: missing 02:00 and real 03:00 are one tick",
     interval(3600, ("00:00", "04:00"), NYC), utc(2026, 3, 8, 4),
     [utc(2026, 3, 8, 5), utc(2026, 3, 8, 6), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8),
      utc(2026, 3, 9, 4)]),
    ("interval nyc fall: 01:00 fires once, in EDT",
     interval(3600, ("00:00", "03:00"), NYC), utc(2026, 11, 1, 3),
     [utc(2026, 11, 1, 4), utc(2026, 11, 1, 5), utc(2026, 11, 1, 7), utc(2026, 11, 1, 8),
      utc(2026, 11, 2, 5)]),
    ("interval lord howe spring: 02:00, 02:15, 02:30 are one tick at 02:30 +11",
     interval(900, ("01:30", "03:00"), LHI), utc(2026, 10, 3, 14),
     [utc(2026, 10, 3, 15, 0), utc(2026, 10, 3, 15, 15), utc(2026, 10, 3, 15, 30),
      utc(2026, 10, 3, 15, 45), utc(2026, 10, 3, 16, 0), utc(2026, 10, 4, 14, 30)]),
    ("interval lord howe fall: 01:30 and 01:45 fire once, at +11",
     interval(900, ("01:30", "03:00"), LHI), utc(2026, 4, 4, 14),
     [utc(2026, 4, 4, 14, 30), utc(2026, 4, 4, 14, 45), utc(2026, 4, 4, 15, 30),
      utc(2026, 4, 4, 15, 45), utc(2026, 4, 4, 16, 0), utc(2026, 4, 4, 16, 15),
      utc(2026, 4, 4, 16, 30), utc(2026, 4, 5, 15, 0)]),
    ("cron ams spring: 02:00 and 02:30 are missing, one tick at 03:00 CEST",
     cron("*/30 2 * * *", AMS), utc(2026, 3, 28, 2),
     [utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 0), utc(2026, 3, 30, 0, 30)]),
    ("cron ams fall: 02:00 and 02:30 fire once each, in CEST",
     cron("*/30 2 * * *", AMS), utc(2026, 10, 24, 12),
     [utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 0),
      utc(2026, 10, 26, 1, 30)]),
    ("cron nyc spring: 02:15 is missing, fires at 03:00 EDT",
     cron("15 2 * * *", NYC), utc(2026, 3, 7),
     [utc(2026, 3, 7, 7, 15), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 15)]),
    ("cron nyc fall: 01:30 once (croniter alone fires twice)",
     cron("30 1 * * *", NYC), utc(2026, 10, 31, 12),
     [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]),
    ("cron nyc fall hourly: the repeated 01:00 fires once",
     cron("0 * * * *", NYC), utc(2026, 11, 1, 4, 30),
     [utc(2026, 11, 1, 5), utc(2026, 11, 1, 7), utc(2026, 11, 1, 8)]),
]


@pytest.mark.parametrize(("schedule", "after", "expected"),
                         [case[1:] for case in DST_CASES], ids=[case[0] for case in DST_CASES])
def test_dst_changes(schedule: SchedulePlan, after: datetime, expected: list[datetime]) -> None:
    ticks = next_ticks(schedule, after, len(expected))
    assert ticks == expected
    assert all(t.tzinfo is UTC for t in ticks)
    assert ticks_between(schedule, expected[0], expected[-1]) == expected
    assert [previous_tick(schedule, t) for t in expected[1:]] == expected[:-1]


def test_previous_tick_from_the_repeated_hour() -> None:
    # 01:30Z is 02:30 CET, the second pass: 02:40 CEST (00:40Z) came before it.
    schedule = cron("*/20 * * * *", AMS)
    assert previous_tick(schedule, utc(2026, 10, 25, 1, 30)) == utc(2026, 10, 25, 0, 40)
    assert next_ticks(schedule, utc(2026, 10, 25, 1, 30), 1) == [utc(2026, 10, 25, 2, 0)]
    hourly = interval(3600, None, NYC)
    assert previous_tick(hourly, utc(2026, 11, 1, 6, 30)) == utc(2026, 11, 1, 5)


def test_missing_wall_times_that_meet_fire_once() -> None:
    schedule = cron("* * * * *", AMS)
    ticks = ticks_between(schedule, utc(2026, 3, 29, 0, 58), utc(2026, 3, 29, 1, 2))
    assert ticks == [utc(2026, 3, 29, 0, 58), utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 1, 0),
                     utc(2026, 3, 29, 1, 1), utc(2026, 3, 29, 1, 2)]
    assert previous_tick(schedule, utc(2026, 3, 29, 1, 1)) == utc(2026, 3, 29, 1, 0)


def test_a_gap_at_midnight() -> None:
    # America/Santiago jumps from 00:00 to 01:00 on 2026-09-06 (04:00Z).
    schedule = daily("00:30", "America/Santiago")
    assert next_ticks(schedule, utc(2026, 9, 5), 3) == [
        utc(2026, 9, 5, 4, 30), utc(2026, 9, 6, 4, 0), utc(2026, 9, 7, 3, 30)]


# --- windows, start, ranges ------------------------------------------------------------------

def test_window_edges() -> None:
    divides = interval(2 * 3600, ("08:00", "20:00"))
    ticks = ticks_between(divides, utc(2026, 1, 1), utc(2026, 1, 2, 7, 59))
    assert ticks == [utc(2026, 1, 1, h) for h in range(8, 21, 2)]
    assert next_ticks(divides, utc(2026, 1, 1, 20), 1) == [utc(2026, 1, 2, 8)]
    ragged = interval(5 * 3600, ("08:00", "20:00"))
    assert next_ticks(ragged, utc(2026, 1, 1), 4) == [
        utc(2026, 1, 1, 8), utc(2026, 1, 1, 13), utc(2026, 1, 1, 18), utc(2026, 1, 2, 8)]
    edges = interval(1439 * 60, ("00:00", "23:59"))
    assert next_ticks(edges, utc(2026, 1, 1), 3) == [
        utc(2026, 1, 1, 23, 59), utc(2026, 1, 2), utc(2026, 1, 2, 23, 59)]


def test_a_plan_without_window_is_the_whole_day() -> None:
    after = utc(2026, 3, 1, 5, 17)
    for every in (7 * 60, 3600, 5 * 3600):
        assert (next_ticks(interval(every, None, AMS), after, 50)
                == next_ticks(interval(every, ("00:00", "23:59"), AMS), after, 50))


def test_start() -> None:
    start = datetime(2026, 1, 10, 2, 0, tzinfo=ZoneInfo(AMS))  # 01:00Z, a tick
    schedule = daily("02:00", AMS, start=start)
    assert next_ticks(schedule, utc(2026, 1, 1), 2) == [utc(2026, 1, 10, 1), utc(2026, 1, 11, 1)]
    assert ticks_between(schedule, utc(2026, 1, 1), utc(2026, 1, 10, 1)) == [utc(2026, 1, 10, 1)]
    assert ticks_between(schedule, utc(2026, 1, 1), utc(2026, 1, 10, 0, 59)) == []
    assert previous_tick(schedule, utc(2026, 1, 10, 1)) is None
    assert previous_tick(schedule, utc(2026, 1, 10, 1, 0, 0, 1)) == utc(2026, 1, 10, 1)
    assert previous_tick(schedule, utc(2026, 1, 1)) is None
    late = daily("02:00", AMS, start=start + MINUTE)
    assert next_ticks(late, utc(2026, 1, 1), 1) == [utc(2026, 1, 11, 1)]
    assert previous_tick(late, utc(2026, 1, 12)) == utc(2026, 1, 11, 1)
    assert previous_tick(late, utc(2026, 1, 11)) is None


def test_start_in_another_zone_and_in_the_repeated_hour() -> None:
    # The second 02:30 of 2026-10-25 in Amsterdam is 01:30Z; given in the schedule's own zone
    # it must be compared as an instant, not as a wall time.
    start = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=ZoneInfo(AMS))
    schedule = cron("*/30 * * * *", AMS, start=start)
    assert next_ticks(schedule, utc(2026, 10, 24), 2) == [utc(2026, 10, 25, 2),
                                                            utc(2026, 10, 25, 2, 30)]
    offset = daily("09:00", "UTC", start=datetime(2026, 1, 1, 14, tzinfo=timezone(
        timedelta(hours=5))))  # 09:00Z
    assert next_ticks(offset, utc(2025, 12, 1), 1) == [utc(2026, 1, 1, 9)]


def test_ticks_between_is_inclusive_and_bounded() -> None:
    hourly = cron("0 * * * *")
    assert ticks_between(hourly, utc(2026, 1, 1, 1), utc(2026, 1, 1, 3)) == [
        utc(2026, 1, 1, 1), utc(2026, 1, 1, 2), utc(2026, 1, 1, 3)]
    assert ticks_between(hourly, utc(2026, 1, 1, 1, 0, 0, 1), utc(2026, 1, 1, 2, 59)) == [
        utc(2026, 1, 1, 2)]
    assert ticks_between(hourly, utc(2026, 1, 1, 3), utc(2026, 1, 1, 1)) == []
    assert ticks_between(hourly, utc(2026, 1, 1, 1), utc(2026, 1, 1, 3), limit=3) == [
        utc(2026, 1, 1, 1), utc(2026, 1, 1, 2), utc(2026, 1, 1, 3)]
    with pytest.raises(TooManyTicks) as raised:
        ticks_between(hourly, utc(2026, 1, 1, 1), utc(2026, 1, 1, 3), limit=2)
    assert raised.value.limit == 2
    assert isinstance(raised.value, ValueError)


def test_too_many_ticks_stops_early(monkeypatch: pytest.MonkeyPatch) -> None:
    consumed: list[datetime] = []

    ticks_after = ticks_module._ticks_after

    def counting(schedule: SchedulePlan, floor: datetime | None) -> Iterator[datetime]:
        for tick in ticks_after(schedule, floor):
            consumed.append(tick)
            yield tick

    monkeypatch.setattr(ticks_module, "_ticks_after", counting)
    every_minute = interval(60, None)
    with pytest.raises(TooManyTicks):
        ticks_between(every_minute, utc(2020, 1, 1), utc(2023, 1, 1), limit=10)
    assert len(consumed) == 11


def test_aware_datetimes_only_and_next_ticks_count() -> None:
    schedule = daily("02:00")
    with pytest.raises(ValueError, match="time zone"):
        next_ticks(schedule, datetime(2026, 1, 1), 1)
    with pytest.raises(ValueError, match="time zone"):
        previous_tick(schedule, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="time zone"):
        ticks_between(schedule, utc(2026, 1, 1), datetime(2026, 1, 2))
    assert next_ticks(schedule, utc(2026, 1, 1), 0) == []
    with pytest.raises(ValueError):
        next_ticks(schedule, utc(2026, 1, 1), -1)
    assert next_ticks(schedule, datetime(2026, 1, 1, 2, 59, tzinfo=ZoneInfo(AMS)), 1) == [
        utc(2026, 1, 1, 2)]
    assert next_ticks(schedule, datetime(2026, 1, 1, 3, tzinfo=ZoneInfo(AMS)), 1) == [
        utc(2026, 1, 2, 2)]


FIRST, LAST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
EAST, WEST = timezone(timedelta(hours=1)), timezone(timedelta(hours=-5))


def test_the_ends_of_the_calendar() -> None:
    """No OverflowError anywhere near 0001-01-01 or 9999-12-31, whatever the zones: a wall
    time whose instant is outside the calendar has no tick, an argument outside it bounds as
    its instant would."""
    midnight = daily("00:00")
    for schedule in (midnight, cron("0 0 * * *"), interval(3600, ("00:00", "01:00"))):
        assert ticks_between(schedule, FIRST, utc(1, 1, 1, 0, 59))[0] == FIRST
        assert next_ticks(schedule, datetime(1, 1, 1, tzinfo=EAST), 1) == [FIRST]
        assert next_ticks(schedule.model_copy(update={"start": FIRST}), FIRST, 1) != [FIRST]
    assert previous_tick(cron("0 0 * * *"), utc(1, 1, 2, 0, 0, 0, 1)) == utc(1, 1, 2)
    assert ticks_between(cron("0 0 * * *"), utc(9000, 1, 2), utc(9000, 1, 2)) == [
        utc(9000, 1, 2)]  # croniter's floats lose microseconds this far from 1970
    assert ticks_between(cron("0 0 * * 2"), FIRST, utc(1, 1, 8)) == [utc(1, 1, 2)]  # a Monday
    assert ticks_between(midnight, FIRST, datetime(1, 1, 1, tzinfo=EAST)) == []
    # 00:00 in Amsterdam (LMT +00:19:32) on the first day is before the calendar
    assert ticks_between(daily("00:00", AMS), FIRST, utc(1, 1, 2)) == [
        utc(1, 1, 1, 23, 40, 28)]
    assert ticks_between(daily("02:00", NYC, start=FIRST), FIRST, utc(1, 1, 1, 12)) == [
        utc(1, 1, 1, 6, 56, 2)]  # New York's LMT is -04:56:02
    assert previous_tick(daily("00:00", AMS), utc(1, 1, 1, 3)) is None
    assert previous_tick(midnight, datetime(1, 1, 1, tzinfo=EAST)) is None
    late = daily("23:30", NYC)  # 23:30 on 9999-12-31 in New York is after the calendar
    assert next_ticks(late, utc(9999, 12, 30, 12), 3) == [utc(9999, 12, 31, 4, 30)]
    assert ticks_between(late, utc(9999, 12, 30, 12), LAST) == [utc(9999, 12, 31, 4, 30)]
    assert ticks_between(late, utc(9999, 12, 30, 12), datetime(9999, 12, 31, 23, tzinfo=WEST)) == [
        utc(9999, 12, 31, 4, 30)]
    assert previous_tick(late, LAST) == utc(9999, 12, 31, 4, 30)
    assert previous_tick(cron("30 23 * * *", "Asia/Tokyo"), LAST) == utc(9999, 12, 31, 14, 30)
    assert previous_tick(daily("23:30", AMS), datetime(9999, 12, 31, 23, tzinfo=WEST)) == \
        utc(9999, 12, 31, 22, 30)
    assert next_ticks(daily("23:00"), datetime(9999, 12, 31, 23, tzinfo=WEST), 1) == []
    assert next_ticks(daily("23:00"), LAST, 1) == []


def test_a_cron_that_never_fires() -> None:
    never = cron("0 0 30 2 *")
    assert list(iter_ticks(never, utc(2026, 1, 1))) == []
    assert next_ticks(never, utc(2026, 1, 1), 3) == []
    assert previous_tick(never, utc(2026, 1, 1)) is None


def test_sparse_cron_and_macros() -> None:
    leap = cron("0 12 29 2 *", NYC)
    assert next_ticks(leap, utc(2026, 1, 1), 2) == [utc(2028, 2, 29, 17), utc(2032, 2, 29, 17)]
    assert previous_tick(leap, utc(2028, 2, 29, 17)) == utc(2024, 2, 29, 17)
    assert next_ticks(cron("@daily", AMS), utc(2026, 3, 28, 12), 2) == [
        utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)]


def test_iter_ticks_is_lazy_and_endless() -> None:
    ticks = iter_ticks(cron("* * * * *"), utc(2026, 1, 1))
    assert [next(ticks) for _ in range(3)] == [utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2),
                                               utc(2026, 1, 1, 0, 3)]


def test_ten_thousand_daily_ticks_are_fast() -> None:
    schedule = daily("02:30", AMS)
    begin, end = utc(2000, 1, 1), utc(2000, 1, 1) + timedelta(days=10_000)
    best = float("inf")
    for _ in range(5):
        began = clock.perf_counter()
        ticks = ticks_between(schedule, begin, end)
        best = min(best, clock.perf_counter() - began)
    assert len(ticks) == 10_000
    assert best < 0.05, f"10,000 daily ticks took {best * 1000:.1f} ms"


# --- properties against a brute-force oracle --------------------------------------------------

ZONES = [AMS, NYC, "America/Santiago", LHI, "Pacific/Chatham", "Asia/Tehran", "UTC",
         "Asia/Kolkata"]
FIRST_YEAR, LAST_YEAR = 2015, 2030


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@cache
def transitions(name: str, forward: bool) -> tuple[datetime, ...]:
    """The instants in FIRST_YEAR..LAST_YEAR at which the zone's clocks jump forward (or go
    back)."""
    zone = _zone(name)
    found: list[datetime] = []
    moment = utc(FIRST_YEAR, 1, 1)
    offset = moment.astimezone(zone).utcoffset()
    while moment.year <= LAST_YEAR:
        later = moment + timedelta(hours=12)
        if later.astimezone(zone).utcoffset() != offset:
            low, high = moment, later
            while high - low > MINUTE:
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == offset:
                    low = middle
                else:
                    high = middle
            new_offset = later.astimezone(zone).utcoffset()
            assert offset is not None and new_offset is not None
            if (new_offset > offset) == forward:
                found.append(high.replace(second=0, microsecond=0))
            offset = new_offset
        moment = later
    return tuple(found)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def minutes_of_day(draw: st.DrawFn, zone: str) -> int:
    """A wall time (minutes since midnight); half of them within 90 minutes of the wall time
    at which the zone changes its clocks, so that they often fall in a gap or an overlap."""
    changes = transitions(zone, forward=draw(st.booleans()))
    if not changes or draw(st.booleans()):
        return draw(st.integers(0, 1439))
    near = draw(st.sampled_from(changes)) + draw(st.integers(-90, 90)) * MINUTE
    local = near.astimezone(_zone(zone))
    return local.hour * 60 + local.minute


@st.composite
def daily_plans(draw: st.DrawFn, zone: str) -> SchedulePlan:
    return daily(_hhmm(draw(minutes_of_day(zone))), zone)


@st.composite
def interval_plans(draw: st.DrawFn, zone: str) -> SchedulePlan:
    every = draw(st.one_of(st.integers(1, 23).map(lambda h: h * 3600),
                           st.sampled_from([1, 5, 7, 13, 15, 30, 45, 90, 1439]).map(
                               lambda m: m * 60),
                           st.integers(1, 1439).map(lambda m: m * 60)))
    if draw(st.booleans()):
        window = None
    else:
        first = min(draw(minutes_of_day(zone)), 1438)
        window = (_hhmm(first), _hhmm(draw(st.integers(first + 1, 1439))))
    return interval(every, window, zone)


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    number = st.integers(low, high).map(str)
    return st.one_of(
        st.just("*"),
        number,
        st.integers(1, max(1, high - 1)).map(lambda n: f"*/{n}"),
        st.lists(st.integers(low, high), min_size=2, max_size=4, unique=True).map(
            lambda values: ",".join(map(str, sorted(values)))),
        st.builds(lambda a, b: f"{min(a, b)}-{max(a, b)}",
                  st.integers(low, high), st.integers(low, high)),
        st.builds(lambda a, b, n: f"{min(a, b)}-{max(a, b)}/{n}",
                  st.integers(low, high), st.integers(low, high), st.integers(1, 6)),
    )


CRON_EXPRESSIONS = st.one_of(
    st.builds(lambda *fields: " ".join(fields), _field(0, 59), _field(0, 23),
              st.one_of(st.just("*"), st.just("*"), _field(1, 31)),
              st.one_of(st.just("*"), st.just("*"), _field(1, 12)),
              st.one_of(st.just("*"), st.just("1-5"), st.just("MON,FRI"), _field(0, 6))),
    st.sampled_from(["@hourly", "@daily", "@weekly", "@monthly", "@yearly",
                     "*/15 * * * *", "30 2 * * *", "0 0 * * 0", "45 1-3 * * 1-5"]),
)


@st.composite
def cron_plans(draw: st.DrawFn, zone: str) -> SchedulePlan:
    expression = draw(CRON_EXPRESSIONS)
    assume(croniter.is_valid(expression))
    return cron(expression, zone)


@st.composite
def instants_near_transitions(draw: st.DrawFn, zone: str) -> datetime:
    """Mostly in the day before a DST change of the zone (so that the 26 hours the oracle
    checks cover it) or within two hours of one; sometimes anywhere."""
    # Explicitly both directions: sampled_from favours the first items, the spring of 2015.
    changes = transitions(zone, forward=draw(st.booleans()))
    kind = draw(st.integers(0, 4))
    if changes and kind < 4:
        base = draw(st.sampled_from(changes))
        minutes = st.integers(-26 * 60, 60) if kind < 2 else st.integers(-120, 120)
        moment = base + timedelta(minutes=draw(minutes))
    else:
        span = (utc(LAST_YEAR, 12, 1) - utc(FIRST_YEAR + 1, 1, 1)) // MINUTE
        moment = utc(FIRST_YEAR + 1, 1, 1) + draw(st.integers(0, span)) * MINUTE
    if draw(st.booleans()):
        moment += timedelta(microseconds=draw(st.integers(1, 59_999_999)))
    return moment


@st.composite
def cases(draw: st.DrawFn) -> tuple[SchedulePlan, datetime]:
    zone = draw(st.sampled_from(ZONES))
    schedule = draw(st.one_of(daily_plans(zone), interval_plans(zone), cron_plans(zone)))
    after = draw(instants_near_transitions(zone))
    if draw(st.booleans()):
        start = after + timedelta(minutes=draw(st.integers(-2 * 1440, 1440)))
        if draw(st.booleans()):
            start = start.astimezone(_zone(zone))  # same instant, the schedule's zone
        schedule = schedule.model_copy(update={"start": start})
    return schedule, after


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None, fold=0)


def _scheduler(schedule: SchedulePlan, lowest: datetime,
               highest: datetime) -> Callable[[datetime], bool]:
    """Whether a naive wall time is one of the schedule's, straight from the definition."""
    if schedule.kind == "daily":
        assert schedule.at is not None
        at = time.fromisoformat(schedule.at)
        return lambda wall: wall.time() == at
    if schedule.kind == "interval":
        assert schedule.every_seconds is not None
        first, last = schedule.window or ("00:00", "23:59")
        low = time.fromisoformat(first).hour * 3600 + time.fromisoformat(first).minute * 60
        high = time.fromisoformat(last).hour * 3600 + time.fromisoformat(last).minute * 60
        every = schedule.every_seconds

        def in_window(wall: datetime) -> bool:
            second = wall.hour * 3600 + wall.minute * 60 + wall.second
            return low <= second <= high and (second - low) % every == 0

        return in_window
    assert schedule.cron is not None
    walls: set[datetime] = set()
    search = croniter(schedule.cron, lowest - MICRO)
    while True:
        try:
            wall = search.get_next(datetime)
        except ValueError:  # never fires
            break
        if wall > highest:
            break
        walls.add(wall)
    return walls.__contains__


def brute_force(schedule: SchedulePlan, after: datetime, until: datetime) -> list[datetime]:
    """The ticks in (after, until], minute by minute in UTC: an instant is a tick when its
    wall time is scheduled and seen for the first time, or when it is the end of a jump over
    a scheduled wall time."""
    zone = _zone(schedule.timezone)
    # The wall times of (after, until] and of the jumps in it: jumps are at most an hour.
    scheduled = _scheduler(schedule, _wall(after, zone) - timedelta(hours=3),
                           _wall(until, zone) + timedelta(hours=3))
    start = schedule.start.astimezone(UTC) if schedule.start is not None else None
    moment = (after + MINUTE).replace(second=0, microsecond=0)
    ticks: list[datetime] = []
    while moment <= until:
        local = moment.astimezone(zone)
        wall = local.replace(tzinfo=None, fold=0)
        fires = local.fold == 0 and scheduled(wall)
        previous_offset = (moment - MICRO).astimezone(zone).utcoffset()
        offset = local.utcoffset()
        assert previous_offset is not None and offset is not None
        if offset > previous_offset:  # the clock jumped over [wall - jump, wall)
            missing = wall - (offset - previous_offset)
            while not fires and missing < wall:
                fires = scheduled(missing)
                missing += MINUTE
        if fires and (start is None or moment >= start):
            ticks.append(moment)
        moment += MINUTE
    return ticks


def _is_jump(moment: datetime, zone: ZoneInfo) -> bool:
    before = (moment - MICRO).astimezone(zone).utcoffset()
    now = moment.astimezone(zone).utcoffset()
    assert before is not None and now is not None
    return now > before


@settings(PROPERTY, max_examples=300)
@given(cases())
def test_ticks_match_the_brute_force_oracle(case: tuple[SchedulePlan, datetime]) -> None:
    schedule, after = case
    until = after + timedelta(hours=26)
    expected = brute_force(schedule, after, until)
    assert ticks_between(schedule, after + MICRO, until) == expected
    more = next_ticks(schedule, after, len(expected) + 1)
    assert more[:len(expected)] == expected
    assert len(more) == len(expected) or more[-1] > until


@PROPERTY
@given(cases())
def test_tick_properties(case: tuple[SchedulePlan, datetime]) -> None:
    schedule, after = case
    zone = _zone(schedule.timezone)
    ticks = next_ticks(schedule, after, 40)
    start = schedule.start.astimezone(UTC) if schedule.start is not None else None
    assert all(t.tzinfo is UTC for t in ticks)
    assert all(a < b for a, b in pairwise(ticks))
    assert all(t > after for t in ticks)
    assert start is None or all(t >= start for t in ticks)
    if ticks:
        assert ticks_between(schedule, ticks[0], ticks[-1]) == ticks
        assert ticks_between(schedule, after + MICRO, ticks[-1]) == ticks
        if len(ticks) > 2:
            with pytest.raises(TooManyTicks):
                ticks_between(schedule, ticks[0], ticks[-1], limit=len(ticks) - 1)
        first = previous_tick(schedule, ticks[0])
        if first is None:
            assert start is not None or schedule.kind == "cron"
        else:
            assert first <= after and (start is None or first >= start)
            assert next_ticks(schedule, first, 1) == ticks[:1]
    assert [previous_tick(schedule, t) for t in ticks[1:]] == ticks[:-1]
    if schedule.kind == "interval":
        first_time, last_time = schedule.window or ("00:00", "23:59")
        for tick in ticks:
            if not _is_jump(tick, zone):
                wall = _wall(tick, zone).time()
                assert time.fromisoformat(first_time) <= wall <= time.fromisoformat(last_time)
    if schedule.kind == "daily":
        days = [tick.astimezone(zone).date() for tick in ticks]
        assert all(b - a == timedelta(days=1) for a, b in pairwise(days))


@PROPERTY
@given(cases(), st.one_of(st.integers(-3 * 1440, 3 * 1440), st.just(0)))
def test_previous_tick_is_the_last_before(case: tuple[SchedulePlan, datetime],
                                           shift: int) -> None:
    schedule, after = case
    before = after + shift * MINUTE
    found = previous_tick(schedule, before)
    following = next_ticks(schedule, found if found is not None else utc(FIRST_YEAR, 1, 1), 1)
    if found is None:
        assert not following or following[0] >= before
    else:
        assert found < before
        assert schedule.start is None or found >= schedule.start
        assert not following or following[0] >= before
        assert next_ticks(schedule, found - MICRO, 1) == [found]


def test_one_daily_tick_per_local_day_over_years() -> None:
    for zone in ZONES:
        for at in ("00:00", "00:30", "01:30", "02:00", "02:30", "02:45", "03:00", "23:30"):
            ticks = ticks_between(daily(at, zone), utc(FIRST_YEAR, 1, 1), utc(LAST_YEAR, 1, 1))
            days = [t.astimezone(_zone(zone)).date() for t in ticks]
            assert days[1:] == [d + timedelta(days=1) for d in days[:-1]], (zone, at)
            assert len(ticks) >= (date(LAST_YEAR, 1, 1) - date(FIRST_YEAR, 1, 1)).days - 1
