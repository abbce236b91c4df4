"""GetNodeLog: an attempt's log file as contiguous chunks, secrets masked.

Masking is defined on the whole log: a byte is shown as `*` when it lies inside any
occurrence of any secret (occurrences may overlap), whatever the chunking and wherever the
client starts. Masks keep the length, so offsets are the file's offsets and a client can
resume anywhere. Each chunk is masked with up to the longest secret's length (less one) of
context read on either side; while the attempt may still write, an end of the file that
could be the start of a secret is held back until it is complete or the attempt ends.

The log file is opened for each chunk and closed before the chunk is handed on: a stream to
a slow reader (a client that does not read, waiting in gRPC's flow control) holds no file
descriptor while it waits, however many such streams there are.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import grpc

from flowplan.daemon.domain import Attempt, AttemptStatus
from flowplan.daemon.server.errors import RequestError
from flowplan.daemon.state.store import StateStore

CHUNK = 64 * 1024
FOLLOW_POLL_SECONDS = 0.2  # log growth has no event; status changes wake us at once
Reader = Callable[[int, int], bytes]  # (offset, size) -> at most size bytes from there


def mask_bytes(data: bytes, secrets: Sequence[bytes]) -> bytes:
    """`data` with every byte inside an occurrence of a secret replaced by `*`."""
    out: bytearray | None = None
    for secret in secrets:
        if not secret:
            continue
        start = data.find(secret)
        while start != -1:
            if out is None:
                out = bytearray(data)
            out[start:start + len(secret)] = b"*" * len(secret)
            start = data.find(secret, start + 1)
    return data if out is None else bytes(out)


async def stream_log(store: StateStore, run_id: str, node: str, *, attempt: int, offset: int,
                     follow: bool, secrets: Sequence[bytes], woken: asyncio.Event,
                     closing: asyncio.Event) -> AsyncIterator[tuple[int, bytes, int]]:
    """(offset, data, attempt number) chunks of the attempt's log: for any `offset` and any
    growth of the file, the bytes at [o, o + len(data)) are those of `mask_bytes` of the
    whole log, and a chunk's offset is the previous chunk's offset plus its size."""
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
            for start, data in read_masked(file_reader(chosen.log_path), position, size,
                                           finished=finished, secrets=secrets):
                yield start, data, chosen.number
                position = start + len(data)
        if not follow or finished or closing.is_set():
            return
        woken.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_either(woken, closing), FOLLOW_POLL_SECONDS)


def file_reader(path: str | Path) -> Reader:
    """Reads of `path`, each opening and closing it (no descriptor kept between reads)."""

    def read(offset: int, size: int) -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)

    return read


def read_masked(read: Reader, position: int, size: int, *, finished: bool,
                secrets: Sequence[bytes], chunk: int = CHUNK) -> Iterator[tuple[int, bytes]]:
    """(offset, masked data) chunks of the file's bytes [position, size) (`read` reads it),
    each as in `mask_bytes` of the whole file. Unless the writer has `finished`, an end that
    could be the start of a secret is left out (the next call, with a larger size, goes on
    there)."""
    margin = max((len(s) for s in secrets), default=1) - 1  # the context a byte's mask needs
    while position < size:
        lo = max(0, position - margin)
        window = read(lo, min(size, position + chunk + margin) - lo)
        end = min(position + chunk, lo + len(window))
        if not finished and lo + len(window) < position + chunk + margin:
            # the window holds the end of what was written: a secret may go on after it
            end = min(end, lo + len(window) - _partial_secret(window, secrets))
        if end <= position:
            return
        yield position, mask_bytes(window, secrets)[position - lo:end - lo]
        position = end


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
    """The attempt asked for (0: the latest; None: the node has none yet). With `follow`,
    wait until it exists: the node's first attempt, or the one after its last. A number it
    has not and will not have, or has not yet without `follow`, is NOT_FOUND."""
    while True:
        woken.clear()
        found = store.get_node(run_id, node)
        attempts = found.attempts if found is not None else ()
        finished = found is None or found.status.finished
        if number:
            match = [a for a in attempts if a.number == number]
            if match:
                return match[0]
            last = attempts[-1].number if attempts else 0
            if not follow or finished or number > last + 1:
                raise _no_attempt(run_id, node, number, last, finished=finished)
        elif attempts:
            return attempts[-1]
        elif not follow or finished:
            return None
        if closing.is_set():
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_either(woken, closing), FOLLOW_POLL_SECONDS * 5)


def _no_attempt(run_id: str, node: str, number: int, last: int, *, finished: bool
                ) -> RequestError:
    has = f"its last attempt is {last}" if last else "it has none"
    if not finished and number == last + 1:
        has += "; with follow set, the call waits for it"
    return RequestError(f"node '{node}' of run {run_id} has no attempt {number}: {has}",
                        field="attempt", code=grpc.StatusCode.NOT_FOUND)


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
