"""Log chunks served by GetNodeLog: masks keep offsets, and a secret split across two reads
of a growing log is still masked."""

from __future__ import annotations

from daemon.server.logs import _partial_secret, mask_bytes


def test_masks_keep_the_length() -> None:
    assert mask_bytes(b"token=t0ps3cret;", [b"t0ps3cret"]) == b"token=*********;"


def test_a_possible_start_of_a_secret_is_held_back() -> None:
    secrets = [b"t0ps3cret"]
    assert _partial_secret(b"token=t0ps", secrets) == 4  # wait: it may be the secret
    assert _partial_secret(b"started\n", secrets) == 0  # nothing held back
    assert _partial_secret(b"t0ps3cre", secrets) == 8
    assert _partial_secret(b"anything", []) == 0
    first = b"token=t0ps"
    kept = first[:len(first) - _partial_secret(first, secrets)]
    rest = first[len(kept):] + b"3cret\n"
    assert mask_bytes(kept, secrets) + mask_bytes(rest, secrets) == b"token=*********\n"
