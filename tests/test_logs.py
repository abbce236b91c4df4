"""Log chunks served by GetNodeLog: masking is defined on the whole log, so what a client
gets for [offset, end) is the whole log's mask there, whatever the chunking, the offset it
starts at and the pieces in which a running attempt writes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flowplan.daemon.server.logs import Reader, _partial_secret, mask_bytes, read_masked

PROPERTY = settings(max_examples=300, deadline=None)
ALPHABET = b"ab*\n"  # few letters: secrets overlap, repeat and straddle often


def reference_mask(data: bytes, secrets: list[bytes]) -> bytes:
    """By definition: a byte is `*` when some occurrence of some secret covers it."""
    covered = [False] * len(data)
    for secret in secrets:
        for start in range(len(data) - len(secret) + 1):
            if data[start:start + len(secret)] == secret:
                covered[start:start + len(secret)] = [True] * len(secret)
    return bytes(ord("*") if c else b for b, c in zip(data, covered, strict=True))


def reader(log: bytes) -> Reader:
    return lambda offset, size: log[offset:offset + size]


def test_masks_keep_the_length() -> None:
    assert mask_bytes(b"token=t0ps3cret;", [b"t0ps3cret"]) == b"token=*********;"


def test_overlapping_secrets_are_both_masked() -> None:
    # masking one secret first must not leave the rest of an overlapping one in clear
    assert mask_bytes(b"xabcdefx", [b"abcd", b"cdef"]) == b"x******x"
    assert mask_bytes(b"aaaa", [b"aaa"]) == b"****"


def test_a_possible_start_of_a_secret_is_held_back() -> None:
    secrets = [b"t0ps3cret"]
    assert _partial_secret(b"token=t0ps", secrets) == 4  # wait: it may be the secret
    assert _partial_secret(b"started\n", secrets) == 0  # nothing held back
    assert _partial_secret(b"t0ps3cre", secrets) == 8
    assert _partial_secret(b"anything", []) == 0


def test_a_secret_straddling_a_chunk_boundary_or_an_offset_is_masked() -> None:
    log = b"A" * 10 + b"t0ps3cret" + b"B" * 10
    chunks = list(read_masked(reader(log), 0, len(log), finished=True,
                              secrets=[b"t0ps3cret"], chunk=14))
    assert [offset for offset, _ in chunks] == [0, 14, 28]
    assert b"".join(data for _, data in chunks) == b"A" * 10 + b"*" * 9 + b"B" * 10
    inside = list(read_masked(reader(log), 15, len(log), finished=True,
                              secrets=[b"t0ps3cret"]))
    assert inside == [(15, b"****" + b"B" * 10)]


SECRETS = st.lists(st.binary(min_size=1, max_size=6).map(
    lambda b: bytes(ALPHABET[x % len(ALPHABET)] for x in b)), min_size=0, max_size=3)


@PROPERTY
@given(secrets=SECRETS, data=st.data())
def test_mask_bytes_masks_every_byte_of_every_occurrence(secrets: list[bytes],
                                                         data: st.DataObject) -> None:
    log = data.draw(st.lists(st.sampled_from([*secrets, b"a", b"b", b"\n"]), max_size=30)
                    .map(b"".join))
    assert mask_bytes(log, secrets) == reference_mask(log, secrets)


@PROPERTY
@given(secrets=SECRETS, data=st.data())
def test_any_chunking_growth_and_offset_serve_the_whole_logs_mask(
        secrets: list[bytes], data: st.DataObject) -> None:
    log = data.draw(st.lists(st.sampled_from([*secrets, b"a", b"b", b"*"]), max_size=40)
                    .map(b"".join))
    chunk = data.draw(st.integers(1, 12), label="chunk")
    offset = data.draw(st.integers(0, len(log) + 2), label="offset")
    sizes = sorted(data.draw(st.lists(st.integers(0, len(log)), max_size=6), label="growth"))
    expected = reference_mask(log, secrets)
    handle = reader(log)
    served, position = bytearray(), offset
    # a running attempt's file at each size it had when read, then the attempt's end
    for size, finished in [*((s, False) for s in sizes), (len(log), True)]:
        for start, piece in read_masked(handle, position, size, finished=finished,
                                        secrets=secrets, chunk=chunk):
            assert start == position and 0 < len(piece) <= chunk  # contiguous, bounded
            assert piece == expected[start:start + len(piece)]  # never unmasked, even early
            served += piece
            position = start + len(piece)
    assert bytes(served) == expected[offset:]
