"""The durable state store: one SQLite database (database.py) holding runs and their events
(runs.py), the scheduler's cursors, ticks and switches (schedules.py) and backfills
(backfills.py). `StateStore` is all of them over one connection; the daemon, the debug
command and the tests open it from here."""

from __future__ import annotations

from flowplan.daemon.state.backfills import BackfillRows
from flowplan.daemon.state.database import (
    DB_FILE,
    StateError,
    StateWriteError,
    damaged,
    parse_ts,
    ts,
)
from flowplan.daemon.state.runs import ClosedAttempt
from flowplan.daemon.state.schedules import ScheduleRows

__all__ = ["DB_FILE", "ClosedAttempt", "StateError", "StateStore", "StateWriteError", "damaged",
           "parse_ts", "ts"]


class StateStore(BackfillRows, ScheduleRows):
    """Rows for runs, node runs and attempts (and, for the scheduler, ticks and switches;
    and backfills), over one connection: writes one transaction at a time."""
