"""Resource queues: at most `capacity` nodes run at once in a queue, across all runs.

Waiters are grouped by admission lane (a workflow's own runs, or one backfill) and a freed
slot goes to the lanes in turn, first come first served within a lane: a big backfill and
the scheduled runs both progress, neither starves the other. A slot is held for one attempt
only, never during a retry delay.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Hashable

from flowplan.compiler.plan import QueuePlan


class ResourceQueue:
    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.running = 0
        self._waiters: dict[Hashable, deque[asyncio.Future[None]]] = {}
        self._turns: deque[Hashable] = deque()  # lanes with waiters, in serving order

    async def acquire(self, lane: Hashable = None) -> None:
        if self.running < self.capacity and not self._turns:
            self.running += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.get(lane)
        if waiters is None:
            waiters = self._waiters[lane] = deque()
            self._turns.append(lane)
        waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed to us as we were cancelled
            raise

    @property
    def waiting(self) -> int:
        """Attempts waiting for a slot."""
        return sum(1 for waiters in self._waiters.values() for f in waiters if not f.done())

    def take(self) -> None:
        """Count an attempt that is already running (adopted after a restart)."""
        self.running += 1

    def release(self) -> None:
        if not self._hand_over():
            self.running -= 1

    def resize(self, capacity: int) -> None:
        self.capacity = capacity
        while self.running < self.capacity and self._turns:
            self.running += 1
            if not self._hand_over():
                self.running -= 1

    def _hand_over(self) -> bool:
        """Give the slot to the next waiting lane's oldest waiter; False if nobody waits."""
        while self._turns:
            lane = self._turns.popleft()
            waiters = self._waiters[lane]
            while waiters:
                future = waiters.popleft()
                if not future.done():
                    future.set_result(None)  # the slot passes on; `running` is unchanged
                    if waiters:
                        self._turns.append(lane)
                    else:
                        del self._waiters[lane]
                    return True
            del self._waiters[lane]
        return False


def capacity_of(queue: QueuePlan) -> int:
    """A queue's concurrency; a queue without one gets this host's CPU count."""
    return queue.concurrency or os.cpu_count() or 1
