"""The durable state store: SQLite in WAL mode, one writer, every change committed before the
engine acts on it.

`synchronous=NORMAL` (the default): in WAL mode a committed transaction survives any crash
of the process, `kill -9` included; only an operating-system crash or power loss can lose
the last commits. It costs 11 us a commit here, against 151 us for `FULL` (one fsync each),
which a daemon that wants power-loss durability can choose. Writes open with
`BEGIN IMMEDIATE`, so a second process on the same file waits instead of failing midway.

With `checkpoint_every` (the daemon's choice), WAL checkpoints run on a thread of their own
instead of inside the commit that crosses SQLite's 1,000-page mark: that commit copies the
WAL back and fsyncs twice, a 5-10 ms stall of the event loop about once a second under load.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.domain import (
    Attempt,
    AttemptStatus,
    Backfill,
    BackfillProgress,
    BackfillStatus,
    DuplicateRunError,
    NodeRun,
    NodeStatus,
    Reprocess,
    Run,
    RunEvent,
    RunStatus,
    RunTrigger,
)
from daemon.state.migrations import MIGRATIONS

DB_FILE = "state.sqlite3"

log = logging.getLogger("flowplan.state")


@dataclass(frozen=True, slots=True)
class ClosedAttempt:
    """How an attempt of a run that cannot be recovered ended (`fail_unrecoverable`)."""

    node: str
    number: int
    status: AttemptStatus
    exit_code: int | None
    error: str | None


class StateError(Exception):
    """The state database cannot be used (newer schema, corrupt file)."""


class StateWriteError(Exception):
    """A commit the disk refused (full, an I/O error) was rolled back: nothing of it was
    written, and the same write may succeed later. `StateStore.write_error` says why until a
    commit succeeds again."""


_REFUSED_WRITES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY,
                             sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_READONLY,
                             sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL})


def _refused_write(exc: sqlite3.OperationalError) -> bool:
    """The disk (or another process) refused the write, not the SQL: worth retrying."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _REFUSED_WRITES


def damaged(path: Path, exc: sqlite3.Error) -> StateError:
    """The one-line refusal of a database SQLite cannot use."""
    return StateError(f"{path}: {exc}: restore the database from a backup"
                      " (docs/operations.md), or give another --state")


def ts(value: datetime | None) -> str | None:
    """A fixed-width UTC text form that sorts like the instants it names."""
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class StateStore:
    """Rows for runs, node runs and attempts (and, for the scheduler, ticks and switches)."""

    def __init__(self, state_dir: Path, *, synchronous: str = "NORMAL",
                 checkpoint_every: float | None = None) -> None:
        """Open (and migrate) the state database in `state_dir`. With `checkpoint_every`
        (seconds), a background thread checkpoints the WAL instead of the commits."""
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / DB_FILE
        if self.path.is_dir():
            raise StateError(f"{self.path}: a folder is where the database file goes: move it"
                             " away and restore the database from a backup"
                             " (docs/operations.md), or give another --state")
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.Error as exc:  # unreadable, a broken link
            raise damaged(self.path, exc) from exc
        self._db.row_factory = sqlite3.Row
        self._in_tx = False
        self.write_error: str | None = None  # why commits fail, while they do
        try:
            self._refuse_empty_beside_runs(state_dir)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._check_pages()
            self._migrate()
        except sqlite3.DatabaseError as exc:  # not a database, corrupt, unreadable
            self._db.close()
            raise damaged(self.path, exc) from exc
        except StateError:
            self._db.close()
            raise
        except StateWriteError as exc:  # a migration on a full disk
            self._db.close()
            raise StateError(f"{exc}: free disk space under {state_dir}") from exc
        self._checkpointer: _Checkpointer | None = None
        if checkpoint_every is not None:
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = _Checkpointer(self.path, synchronous, checkpoint_every)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._db.close()

    def _refuse_empty_beside_runs(self, state_dir: Path) -> None:
        """A missing, empty or schema-less database beside run folders lost its history:
        starting on it would forget every run and reuse nothing safely."""
        fresh = (self._db.execute("PRAGMA user_version").fetchone()[0] == 0 and
                 self._db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0)
        runs = state_dir / "runs"
        if not fresh or not runs.is_dir():
            return
        count = sum(1 for entry in os.scandir(runs) if entry.is_dir())
        if count:
            raise StateError(
                f"{self.path}: the database is missing or empty but {runs} holds {count} run"
                " folder(s): restore the database from a backup (docs/operations.md), or, to"
                f" start over without that history, move {runs} away")

    def _check_pages(self) -> None:
        """`PRAGMA quick_check`: every page readable and well formed (about 25 ms for 10,000
        runs), so that damage stops the start instead of a later query."""
        rows = self._db.execute("PRAGMA quick_check").fetchall()
        if [tuple(r) for r in rows] != [("ok",)]:
            raise sqlite3.DatabaseError(f"database disk image is malformed ({rows[0][0]})")

    def _migrate(self) -> None:
        current = self._db.execute("PRAGMA user_version").fetchone()[0]
        if current > len(MIGRATIONS):
            raise StateError(f"{self.path}: schema version {current} is newer than this flowplan"
                             f" knows ({len(MIGRATIONS)}); upgrade flowplan")
        for number in range(current + 1, len(MIGRATIONS) + 1):
            with self.transaction():
                for statement in _statements(MIGRATIONS[number - 1]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={number}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One durable transaction; nested use joins the outer one. A write the disk refuses
        (full, I/O error, locked) raises StateWriteError, after a rollback."""
        if self._in_tx:
            yield self._db
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_tx = True
            yield self._db
            self._db.execute("COMMIT")
        except BaseException as exc:
            if self._db.in_transaction:  # a failed COMMIT can leave it open
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _refused_write(exc):
                raise self._write_failed(exc) from exc
            raise
        finally:
            self._in_tx = False
        if self.write_error is not None:
            log.warning("the state database %s can be written again", self.path)
            self.write_error = None

    def _write_failed(self, exc: sqlite3.OperationalError) -> StateWriteError:
        if self.write_error is None:
            log.error("cannot write the state database %s: %s: what cannot be recorded waits"
                      " in memory and is retried (free disk space under %s)", self.path, exc,
                      self.path.parent)
        self.write_error = str(exc)
        return StateWriteError(f"cannot write the state database {self.path}: {exc}")

    def probe_write(self) -> None:
        """A commit that writes a page (the header's user_version, unchanged): raises
        StateWriteError while the database cannot be written."""
        with self.transaction() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            db.execute(f"PRAGMA user_version={int(version)}")

    # ---- writes -------------------------------------------------------------------------

    def insert_run(self, run: Run, *, graph_version: int) -> None:
        """A run with its nodes (and, for a resumed run, its copied attempts).

        `graph_version` is the plan version whose graph the run follows: the run's own
        version, except for a resumed run, which keeps its original run's graph.
        """
        self.insert_runs([run], graph_version=graph_version)

    def insert_runs(self, runs: Sequence[Run], *, graph_version: int | None = None) -> None:
        """Many runs in one commit (a backfill); `graph_version` defaults to each run's own.
        A run that exists already (its id, or its workflow, logical time and trigger) raises
        DuplicateRunError, and none of `runs` is written."""
        try:
            self._insert_runs(runs, graph_version)
        except sqlite3.IntegrityError as exc:
            raise DuplicateRunError(
                f"{', '.join(r.run_id for r in runs[:3])}{' ...' if len(runs) > 3 else ''}:"
                f" a run with this id or of this workflow, logical time and trigger exists"
                f" already ({exc})") from exc

    def _insert_runs(self, runs: Sequence[Run], graph_version: int | None) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO runs (run_id, workflow, plan_version, plan_digest, graph_version,"
                " trigger, logical_time, data_interval_start, data_interval_end, status, params,"
                " remarks, queue_override, backfill_id, previous_run_id, created_at, started_at,"
                " finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(run.run_id, run.workflow, run.plan_version, run.plan_digest,
                  graph_version or run.plan_version, run.trigger.value,
                  ts(run.logical_time), ts(run.data_interval_start), ts(run.data_interval_end),
                  run.status.value, json.dumps(run.params, sort_keys=True), run.remarks,
                  run.queue_override, run.backfill_id, run.previous_run_id, ts(run.created_at),
                  ts(run.started_at), ts(run.finished_at)) for run in runs])
            db.executemany(
                "INSERT INTO node_runs (run_id, name, position, status, queue, plan_version,"
                " copied_from_run_id, next_attempt_at, skip_reason) VALUES (?,?,?,?,?,?,?,?,?)",
                [(run.run_id, n.name, i, n.status.value, n.queue, n.plan_version,
                  n.copied_from_run_id, ts(n.next_attempt_at), n.skip_reason)
                 for run in runs for i, n in enumerate(run.nodes)])
            self._insert_attempts(a for run in runs for n in run.nodes for a in n.attempts)
            # history: the run's status, then the nodes it starts with in a final status (a
            # resumed run's copied nodes)
            events: list[tuple[Any, ...]] = []
            for run in runs:
                history: list[tuple[Any, ...]] = [
                    (run.run_id, 1, None, run.status.value, None, ts(run.created_at))]
                if run.previous_run_id is not None:
                    history += [(run.run_id, len(history) + i + 1, n.name, n.status.value,
                                 len(n.attempts) or None, ts(run.created_at))
                                for i, n in enumerate(n for n in run.nodes
                                                      if n.status.finished)]
                events += history
                if len(events) > 5000:
                    self._insert_events(events)
                    events = []
            self._insert_events(events)

    def _insert_events(self, events: Sequence[tuple[Any, ...]]) -> None:
        self._db.executemany("INSERT INTO run_events (run_id, sequence, node, status, attempt,"
                             " at) VALUES (?,?,?,?,?,?)", events)

    def _event(self, run_id: str, node: str | None, status: str, attempt: int | None,
               at: datetime) -> None:
        """Append to the run's history, inside the caller's transaction."""
        self._db.execute(
            "INSERT INTO run_events (run_id, sequence, node, status, attempt, at) SELECT ?,"
            " COALESCE(MAX(sequence), 0) + 1, ?, ?, ?, ? FROM run_events WHERE run_id = ?",
            (run_id, node, status, attempt, ts(at), run_id))

    def _insert_attempts(self, attempts: Iterable[Attempt]) -> None:
        self._db.executemany(
            "INSERT INTO attempts (run_id, node, number, plan_version, status, started_at,"
            " finished_at, exit_code, error, log_path, pid, pid_start, copied_from_run_id,"
            " spark_application_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(a.run_id, a.node, a.number, a.plan_version, a.status.value, ts(a.started_at),
              ts(a.finished_at), a.exit_code, a.error, a.log_path, a.pid, a.pid_start,
              a.copied_from_run_id, a.spark_application_id) for a in attempts])

    def set_run_status(self, run_id: str, status: RunStatus, *, at: datetime) -> None:
        column = "finished_at" if status.finished else "started_at"
        with self.transaction() as db:
            db.execute(f"UPDATE runs SET status = ?, {column} = COALESCE({column}, ?)"
                       " WHERE run_id = ?", (status.value, ts(at), run_id))
            self._event(run_id, None, status.value, None, at)

    def request_cancel(self, run_id: str, *, at: datetime) -> None:
        """Record a cancel before acting on it: a restart finishes what it started."""
        with self.transaction() as db:
            db.execute("UPDATE runs SET cancel_requested_at = COALESCE(cancel_requested_at, ?)"
                       " WHERE run_id = ?", (ts(at), run_id))

    def cancel_requested_at(self, run_id: str) -> datetime | None:
        row = self._db.execute("SELECT cancel_requested_at FROM runs WHERE run_id = ?",
                               (run_id,)).fetchone()
        return None if row is None else parse_ts(row[0])

    def cancel_requested(self, run_id: str) -> bool:
        row = self._db.execute("SELECT cancel_requested_at FROM runs WHERE run_id = ?",
                               (run_id,)).fetchone()
        return row is not None and row[0] is not None

    def set_node_status(self, run_id: str, names: Sequence[str], status: NodeStatus, *,
                        at: datetime, next_attempt_at: datetime | None = None,
                        skip_reason: str | None = None) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE node_runs SET status = ?, next_attempt_at = ?, skip_reason = ?"
                " WHERE run_id = ? AND name = ?",
                [(status.value, ts(next_attempt_at), skip_reason, run_id, name)
                 for name in names])
            for name in names:
                self._event(run_id, name, status.value, None, at)

    def start_attempt(self, attempt: Attempt) -> None:
        """Record the intent to launch: the attempt row and the node RUNNING, in one commit."""
        with self.transaction() as db:
            db.execute("DELETE FROM attempts WHERE run_id = ? AND node = ? AND number = ?",
                       (attempt.run_id, attempt.node, attempt.number))
            self._insert_attempts([attempt])
            db.execute("UPDATE node_runs SET status = 'RUNNING', next_attempt_at = NULL"
                       " WHERE run_id = ? AND name = ?", (attempt.run_id, attempt.node))
            self._event(attempt.run_id, attempt.node, NodeStatus.RUNNING.value, attempt.number,
                        attempt.started_at)

    def set_attempt_process(self, run_id: str, node: str, number: int, pid: int,
                            pid_start: int | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE attempts SET pid = ?, pid_start = ? WHERE run_id = ? AND"
                       " node = ? AND number = ?", (pid, pid_start, run_id, node, number))

    def finish_attempt(self, run_id: str, node: str, number: int, *, status: AttemptStatus,
                       at: datetime, exit_code: int | None, error: str | None,
                       node_status: NodeStatus, next_attempt_at: datetime | None = None,
                       spark_application_id: str | None = None) -> None:
        """The attempt's result and the node's next status, in one commit."""
        with self.transaction() as db:
            db.execute("UPDATE attempts SET status = ?, finished_at = ?, exit_code = ?,"
                       " error = ?, spark_application_id = COALESCE(?, spark_application_id)"
                       " WHERE run_id = ? AND node = ? AND number = ?",
                       (status.value, ts(at), exit_code, error, spark_application_id, run_id,
                        node, number))
            db.execute("UPDATE node_runs SET status = ?, next_attempt_at = ? WHERE run_id = ?"
                       " AND name = ?",
                       (node_status.value, ts(next_attempt_at), run_id, node))
            self._event(run_id, node, node_status.value, number, at)

    def fail_unrecoverable(self, run_id: str, nodes: Sequence[str],
                           attempts: Sequence[ClosedAttempt], *, reason: str, at: datetime
                           ) -> None:
        """In one commit: the run's open `attempts` closed with what is known of them, its
        unfinished `nodes` FAILED with `reason`, the run FAILED."""
        with self.transaction() as db:
            db.executemany(
                "UPDATE attempts SET status = ?, finished_at = ?, exit_code = ?, error = ?"
                " WHERE run_id = ? AND node = ? AND number = ? AND status = 'RUNNING'",
                [(a.status.value, ts(at), a.exit_code, a.error, run_id, a.node, a.number)
                 for a in attempts])
            self.set_node_status(run_id, nodes, NodeStatus.FAILED, at=at, skip_reason=reason)
            self.set_run_status(run_id, RunStatus.FAILED, at=at)

    # ---- reads --------------------------------------------------------------------------

    def events_after(self, run_id: str, sequence: int, *, limit: int = 1000
                     ) -> list[RunEvent]:
        """The run's history after `sequence`, oldest first."""
        rows = self._db.execute(
            "SELECT sequence, node, status, attempt, at FROM run_events WHERE run_id = ? AND"
            " sequence > ? ORDER BY sequence LIMIT ?", (run_id, sequence, limit)).fetchall()
        return [RunEvent(run_id=run_id, sequence=r[0], node=r[1], status=r[2], attempt=r[3],
                         at=parse_ts(r[4])) for r in rows]  # type: ignore[arg-type]

    def run_status_at(self, run_id: str, sequence: int) -> RunStatus | None:
        """The run's own status as it was right after change `sequence`."""
        row = self._db.execute("SELECT status FROM run_events WHERE run_id = ? AND node IS NULL"
                               " AND sequence <= ? ORDER BY sequence DESC LIMIT 1",
                               (run_id, sequence)).fetchone()
        return None if row is None else RunStatus(row[0])

    def get_node(self, run_id: str, name: str) -> NodeRun | None:
        """One node of a run, with its attempts."""
        row = self._db.execute("SELECT * FROM node_runs WHERE run_id = ? AND name = ?",
                               (run_id, name)).fetchone()
        if row is None:
            return None
        attempts = tuple(_attempt(a) for a in self._db.execute(
            "SELECT * FROM attempts WHERE run_id = ? AND node = ? ORDER BY number",
            (run_id, name)))
        return _node_run(row, attempts)

    def last_sequence(self, run_id: str) -> int:
        row = self._db.execute("SELECT MAX(sequence) FROM run_events WHERE run_id = ?",
                               (run_id,)).fetchone()
        return int(row[0] or 0)

    def graph_version(self, run_id: str) -> int:
        row = self._db.execute("SELECT graph_version FROM runs WHERE run_id = ?",
                               (run_id,)).fetchone()
        if row is None:
            raise KeyError(run_id)
        return int(row[0])

    def get_run(self, run_id: str, *, with_nodes: bool = True) -> Run | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        return self._runs([row], with_nodes=with_nodes)[0]

    def runs_with_status(self, statuses: Sequence[RunStatus], *, with_nodes: bool = True
                         ) -> list[Run]:
        marks = ",".join("?" * len(statuses))
        rows = self._db.execute(f"SELECT * FROM runs WHERE status IN ({marks}) ORDER BY run_id",
                                [s.value for s in statuses]).fetchall()
        return self._runs(rows, with_nodes=with_nodes)

    def list_runs(self, *, workflow: str | None = None, statuses: Sequence[RunStatus] = (),
                  trigger: RunTrigger | None = None, backfill_id: str | None = None,
                  before_run_id: str | None = None, limit: int = 100,
                  with_nodes: bool = False, workflows: Sequence[str] | None = None
                  ) -> list[Run]:
        """Newest first; `before_run_id` pages on."""
        where: list[str] = []
        args: list[Any] = []
        if workflows is not None:
            where.append(f"workflow IN ({','.join('?' * len(workflows))})")
            args += list(workflows)
        for column, value in (("workflow", workflow), ("backfill_id", backfill_id),
                              ("trigger", trigger.value if trigger else None)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args += [s.value for s in statuses]
        if before_run_id is not None:
            where.append("run_id < ?")
            args.append(before_run_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(f"SELECT * FROM runs {clause} ORDER BY run_id DESC LIMIT ?",
                                [*args, limit]).fetchall()
        return self._runs(rows, with_nodes=with_nodes)

    def node_counts(self, run_ids: Sequence[str]) -> dict[str, dict[NodeStatus, int]]:
        """For each run, how many of its nodes are in each status (statuses with none left
        out)."""
        counts: dict[str, dict[NodeStatus, int]] = {run_id: {} for run_id in run_ids}
        for chunk in _chunks(list(run_ids), 500):
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(
                    f"SELECT run_id, status, count(*) FROM node_runs WHERE run_id IN ({marks})"
                    " GROUP BY run_id, status", chunk):
                counts[row[0]][NodeStatus(row[1])] = int(row[2])
        return counts

    def _runs(self, rows: Sequence[sqlite3.Row], *, with_nodes: bool) -> list[Run]:
        nodes: dict[str, list[NodeRun]] = {row["run_id"]: [] for row in rows}
        if with_nodes and rows:
            ids = [row["run_id"] for row in rows]
            attempts: dict[tuple[str, str], list[Attempt]] = {}
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                for a in self._db.execute(
                        f"SELECT * FROM attempts WHERE run_id IN ({marks})"
                        " ORDER BY run_id, node, number", chunk):
                    attempts.setdefault((a["run_id"], a["node"]), []).append(_attempt(a))
                for n in self._db.execute(
                        f"SELECT * FROM node_runs WHERE run_id IN ({marks})"
                        " ORDER BY run_id, position", chunk):
                    nodes[n["run_id"]].append(_node_run(
                        n, tuple(attempts.get((n["run_id"], n["name"]), ()))))
        return [_run(row, tuple(nodes[row["run_id"]])) for row in rows]


    def cancel_queued(self, run_ids: Sequence[str], *, at: datetime) -> None:
        """Cancel runs that never started: the runs and all their nodes CANCELLED."""
        with self.transaction() as db:
            for chunk in _chunks(run_ids, 500):
                marks = ",".join("?" * len(chunk))
                db.execute(f"UPDATE node_runs SET status = 'CANCELLED' WHERE run_id IN ({marks})"
                           " AND status = 'PENDING'", chunk)
                queued = [r[0] for r in db.execute(
                    f"SELECT run_id FROM runs WHERE run_id IN ({marks}) AND status = 'PENDING'",
                    chunk)]
                db.execute("UPDATE runs SET status = 'CANCELLED', cancel_requested_at ="
                           " COALESCE(cancel_requested_at, ?), finished_at = ? WHERE run_id IN"
                           f" ({marks}) AND status = 'PENDING'", [ts(at), ts(at), *chunk])
                for run_id in queued:
                    self._event(run_id, None, RunStatus.CANCELLED.value, None, at)

    # ---- the scheduler: cursors, ticks, switches ----------------------------------------

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

    # ---- backfills ----------------------------------------------------------------------

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


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _node_run(n: sqlite3.Row, attempts: tuple[Attempt, ...]) -> NodeRun:
    return NodeRun(run_id=n["run_id"], name=n["name"], status=NodeStatus(n["status"]),
                   queue=n["queue"], plan_version=n["plan_version"], attempts=attempts,
                   copied_from_run_id=n["copied_from_run_id"],
                   next_attempt_at=parse_ts(n["next_attempt_at"]), skip_reason=n["skip_reason"])


def _attempt(row: sqlite3.Row) -> Attempt:
    return Attempt(
        run_id=row["run_id"], node=row["node"], number=row["number"],
        plan_version=row["plan_version"], status=AttemptStatus(row["status"]),
        started_at=parse_ts(row["started_at"]),  # type: ignore[arg-type]
        finished_at=parse_ts(row["finished_at"]), exit_code=row["exit_code"],
        error=row["error"], log_path=row["log_path"], pid=row["pid"],
        pid_start=row["pid_start"], copied_from_run_id=row["copied_from_run_id"],
        spark_application_id=row["spark_application_id"])


def _run(row: sqlite3.Row, nodes: tuple[NodeRun, ...]) -> Run:
    params: dict[str, Any] = json.loads(row["params"])
    return Run(
        run_id=row["run_id"], workflow=row["workflow"], plan_version=row["plan_version"],
        plan_digest=row["plan_digest"], trigger=RunTrigger(row["trigger"]),
        logical_time=parse_ts(row["logical_time"]),  # type: ignore[arg-type]
        status=RunStatus(row["status"]),
        created_at=parse_ts(row["created_at"]),  # type: ignore[arg-type]
        params=params, remarks=row["remarks"], queue_override=row["queue_override"],
        backfill_id=row["backfill_id"], previous_run_id=row["previous_run_id"],
        data_interval_start=parse_ts(row["data_interval_start"]),
        data_interval_end=parse_ts(row["data_interval_end"]),
        started_at=parse_ts(row["started_at"]), finished_at=parse_ts(row["finished_at"]),
        nodes=nodes)


class _Checkpointer:
    """Copies the WAL back into the database file every `interval` seconds, on its own
    connection and thread. PASSIVE never blocks the writer, and sqlite3 releases the GIL
    while it works, so the fsyncs cost the event loop nothing."""

    def __init__(self, path: Path, synchronous: str, interval: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path, synchronous, interval),
                                        name="flowplan-checkpoint", daemon=True)
        self._thread.start()

    def _run(self, path: Path, synchronous: str, interval: float) -> None:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA synchronous={synchronous}")
            failing = False
            while not self._stop.wait(interval):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # e.g. a full disk: the WAL grows, commits go on
                    if not failing:  # once per outage, not every second
                        log.warning("WAL checkpoints of %s fail: %s", path, exc)
                    failing = True
                else:
                    failing = False
        finally:
            db.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
