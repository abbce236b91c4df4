"""Time as a dependency: the engine and scheduler ask a `Clock`, so tests of retries,
timeouts and schedules run on a `FakeClock` in milliseconds.

A clock also runs blocking work within a time limit (`run_bounded`): the system clock in a
worker thread, so that the event loop goes on; the fake clock inline, as its time stands
still, so that tests step through the engine deterministically.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
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


class FakeClock:
    """A clock that moves only when told: `await clock.advance(30)`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers,
                       (self._now + timedelta(seconds=seconds), next(self._order), future))
        await future

    async def run_bounded(self, function: Callable[[], T], seconds: float) -> T:
        return function()

    @property
    def sleepers(self) -> int:
        return sum(not f.done() for _, _, f in self._sleepers)

    async def settle(self) -> None:
        """Let every task that can run without time passing run."""
        for _ in range(50):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper in deadline order."""
        target = self._now + timedelta(seconds=seconds)
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
            await self.settle()
        self._now = target
        await self.settle()
