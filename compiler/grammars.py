"""The small grammars that workflow files, the daemon and the command line share: e-mail
addresses, durations and `--param K=V` values. One definition each, so that a value means
the same wherever it is written.

Standard library only: the client commands import it, and their start-up is measured
against the bare cost of a gRPC client (bench/cli.py).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from typing import Final

ParamValue = str | int | float | bool | None

MAX_DURATION_SECONDS: Final = 366 * 86400
_DURATION_RE: Final = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+")
_DURATION_PART_RE: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_LOCAL: Final = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
_EMAIL_RE: Final = re.compile(rf"{_LOCAL}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_HOST_EMAIL_RE: Final = re.compile(rf"{_LOCAL}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")


def is_email_address(text: str, *, host_alone: bool = False) -> bool:
    """The one e-mail address check (workflow files, backfill requests, SMTP settings): an
    address such as team@example.com, at most 254 characters. `host_alone`: a domain
    without a dot is fine too (`flowplan@buildhost`, an SMTP sender on a private network)."""
    pattern = _HOST_EMAIL_RE if host_alone else _EMAIL_RE
    return len(text) <= 254 and pattern.fullmatch(text) is not None


def parse_duration(text: str, *, numbers: bool = True) -> float:
    """Seconds from `30s`, `5m`, `1h30m`, `500ms`, `2d` (and, with `numbers`, plain seconds
    such as `90` or `0.5`). ValueError if it is none of these; the range is the caller's."""
    if numbers:
        try:
            return float(text)
        except ValueError:
            pass
    if not _DURATION_RE.fullmatch(text.strip()):
        raise ValueError(f"'{text}' is not a duration: give seconds (90) or a duration such"
                         " as 30s, 5m or 1h30m")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART_RE.findall(text.strip()))


def duration_option(text: str) -> float:
    """A duration flag (`--timeout`...): seconds (`90`, `0.5`) or the workflow file's
    grammar (`30s`, `5m`, `1h30m`, `500ms`); above 0 and at most 366 days."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds > MAX_DURATION_SECONDS:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a duration: give seconds (90) or a duration such as 30s, 5m or"
            " 1h30m")
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"'{text}': the interval must be positive")
    return seconds


def param_option(text: str) -> tuple[str, ParamValue]:
    """`--param K=V` of `flowplan run` and `flowplan debug`: V as `param_value` reads it."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, got '{text}'")
    return key, param_value(raw)


def param_value(raw: str) -> ParamValue:
    """`raw` as a JSON scalar when it is one, else as written: `5` -> 5, `true` -> True,
    `"5"` -> "5", `abc` -> "abc". Lists and objects, numbers that are not finite and whole
    numbers a double cannot hold exactly (params travel as a protobuf Struct) stay text."""
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= 2**53 else raw
    if isinstance(value, float):
        return value if math.isfinite(value) else raw
    return raw
