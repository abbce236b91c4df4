"""Resource queues: at most `capacity` nodes run at once in a queue, across all runs.

Waiters are served first come, first served. A slot is held for one attempt only, never
during a retry delay.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque

from compiler.plan import QueuePlan


class ResourceQueue:
    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(not f.done() for f in self._waiters)

    async def acquire(self) -> None:
        if self.running < self.capacity and not self._waiters:
            self.running += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed to us as we were cancelled
            raise

    def take(self) -> None:
        """Count an attempt that is already running (adopted after a restart)."""
        self.running += 1

    def release(self) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)  # the slot passes on; `running` is unchanged
                return
        self.running -= 1

    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        while self.running < self.capacity and self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                self.running += 1
                future.set_result(None)


def capacity_of(queue: QueuePlan) -> int:
    """A queue's concurrency; a queue without one gets this host's CPU count."""
    return queue.concurrency or os.cpu_count() or 1
