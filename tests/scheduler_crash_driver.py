"""A scheduler process for tests/test_scheduler.py, killed between steps on purpose.

`python scheduler_crash_driver.py STATE kill-before-run`: three ticks are due; the process
SIGKILLs itself right after their commit, before the first run is created.
`python scheduler_crash_driver.py STATE restart`: recovers and lets the runs finish.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from scheduling_harness import Catalog, World

CURSOR = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 5, 1, 12, 3, 10, tzinfo=UTC)


async def main(state: Path, mode: str) -> None:
    catalog = Catalog()
    catalog.publish("name: w\nschedule: {every: 1m, timezone: UTC, catchup: all}\n"
                    "nodes:\n  - {name: a, command: a}\n")
    world = World(state.parent, NOW, catalog=catalog)
    if mode == "kill-before-run":
        world.store.record_ticks("w", [], considered_until=CURSOR, at=CURSOR)

        def killed(*args: object, **kwargs: object) -> None:
            os.kill(os.getpid(), signal.SIGKILL)

        world.engine.create_run = killed  # type: ignore[method-assign, assignment]
    await world.start(loop=False)
    world.scheduler.tick(NOW)
    await world.clock.advance(10)
    await world.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
