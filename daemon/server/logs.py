"""GetNodeLog: an attempt's log file as contiguous chunks, secrets masked.

Masks keep the length (each secret becomes as many `*`), so offsets are the file's offsets
and a client can resume anywhere. While the attempt may still write, an end of what was read
that could be the start of a secret is held back until the next read, so that a secret
split across two reads is still masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence

from daemon.engine.model import Attempt, AttemptStatus
from daemon.state.store import StateStore

CHUNK = 64 * 1024
FOLLOW_POLL_SECONDS = 0.2  # log growth has no event; status changes wake us at once


def mask_bytes(data: bytes, secrets: Sequence[bytes]) -> bytes:
    for secret in secrets:
        data = data.replace(secret, b"*" * len(secret))
    return data


async def stream_log(store: StateStore, run_id: str, node: str, *, attempt: int, offset: int,
                     follow: bool, secrets: Sequence[bytes], woken: asyncio.Event,
                     closing: asyncio.Event) -> AsyncIterator[tuple[int, bytes, int]]:
    """(offset, data, attempt number) chunks of the attempt's log."""
    chosen = await _attempt(store, run_id, node, attempt, follow=follow, woken=woken,
                            closing=closing)
    if chosen is None or not chosen.log_path:
        return
    position: int | None = None
    while True:
        finished = _finished(store, run_id, node, chosen.number)
        try:
            size = os.path.getsize(chosen.log_path)
        except OSError:
            size = 0
        if position is None:
            position = max(0, size + offset) if offset < 0 else offset
        if size > position:
            with open(chosen.log_path, "rb") as handle:
                handle.seek(position)
                while position < size:
                    data = handle.read(min(CHUNK, size - position))
                    if not data:
                        break
                    if follow and not finished:
                        data = data[:len(data) - _partial_secret(data, secrets)]
                        if not data:
                            break
                    yield position, mask_bytes(data, secrets), chosen.number
                    position += len(data)
        if not follow or finished or closing.is_set():
            return
        woken.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_either(woken, closing), FOLLOW_POLL_SECONDS)


def _partial_secret(data: bytes, secrets: Sequence[bytes]) -> int:
    """The length of the longest end of `data` that begins some secret (0: none)."""
    longest = max((len(s) for s in secrets), default=0)
    for size in range(min(len(data), longest - 1), 0, -1):
        tail = data[-size:]
        if any(s.startswith(tail) for s in secrets):
            return size
    return 0


async def _attempt(store: StateStore, run_id: str, node: str, number: int, *, follow: bool,
                   woken: asyncio.Event, closing: asyncio.Event) -> Attempt | None:
    """The attempt asked for (0: the latest); with `follow`, wait until it exists."""
    while True:
        woken.clear()
        found = store.get_node(run_id, node)
        attempts = found.attempts if found is not None else ()
        if number:
            match = [a for a in attempts if a.number == number]
            if match:
                return match[0]
        elif attempts:
            return attempts[-1]
        if not follow or closing.is_set() or (found is not None and found.status.finished):
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_either(woken, closing), FOLLOW_POLL_SECONDS * 5)


def _finished(store: StateStore, run_id: str, node: str, number: int) -> bool:
    found = store.get_node(run_id, node)
    if found is None:
        return True
    for a in found.attempts:
        if a.number == number:
            return a.status is not AttemptStatus.RUNNING
    return True


async def _either(a: asyncio.Event, b: asyncio.Event) -> None:
    tasks = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
