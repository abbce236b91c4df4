"""A fake clock and a scripted launcher for engine tests: no processes, no sleeping."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from flowplan.daemon.engine.launcher import LaunchSpec, Recovered

T = TypeVar("T")


class FakeClock:
    """A clock that moves only when told: `await clock.advance(30)`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.render_seconds = 0.0  # how long `run_bounded` work (a node's templates) takes

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
        await self.sleep(self.render_seconds)
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


@dataclass
class Behaviour:
    """What one attempt does: exit with `code` after `seconds`, or hang until killed."""

    code: int = 0
    seconds: float = 1.0
    hang: bool = False
    ignore_term: bool = False


class FakeProcess:
    def __init__(self, clock: FakeClock, behaviour: Behaviour, pid: int) -> None:
        self.pid = pid
        self.signals: list[int] = []
        self._clock = clock
        self._behaviour = behaviour
        self._killed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def wait(self) -> int:
        if self._behaviour.hang:
            return await self._killed
        sleeper = asyncio.ensure_future(self._clock.sleep(self._behaviour.seconds))
        await asyncio.wait({sleeper, self._killed}, return_when=asyncio.FIRST_COMPLETED)
        if self._killed.done():
            sleeper.cancel()
            return self._killed.result()
        return self._behaviour.code

    def signal_group(self, signum: int) -> None:
        self.signals.append(signum)
        if signum == signal.SIGTERM and self._behaviour.ignore_term:
            return
        if not self._killed.done():
            self._killed.set_result(128 + signum)


@dataclass
class FakeLauncher:
    clock: FakeClock
    scripts: dict[str, list[Behaviour]] = field(default_factory=dict)
    launches: list[tuple[str, float]] = field(default_factory=list)  # (node, at seconds)
    processes: dict[str, list[FakeProcess]] = field(default_factory=dict)
    running: int = 0
    peak: int = 0
    adopt: Behaviour | None = None  # recover(): a process left running, doing this; else lost
    _pids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    async def launch(self, spec: LaunchSpec) -> FakeProcess:
        node = spec.attempt_dir.parent.name
        script = self.scripts.get(node, [])
        attempt = len(self.processes.get(node, []))
        behaviour = script[attempt] if attempt < len(script) else Behaviour()
        process = FakeProcess(self.clock, behaviour, next(self._pids))
        self.processes.setdefault(node, []).append(process)
        self.launches.append((node, self.clock.now().timestamp()))
        return self._counted(process)

    def _counted(self, process: FakeProcess) -> FakeProcess:
        self.running += 1
        self.peak = max(self.peak, self.running)
        original = process.wait

        async def counted() -> int:
            try:
                return await original()
            finally:
                self.running -= 1

        process.wait = counted  # type: ignore[method-assign]
        return process

    def recover(self, attempt_dir: Path, pid: int | None, pid_start: int | None) -> Recovered:
        if self.adopt is None:
            return Recovered(lost=True)
        process = self._counted(FakeProcess(self.clock, self.adopt, pid or next(self._pids)))
        return Recovered(handle=process, pid=process.pid)
