"""What the scheduler keeps: the cursor up to which each workflow's ticks are dealt with, the
recorded ticks, and the scheduling switches."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from flowplan.daemon.domain import RunStatus
from flowplan.daemon.state.database import Database, parse_ts, ts


class ScheduleRows(Database):
    """Scheduling cursors, ticks and switches."""

    def schedule_cursor(self, workflow: str) -> datetime | None:
        """The instant up to which the scheduler has dealt with `workflow`'s ticks."""
        row = self._db.execute("SELECT considered_until FROM schedule_cursors WHERE workflow = ?",
                               (workflow,)).fetchone()
        return None if row is None else parse_ts(row[0])

    def record_ticks(self, workflow: str, ticks: Sequence[tuple[datetime, str | None]], *,
                     considered_until: datetime, at: datetime) -> None:
        """Ticks (with the id of the run each will create, or None when skipped) and the new
        cursor, in one commit: the intent, recorded before any run is created."""
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO ticks (workflow, logical_time, run_id,"
                           " recorded_at) VALUES (?,?,?,?)",
                           [(workflow, ts(t), run_id, ts(at)) for t, run_id in ticks])
            db.execute("INSERT INTO schedule_cursors (workflow, considered_until) VALUES (?, ?)"
                       " ON CONFLICT (workflow) DO UPDATE SET considered_until ="
                       " excluded.considered_until", (workflow, ts(considered_until)))

    def ticks_without_runs(self) -> list[tuple[str, datetime, str]]:
        """Recorded ticks whose run was never created (a crash between the two commits)."""
        rows = self._db.execute(
            "SELECT t.workflow, t.logical_time, t.run_id FROM ticks t LEFT JOIN runs r"
            " ON r.run_id = t.run_id WHERE t.run_id IS NOT NULL AND r.run_id IS NULL"
            " ORDER BY t.workflow, t.logical_time").fetchall()
        return [(r[0], parse_ts(r[1]), r[2]) for r in rows]  # type: ignore[misc]

    def switch(self, workflow: str) -> tuple[bool, bool] | None:
        """The scheduling switch `(enabled, enabled in git when last synced)`, if recorded."""
        row = self._db.execute("SELECT enabled, git_enabled FROM scheduling_switches"
                               " WHERE workflow = ?", (workflow,)).fetchone()
        return None if row is None else (bool(row[0]), bool(row[1]))

    def set_switch(self, workflow: str, *, enabled: bool, git_enabled: bool, at: datetime
                   ) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO scheduling_switches (workflow, enabled, git_enabled,"
                       " changed_at) VALUES (?,?,?,?) ON CONFLICT (workflow) DO UPDATE SET"
                       " enabled = excluded.enabled, git_enabled = excluded.git_enabled,"
                       " changed_at = excluded.changed_at",
                       (workflow, int(enabled), int(git_enabled), ts(at)))

    def latest_statuses(self, workflow: str, start: datetime, end: datetime
                        ) -> dict[datetime, tuple[RunStatus, bool]]:
        """Per logical time in [start, end]: the status of its latest run, and whether any
        run at that time succeeded."""
        rows = self._db.execute(
            "SELECT logical_time, status, ok FROM (SELECT logical_time, status, ROW_NUMBER()"
            " OVER (PARTITION BY logical_time ORDER BY run_id DESC) AS newest,"
            " MAX(status = 'SUCCEEDED') OVER (PARTITION BY logical_time) AS ok FROM runs"
            " WHERE workflow = ? AND logical_time BETWEEN ? AND ?) WHERE newest = 1",
            (workflow, ts(start), ts(end))).fetchall()
        return {parse_ts(r[0]): (RunStatus(r[1]), bool(r[2])) for r in rows}  # type: ignore[misc]
