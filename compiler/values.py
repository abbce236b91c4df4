"""Parsers for the small value languages of a workflow file: durations, times of day,
windows, intervals, time zones, start times, cron expressions and e-mail addresses.

Each raises `PydanticCustomError` whose type is the diagnostic code, so that a pydantic
error can be turned into a diagnostic without guessing.

The grammars the daemon and the command line share with workflow files (e-mail addresses,
durations, `--param K=V`) are in `flowplan.compiler.grammars`, which imports nothing heavy.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

from croniter import croniter
from pydantic_core import PydanticCustomError

from flowplan.compiler.diagnostics import Code, did_you_mean
from flowplan.compiler.grammars import MAX_DURATION_SECONDS, is_email_address, parse_duration

NAME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,99}")
PARAM_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TIME_RE: Final = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_EVERY_RE: Final = re.compile(r"([1-9][0-9]*)(h|m)")
_CRON_MACROS: Final = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily",
                                 "@midnight", "@hourly"})
MAX_EVERY_MINUTES: Final = 1439
MAX_EVERY_HOURS: Final = 23


def _fail(code: Code, message: str, **context: Any) -> PydanticCustomError:
    shown = {k: v[:57] + "..." if isinstance(v, str) and len(v) > 60 else v
             for k, v in context.items()}  # a 5,000-digit value is not echoed whole
    return PydanticCustomError(code.value, message, shown or None)


def name(value: Any) -> str:
    """A workflow or node name: a letter, then letters, digits, `_` or `-` (at most 100)."""
    if not isinstance(value, str):
        raise _fail(Code.WRONG_TYPE, "expected a name (a string)")
    if not NAME_RE.fullmatch(value):
        raise _fail(Code.INVALID_NAME,
                    "'{value}' is not a valid name: use a letter, then letters, digits, '_' or"
                    " '-' (at most 100)", value=value)
    return value


def param_name(value: Any) -> str:
    if not isinstance(value, str) or not PARAM_RE.fullmatch(value):
        raise _fail(Code.INVALID_NAME,
                    "'{value}' is not a valid parameter name: use letters, digits and '_',"
                    " not starting with a digit", value=str(value))
    return value


def env_name(value: Any) -> str:
    """An environment variable's name, as POSIX shells and `os.environ` take it."""
    if not isinstance(value, str) or not ENV_NAME_RE.fullmatch(value):
        raise _fail(Code.INVALID_NAME,
                    "'{value}' is not a valid environment variable name: use letters, digits"
                    " and '_', not starting with a digit", value=str(value))
    return value


def text(value: Any) -> str:
    """A string; an integer is accepted and written in decimal (YAML `--limit: 10`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _fail(Code.WRONG_TYPE, "expected a string, got {kind}; quote it",
                kind=type(value).__name__ if value is not None else "nothing")


def spark_conf_value(value: Any) -> str:
    """A Spark property's value in a spark queue's `conf`: `text`, with a hint for a nested
    mapping or a list, which `--conf key=value` cannot carry and quoting would not mend."""
    if isinstance(value, dict):
        raise _fail(Code.WRONG_TYPE, "expected a string, got a mapping; write each Spark"
                    " property as one full key with a string value, such as"
                    " spark.executor.memory: \"2g\"")
    if isinstance(value, list):
        raise _fail(Code.WRONG_TYPE, "expected a string, got a list; a Spark property's value"
                    " is one string, with Spark's own separator for a list, such as"
                    " spark.jars: \"a.jar,b.jar\"")
    return text(value)


def duration(value: Any) -> float:
    """Seconds from a number (seconds) or a string like `30s`, `10m`, `1h30m`, `500ms`."""
    if isinstance(value, bool):
        raise _fail(Code.INVALID_DURATION, "expected a duration such as 30s, 10m or 1h")
    if isinstance(value, int | float):
        seconds = float(value) if abs(value) <= MAX_DURATION_SECONDS else math.inf
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value, numbers=False)
        except ValueError:
            raise _fail(Code.INVALID_DURATION,
                        "'{value}' is not a duration: use seconds (600) or a string such as"
                        " 30s, 10m, 1h or 1h30m", value=str(value)) from None
    else:
        raise _fail(Code.INVALID_DURATION,
                    "'{value}' is not a duration: use seconds (600) or a string such as 30s,"
                    " 10m, 1h or 1h30m", value=str(value))
    if not 0 <= seconds <= MAX_DURATION_SECONDS:  # also false for NaN
        raise _fail(Code.INVALID_DURATION, "duration must be between 0 and 366 days")
    return seconds


def timeout(value: Any) -> float | None:
    """A duration, or `none` / null for no limit."""
    if value is None or value == "none":
        return None
    seconds = duration(value)
    if seconds == 0:
        raise _fail(Code.INVALID_DURATION, "timeout must be more than 0; use none for no limit")
    return seconds


def time_of_day(value: Any) -> str:
    """`HH:MM`, 24-hour clock."""
    if not isinstance(value, str) or not _TIME_RE.fullmatch(value):
        raise _fail(Code.INVALID_TIME,
                    "'{value}' is not a time of day: use \"HH:MM\" between 00:00 and 23:59"
                    " (quoted)", value=str(value))
    return value


def window_shape(value: Any) -> Any:
    """Before the items are checked: a window is a list of two times."""
    if not isinstance(value, list) or len(value) != 2:
        raise _fail(Code.INVALID_WINDOW, "window must be two times: [\"08:00\", \"20:00\"]")
    return value


def window_order(value: list[str]) -> tuple[str, str]:
    """After the items are checked (each a time of day): the start is before the end."""
    start, end = value
    if start >= end:
        raise _fail(Code.INVALID_WINDOW,
                    "window start {start} is not before its end {end}", start=start, end=end)
    return start, end


def every(value: Any) -> str:
    """`day`, `<N>h` (1..23) or `<N>m` (1..1439)."""
    if value == "day":
        return "day"
    match = _EVERY_RE.fullmatch(value) if isinstance(value, str) else None
    if match and len(match.group(1)) <= 4:  # longer is out of range, and slow to convert
        amount, unit = int(match.group(1)), match.group(2)
        limit = MAX_EVERY_HOURS if unit == "h" else MAX_EVERY_MINUTES
        if amount <= limit:
            return match.group(0)
    raise _fail(Code.INVALID_EVERY,
                "'{value}' is not day, <N>h (1-23) or <N>m (1-1439); use cron for other"
                " periods", value=str(value))


def timezone(value: Any) -> str:
    """An IANA time zone name such as `Europe/Amsterdam` or `UTC`."""
    if isinstance(value, str) and _zone_exists(value):
        return value
    raise _fail(Code.INVALID_TIMEZONE,
                "'{value}' is not an IANA time zone name such as UTC or Europe/Amsterdam",
                value=str(value))


# files of a zone folder that are not zones: `localtime` is the host's own (a plan that
# used it would mean another time on each machine), `posixrules` a default of the library
_HOST_FILES: Final = frozenset({"localtime", "posixrules"})


@lru_cache(maxsize=1024)
def _zone_exists(zone: str) -> bool:
    if not zone or zone.startswith("/") or ".." in zone or (
            zone.rsplit("/", 1)[-1] in _HOST_FILES):
        return False
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # OSError: `Europe`, a folder
        return False
    return True


def finite(value: Any) -> Any:
    """A JSON value without NaN or infinities (which JSON cannot carry)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(Code.INVALID_VALUE, "{value} is not a finite number; quote it for a string",
                    value=str(value))
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


START_YEARS: Final = (1900, 9998)  # a zone's offset must not take the instant off the calendar


def start_time(value: Any) -> str:
    """ISO 8601 date or date-time; without an offset it is read in the schedule's zone."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)  # date-only strings parse too: midnight
        except ValueError:
            pass
        else:
            if START_YEARS[0] <= parsed.year <= START_YEARS[1]:
                return value
            raise _fail(Code.INVALID_START, "start '{value}' is out of range: give a year from"
                        f" {START_YEARS[0]} to {START_YEARS[1]}", value=value)
    raise _fail(Code.INVALID_START,
                "start '{value}' is not an ISO 8601 date-time such as 2026-01-01T00:00:00",
                value=str(value))


_CRON_FIELDS: Final = (("minute", "0-59"), ("hour", "0-23"), ("day-of-month", "1-31"),
                       ("month", "1-12 or jan-dec"), ("day-of-week", "0-7 or sun-sat"))


def cron(value: Any) -> str:
    """A five-field cron expression or a macro such as `@daily`."""
    if isinstance(value, str):
        expression = " ".join(value.split())
        if expression in _CRON_MACROS:
            return expression
        fields = expression.split(" ")
        if len(fields) == 5 and _cron_valid(expression):
            return expression
        if expression.startswith("@"):
            raise _fail(Code.INVALID_CRON, "'{value}' is not a cron macro: give one of "
                        + ", ".join(sorted(_CRON_MACROS)) + did_you_mean(expression,
                                                                          _CRON_MACROS),
                        value=expression)
        if len(fields) != 5:
            raise _fail(Code.INVALID_CRON,
                        "'{value}' has {count} fields; cron takes five (minute hour"
                        " day-of-month month day-of-week, no seconds) such as \"0 2 * * *\"",
                        value=expression, count=len(fields))
        for index, (field, allowed) in enumerate(_CRON_FIELDS):
            alone = " ".join(f if i == index else "*" for i, f in enumerate(fields))
            if not _cron_valid(alone):
                raise _fail(Code.INVALID_CRON, "'{value}': the " + field + " field '{field}'"
                            " is not valid: give " + allowed + ", a list (1,15), a range"
                            " (1-5), a step (*/10) or *", value=expression, field=fields[index])
    raise _fail(Code.INVALID_CRON,
                "'{value}' is not a valid cron expression: five fields (minute hour"
                " day-of-month month day-of-week) such as \"0 2 * * *\"", value=str(value))


@lru_cache(maxsize=4096)
def _cron_valid(expression: str) -> bool:
    return bool(croniter.is_valid(expression))


def email(value: Any) -> str:
    if isinstance(value, str) and is_email_address(value):
        return value
    raise _fail(Code.INVALID_EMAIL,
                "'{value}' is not an e-mail address such as team@example.com", value=str(value))
