"""When a schedule fires: pure functions from a `SchedulePlan` to its ticks.

Time is always an argument, never read from the system. Every returned datetime is an
aware UTC instant; every datetime argument must be aware (a naive one is a `ValueError`).

The contract, for a schedule whose wall times are in `schedule.timezone`:

- `daily`: one tick per local calendar day, at the wall time `at`.
- `interval`: per local day, the wall times `window[0] + k * every_seconds` for k = 0, 1, ...
  up to and including `window[1]`. The window never crosses midnight (the compiler requires
  start < end and writes the whole day, `("00:00", "23:59")`, when the workflow has no
  window; a plan without a window is read the same way), so the count restarts at
  `window[0]` every day.
- `cron`: the wall times croniter gives for the expression (five fields or a macro such as
  `@daily`; day-of-month and day-of-week combine with OR, as in Vixie cron), computed on
  naive wall times and converted to instants here, so the rules below hold for cron too.
- DST, for every kind: a wall time that does not exist (the clock jumps over it) fires once,
  at the first instant after it (02:30 on Europe/Amsterdam's spring-forward day fires at
  03:00 CEST); several missing wall times that lead to the same instant fire once. A wall time
  that occurs twice (the clock goes back) fires once, at its first occurrence: the repeated
  stretch of an hourly or minutely schedule has no ticks of its own.
- No tick before `schedule.start` (a tick exactly at `start` counts).
- Ticks are strictly increasing, with no duplicates.
- The calendar ends at 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z: a wall time whose
  instant lies outside that has no tick, and an argument outside it (an aware datetime with an
  offset, such as 0001-01-01T00:00+01:00) bounds the ticks as the instant it names would.

The work is done per local day (daily, interval) or per cron wall time, never minute by
minute: 10,000 daily ticks take a few milliseconds.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import MINYEAR, UTC, datetime, time, timedelta
from functools import lru_cache
from itertools import chain, islice
from typing import Final, cast
from zoneinfo import ZoneInfo

from croniter import croniter

from flowplan.compiler.plan import SchedulePlan

__all__ = ["TooManyTicks", "iter_ticks", "next_ticks", "previous_tick", "ticks_between"]

_DAY: Final = timedelta(days=1)
_RESOLUTION: Final = timedelta(microseconds=1)
_SECOND: Final = timedelta(seconds=1)
_WHOLE_DAY: Final = ("00:00", "23:59")  # what the compiler writes for an interval without window
_FIRST: Final = datetime.min.replace(tzinfo=UTC)  # the calendar's first instant (or wall time)
_LAST: Final = datetime.max.replace(tzinfo=UTC)
_CYCLE_YEARS: Final = 400  # the Gregorian calendar, weekdays included, repeats after 400 years

# The offset of a wall time (a naive datetime; `fold` picks the occurrence) in a zone.
# ZoneInfo.utcoffset reads the wall fields only, so no `replace(tzinfo=...)` is needed.
_offset = cast(Callable[[ZoneInfo, datetime], timedelta], ZoneInfo.utcoffset)


class TooManyTicks(ValueError):  # noqa: N818 - the name callers know
    """A range holds more ticks than the caller allows."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} ticks in the range")
        self.limit = limit


def iter_ticks(schedule: SchedulePlan, after: datetime) -> Iterator[datetime]:
    """The ticks strictly after `after`, increasing. Endless, except for a cron expression
    that never fires again (or the end of the calendar)."""
    return _ticks_after(schedule, _bound(after))


def next_ticks(schedule: SchedulePlan, after: datetime, n: int) -> list[datetime]:
    """The first `n` ticks strictly after `after` (fewer only if the schedule ends)."""
    if n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    return list(islice(iter_ticks(schedule, after), n))


def ticks_between(schedule: SchedulePlan, start: datetime, end: datetime, *,
                  limit: int | None = None) -> list[datetime]:
    """The ticks t with start <= t <= end, increasing. Raises `TooManyTicks` as soon as more
    than `limit` ticks are found (the rest is never computed)."""
    last = _bound(end)
    if last is None:  # `end` is before the calendar's first instant
        return []
    ticks: list[datetime] = []
    for tick in _ticks_after(schedule, _floor_from(start)):
        if tick > last:
            break
        if limit is not None and len(ticks) >= limit:
            raise TooManyTicks(limit)
        ticks.append(tick)
    return ticks


def previous_tick(schedule: SchedulePlan, before: datetime) -> datetime | None:
    """The last tick strictly before `before`, or None when there is none (before `start`,
    or a cron expression that never fired)."""
    zone = _zone(schedule.timezone)
    ceiling = _bound(before)
    start = _bound(schedule.start) if schedule.start is not None else None
    if ceiling is None or (start is not None and ceiling <= start):
        return None
    try:
        local = ceiling.astimezone(zone)
    except OverflowError:  # the zone's wall clock is past an end of the calendar there
        if ceiling.year == MINYEAR:
            return None  # every wall time's instant is after `before`
        local = _LAST  # no schedule fires at the last wall time's fraction of a second
    top = _tagged(local)
    if local.fold:
        # `before` is in the second pass of a repeated stretch: the first occurrences of the
        # wall times up to the stretch's end came before it.
        top += _offset(zone, top) - _offset(zone, local)
    for wall in _walls_before(schedule, top):
        try:
            instant = _instant(wall, zone)
        except OverflowError:  # the wall time's instant is past an end of the calendar
            if wall.year == MINYEAR:
                return None
            continue
        if instant < ceiling:
            return instant if start is None or instant >= start else None
    return None


def _ticks_after(schedule: SchedulePlan, floor: datetime | None) -> Iterator[datetime]:
    """The ticks strictly after the instant `floor` (None: from the calendar's first instant
    on), and not before `schedule.start`."""
    if schedule.start is not None:
        start = _floor_from(schedule.start)
        if start is not None and (floor is None or start > floor):
            floor = start
    zone = _zone(schedule.timezone)
    if floor is None:
        return _instants_after(_walls_from_first(schedule), zone, None)
    try:
        local = floor.astimezone(zone)
    except OverflowError:  # the zone's wall clock is past an end of the calendar there
        if floor.year == MINYEAR:  # every wall time is later than `floor`'s
            return _instants_after(_walls_from_first(schedule), zone, floor)
        return iter(())  # no wall time is later
    return _instants_after(_walls_after(schedule, _tagged(local)), zone, floor)


# --- wall times -> instants ------------------------------------------------------------------
#
# A wall time is carried as a datetime whose fields are the local wall clock and whose tzinfo
# is UTC (a "tagged" wall time): ZoneInfo.utcoffset reads the fields only, and `wall - offset`
# is then directly the aware UTC instant, with no `replace` on the hot path.

@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _bound(moment: datetime) -> datetime | None:
    """`moment` as a UTC instant to bound ticks by: None when it is before the calendar's
    first instant, the calendar's last when it is after it (no tick is that late)."""
    if moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone; give an aware datetime")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # within a day of an end of the calendar: the year says which
        return None if moment.year == MINYEAR else _LAST


def _floor_from(moment: datetime) -> datetime | None:
    """The floor of the ticks from `moment` on, it included: the instant just before it
    (None: the calendar has none)."""
    instant = _bound(moment)
    return None if instant is None or instant == _FIRST else instant - _RESOLUTION


def _tagged(wall: datetime) -> datetime:
    """A naive (or local) wall time as a tagged wall time."""
    return wall.replace(tzinfo=UTC, fold=0)


def _instants_after(walls: Iterator[datetime], zone: ZoneInfo,
                    floor: datetime | None) -> Iterator[datetime]:
    """The distinct instants of increasing tagged wall times that come after `floor` (None:
    any). The mapping is monotone, so comparing with the last instant given drops the
    duplicates."""
    last = floor
    for wall in walls:
        try:
            instant = _instant(wall, zone)
        except OverflowError:  # the wall time's instant is past an end of the calendar
            if wall.year == MINYEAR:
                continue
            return
        if last is None or instant > last:
            last = instant
            yield instant


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a tagged wall time fires at: its first occurrence when the clock passes
    it twice, the first instant after it when the clock jumps over it."""
    offset = _offset(zone, wall)  # fold 0: the offset before a transition
    instant = wall - offset
    # Read back, the instant shows the same offset unless `wall` is in a gap: then the
    # instant is past the jump and shows the offset after it.
    if _offset(zone, instant.astimezone(zone)) != offset:
        return _gap_end(wall, zone)
    return instant


def _gap_end(wall: datetime, zone: ZoneInfo) -> datetime:
    """The first instant whose wall time is not earlier than the tagged `wall`, which is in a
    gap: the instant of the jump.

    Read with the offset after the jump, `wall` is an instant before it; read with the
    offset before, one after it. Zone transitions fall on whole seconds, so a binary search
    over the seconds in between finds the jump exactly.
    """
    before = _offset(zone, wall)
    after = _offset(zone, wall.replace(fold=1))
    low = wall - after
    low_seconds, high_seconds = 0, int((after - before) / _SECOND)
    while high_seconds - low_seconds > 1:
        middle = (low_seconds + high_seconds) // 2
        moment = low + middle * _SECOND
        if _tagged(moment.astimezone(zone)) >= wall:
            high_seconds = middle
        else:
            low_seconds = middle
    return low + high_seconds * _SECOND


# --- the wall times of a schedule ------------------------------------------------------------

def _walls_after(schedule: SchedulePlan, wall: datetime) -> Iterator[datetime]:
    """The schedule's tagged wall times strictly after the tagged `wall`, increasing."""
    if schedule.kind == "cron":
        return _cron_walls(_cron(schedule), wall, forward=True)
    return _day_walls_after(_times_of_day(schedule), wall)


def _walls_before(schedule: SchedulePlan, wall: datetime) -> Iterator[datetime]:
    """The schedule's tagged wall times strictly before the tagged `wall`, decreasing."""
    if schedule.kind == "cron":
        return _cron_walls(_cron(schedule), wall, forward=False)
    return _day_walls_before(_times_of_day(schedule), wall)


def _walls_from_first(schedule: SchedulePlan) -> Iterator[datetime]:
    """The schedule's tagged wall times from the calendar's first on (it included),
    increasing."""
    # No earlier wall time to count from: whether the schedule fires at the first is read
    # 400 years on, where the calendar is the same.
    same = _FIRST.replace(year=MINYEAR + _CYCLE_YEARS)
    later = _walls_after(schedule, _FIRST)
    if next(_walls_after(schedule, same - _RESOLUTION), None) == same:
        return chain((_FIRST,), later)
    return later


def _cron(schedule: SchedulePlan) -> str:
    if not schedule.cron:
        raise ValueError("a cron schedule without a cron expression")
    return schedule.cron


def _cron_walls(expression: str, wall: datetime, *, forward: bool) -> Iterator[datetime]:
    # croniter on naive datetimes is pure wall-clock arithmetic: no zone, no DST, so it
    # neither fires twice in a repeated hour nor skips the wall times of a gap.
    # It counts in float seconds, which lose the microseconds far from 1970: it starts from a
    # whole second instead, the same bound for cron's whole-minute wall times.
    start = wall.replace(tzinfo=None, microsecond=0)
    if wall.microsecond and not forward:
        with suppress(OverflowError):  # 9999-12-31T23:59:59 is no minute's wall time
            start += _SECOND
    walls = croniter(expression, start)
    step = walls.get_next if forward else walls.get_prev
    while True:
        try:
            yield _tagged(cast(datetime, step(datetime)))
        except (ValueError, OverflowError):
            # CroniterBadDateError (a ValueError): no such date within croniter's search
            # horizon, e.g. "0 0 30 2 *"; ValueError/OverflowError: past year 1 or 9999.
            return


def _times_of_day(schedule: SchedulePlan) -> tuple[timedelta, ...]:
    if schedule.kind == "daily":
        if schedule.at is None:
            raise ValueError("a daily schedule without `at`")
        return _daily_times(schedule.at)
    if not schedule.every_seconds or schedule.every_seconds <= 0:
        raise ValueError("an interval schedule needs a positive `every_seconds`")
    window = schedule.window if schedule.window is not None else _WHOLE_DAY
    return _interval_times(schedule.every_seconds, window[0], window[1])


@lru_cache(maxsize=1024)
def _daily_times(at: str) -> tuple[timedelta, ...]:
    return (_since_midnight(at),)


@lru_cache(maxsize=1024)
def _interval_times(every_seconds: int, first: str, last: str) -> tuple[timedelta, ...]:
    start, end = _since_midnight(first), _since_midnight(last)
    if end < start:
        raise ValueError(f"window start {first} is after its end {last}")
    step = timedelta(seconds=every_seconds)
    count = (end - start) // step + 1
    return tuple(start + k * step for k in range(count))


def _since_midnight(value: str) -> timedelta:
    parsed = time.fromisoformat(value)
    return timedelta(hours=parsed.hour, minutes=parsed.minute, seconds=parsed.second)


def _day_walls_after(times: tuple[timedelta, ...], wall: datetime) -> Iterator[datetime]:
    day = datetime.combine(wall.date(), time(), UTC)
    for since_midnight in times[bisect_right(times, wall - day):]:
        yield day + since_midnight
    try:
        while True:
            day += _DAY
            for since_midnight in times:
                yield day + since_midnight
    except OverflowError:
        return


def _day_walls_before(times: tuple[timedelta, ...], wall: datetime) -> Iterator[datetime]:
    day = datetime.combine(wall.date(), time(), UTC)
    for since_midnight in reversed(times[:bisect_left(times, wall - day)]):
        yield day + since_midnight
    try:
        while True:
            day -= _DAY
            for since_midnight in reversed(times):
                yield day + since_midnight
    except OverflowError:
        return
