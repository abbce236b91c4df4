"""Run and backfill ids: ULID layout in Crockford base32, sortable by creation time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from flowplan.daemon import ids

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + CROCKFORD.index(char)
    return value


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.just(UTC)))
def test_an_id_is_its_milliseconds_and_80_bits_in_26_crockford_digits(now):
    made = ids.run_id(now)
    assert made.startswith("wr_") and len(made) == 29
    value = decode(made[3:])
    assert value == ids._MONOTONIC.last  # every bit of the value, nothing else
    assert value >> 80 >= int(now.timestamp() * 1000)  # equal unless an earlier id was later


def test_ids_made_one_after_another_sort_in_that_order_even_in_one_millisecond():
    now = datetime(2026, 12, 6, tzinfo=UTC)
    made = [ids.backfill_id(now) for _ in range(1000)]
    made += [ids.run_id(now + timedelta(milliseconds=1)) for _ in range(1000)]
    assert [m[3:] for m in made] == sorted(m[3:] for m in made)
    assert len(set(made)) == 2000
