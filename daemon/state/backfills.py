"""Backfills: their rows, their progress counted over their runs, and their cancel."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from flowplan.daemon.domain import Backfill, BackfillProgress, BackfillStatus, Reprocess, RunStatus
from flowplan.daemon.state.database import parse_ts, ts
from flowplan.daemon.state.runs import RunRows


class BackfillRows(RunRows):
    """Backfill rows; cancelling one cancels its runs (RunRows) in the same commit."""

    def insert_backfill(self, backfill: Backfill) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO backfills (backfill_id, workflow, start_time, end_time, status,"
                " max_parallel_runs, queue_override, remarks, failure_emails, reprocess,"
                " created_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (backfill.backfill_id, backfill.workflow, ts(backfill.start_time),
                 ts(backfill.end_time), backfill.status.value, backfill.max_parallel_runs,
                 backfill.queue_override, backfill.remarks, json.dumps(backfill.failure_emails),
                 backfill.reprocess.value, ts(backfill.created_at), ts(backfill.finished_at)))

    def get_backfill(self, backfill_id: str) -> Backfill | None:
        row = self._db.execute("SELECT * FROM backfills WHERE backfill_id = ?",
                               (backfill_id,)).fetchone()
        return None if row is None else self._backfill(row)

    def list_backfills(self, *, workflow: str | None = None,
                       statuses: Sequence[BackfillStatus] = (),
                       before_backfill_id: str | None = None, limit: int = 100
                       ) -> list[Backfill]:
        """Newest first; `before_backfill_id` pages on."""
        where, args = [], []
        if workflow is not None:
            where.append("workflow = ?")
            args.append(workflow)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args += [s.value for s in statuses]
        if before_backfill_id is not None:
            where.append("backfill_id < ?")
            args.append(before_backfill_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(f"SELECT * FROM backfills {clause} ORDER BY backfill_id DESC"
                                " LIMIT ?", [*args, limit]).fetchall()
        return [self._backfill(row) for row in rows]

    def backfill_counts(self) -> dict[str, int]:
        """Backfills by status (for metrics)."""
        return {str(status): int(n) for status, n in self._db.execute(
            "SELECT status, count(*) FROM backfills GROUP BY status")}

    def backfill_parallelism(self, backfill_id: str) -> int | None:
        row = self._db.execute("SELECT max_parallel_runs FROM backfills WHERE backfill_id = ?",
                               (backfill_id,)).fetchone()
        return None if row is None else int(row[0])

    def backfill_progress(self, backfill_id: str) -> BackfillProgress:
        counts = dict.fromkeys(RunStatus, 0)
        for status, count in self._db.execute(
                "SELECT status, COUNT(*) FROM (SELECT status, ROW_NUMBER() OVER (PARTITION BY"
                " logical_time ORDER BY run_id DESC) AS newest FROM runs WHERE backfill_id = ?)"
                " WHERE newest = 1 GROUP BY status", (backfill_id,)):
            counts[RunStatus(status)] = count
        return BackfillProgress(total=sum(counts.values()),
                                succeeded=counts[RunStatus.SUCCEEDED],
                                failed=counts[RunStatus.FAILED],
                                running=counts[RunStatus.RUNNING],
                                pending=counts[RunStatus.PENDING],
                                cancelled=counts[RunStatus.CANCELLED])

    def finish_backfill(self, backfill_id: str, status: BackfillStatus, *, at: datetime
                        ) -> None:
        with self.transaction() as db:
            db.execute("UPDATE backfills SET status = ?, finished_at = COALESCE(finished_at, ?)"
                       " WHERE backfill_id = ?", (status.value, ts(at), backfill_id))

    def cancel_backfill(self, backfill_id: str, *, at: datetime) -> tuple[list[str], list[str]]:
        """In one commit: the backfill CANCELLED, its pending runs CANCELLED and a cancel
        recorded on its running ones. Returns (pending run ids, running run ids)."""
        with self.transaction() as db:
            rows = db.execute("SELECT run_id, status FROM runs WHERE backfill_id = ? AND"
                              " status IN ('PENDING', 'RUNNING')", (backfill_id,)).fetchall()
            pending = [r[0] for r in rows if r[1] == RunStatus.PENDING.value]
            running = [r[0] for r in rows if r[1] == RunStatus.RUNNING.value]
            self.cancel_queued(pending, at=at)
            for run_id in running:
                self.request_cancel(run_id, at=at)
            db.execute("UPDATE backfills SET status = 'CANCELLED', finished_at ="
                       " COALESCE(finished_at, ?) WHERE backfill_id = ?", (ts(at), backfill_id))
        return pending, running

    def backfill_unfinished(self, backfill_id: str) -> bool:
        """True while a run of the backfill is pending or running (cheap: stops at one)."""
        row = self._db.execute("SELECT 1 FROM runs WHERE status IN ('PENDING', 'RUNNING') AND"
                               " backfill_id = ? LIMIT 1", (backfill_id,)).fetchone()
        return row is not None

    def run_backfill_id(self, run_id: str) -> str | None:
        row = self._db.execute("SELECT backfill_id FROM runs WHERE run_id = ?",
                               (run_id,)).fetchone()
        return None if row is None else row[0]

    def _backfill(self, row: sqlite3.Row) -> Backfill:
        return Backfill(
            backfill_id=row["backfill_id"], workflow=row["workflow"],
            start_time=parse_ts(row["start_time"]),  # type: ignore[arg-type]
            end_time=parse_ts(row["end_time"]),  # type: ignore[arg-type]
            status=BackfillStatus(row["status"]), max_parallel_runs=row["max_parallel_runs"],
            reprocess=Reprocess(row["reprocess"]),
            created_at=parse_ts(row["created_at"]),  # type: ignore[arg-type]
            queue_override=row["queue_override"], remarks=row["remarks"],
            failure_emails=tuple(json.loads(row["failure_emails"])),
            finished_at=parse_ts(row["finished_at"]),
            progress=self.backfill_progress(row["backfill_id"]))
