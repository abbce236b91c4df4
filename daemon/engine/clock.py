"""Time as a dependency: the engine and scheduler ask a `Clock`, so tests of retries,
timeouts and schedules run on a fake clock (tests/engine_fakes.py) in milliseconds.

A clock also runs blocking work within a time limit (`run_bounded`): the system clock in a
worker thread, so that the event loop goes on; the fake clock inline, as its time stands
still, so that tests step through the engine deterministically.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...

    async def run_bounded(self, function: Callable[[], T], seconds: float) -> T:
        """`function()`; raises `TimeoutError` when it takes longer than `seconds`."""
        ...


class SystemClock:
    def __init__(self) -> None:
        self._workers: ThreadPoolExecutor | None = None

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def run_bounded(self, function: Callable[[], T], seconds: float) -> T:
        """In a worker thread. A thread cannot be stopped: past the limit, its work finishes
        unused (callers bound the work itself; the limit is the backstop)."""
        if self._workers is None:
            self._workers = ThreadPoolExecutor(2, thread_name_prefix="flowplan-bounded")
        job = asyncio.get_running_loop().run_in_executor(self._workers, function)
        return await asyncio.wait_for(job, seconds)


async def sleep_unless(clock: Clock, seconds: float, event: asyncio.Event) -> None:
    """`clock.sleep(seconds)`, cut short when `event` is set (a cancel, a wake-up)."""
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        waiter.cancel()
