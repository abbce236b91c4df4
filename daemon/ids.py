"""Time-sortable unique ids: a prefix, 48 bits of milliseconds, 80 random bits (ULID layout,
Crockford base32), so that ids sort by creation time as text."""

from __future__ import annotations

import secrets
from datetime import datetime

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class _Monotonic:
    """Ids made one after another sort in that order, even within one millisecond: the
    next id counts up from the last one, as the ULID spec's monotonic mode does."""

    def __init__(self) -> None:
        self.last = 0

    def next(self, millis: int) -> int:
        value = (millis << 80) | secrets.randbits(80)
        if value <= self.last:
            value = self.last + 1
        self.last = value
        return value


_MONOTONIC = _Monotonic()


# two base32 digits at a time: a backfill makes up to 100,000 ids in one call
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)
_SHIFTS = tuple(range(120, -1, -10))  # 26 digits = 130 bits, the top two always 0


def new_id(prefix: str, now: datetime) -> str:
    value = _MONOTONIC.next(int(now.timestamp() * 1000))
    return prefix + "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def run_id(now: datetime) -> str:
    return new_id("wr_", now)


def backfill_id(now: datetime) -> str:
    return new_id("bf_", now)
