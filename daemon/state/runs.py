"""Runs, their nodes, attempts and numbered events: written as the engine acts, read by the
server, the scheduler and the notifier."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowplan.daemon.domain import (
    Attempt,
    AttemptStatus,
    DuplicateRunError,
    NodeRun,
    NodeStatus,
    Run,
    RunEvent,
    RunStatus,
    RunTrigger,
)
from flowplan.daemon.state.database import Database, chunks, parse_ts, ts


@dataclass(frozen=True, slots=True)
class ClosedAttempt:
    """How an attempt of a run that cannot be recovered ended (`fail_unrecoverable`)."""

    node: str
    number: int
    status: AttemptStatus
    exit_code: int | None
    error: str | None
    ended_at: datetime | None = None  # when it ended by itself while the daemon was away


class RunRows(Database):
    """The rows of runs, node runs, attempts and run events."""

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
        # a backfill's runs share their params and creation time: each is written once
        params = {id(p): json.dumps(p, sort_keys=True) for p in {id(r.params): r.params
                                                                  for r in runs}.values()}
        created = {r.created_at: ts(r.created_at) for r in runs}
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO runs (run_id, workflow, plan_version, plan_digest, graph_version,"
                " trigger, logical_time, data_interval_start, data_interval_end, status, params,"
                " remarks, queue_override, backfill_id, previous_run_id, created_at, started_at,"
                " finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(run.run_id, run.workflow, run.plan_version, run.plan_digest,
                  graph_version or run.plan_version, run.trigger.value,
                  ts(run.logical_time), ts(run.data_interval_start), ts(run.data_interval_end),
                  run.status.value, params[id(run.params)], run.remarks,
                  run.queue_override, run.backfill_id, run.previous_run_id,
                  created[run.created_at], ts(run.started_at), ts(run.finished_at))
                 for run in runs])
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
                    (run.run_id, 1, None, run.status.value, None, created[run.created_at])]
                if run.previous_run_id is not None:
                    history += [(run.run_id, len(history) + i + 1, n.name, n.status.value,
                                 len(n.attempts) or None, created[run.created_at])
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

    def _events(self, changes: Sequence[tuple[str, str | None, str]], at: datetime) -> None:
        """`_event` for many (run id, node, status) changes at `at`, in this order within
        each run: one query for the runs' last sequences, one insert (a backfill's cancel)."""
        last: dict[str, int] = {}
        for chunk in chunks(list(dict.fromkeys(run_id for run_id, _, _ in changes)), 500):
            marks = ",".join("?" * len(chunk))
            last.update(self._db.execute(
                f"SELECT run_id, MAX(sequence) FROM run_events WHERE run_id IN ({marks})"
                " GROUP BY run_id", chunk).fetchall())
        stamp, events = ts(at), []
        for run_id, node, status in changes:
            last[run_id] = sequence = last.get(run_id, 0) + 1
            events.append((run_id, sequence, node, status, None, stamp))
        self._insert_events(events)

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
                [(a.status.value, ts(a.ended_at or at), a.exit_code, a.error, run_id, a.node,
                  a.number) for a in attempts])
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

    def run_mark(self, run_id: str) -> tuple[int, bool]:
        """What names the run's state as shown: its history's length, and whether a cancel
        was asked for (which writes no event until it acts), in one read."""
        row = self._db.execute(
            "SELECT (SELECT MAX(sequence) FROM run_events WHERE run_id = ?),"
            " (SELECT cancel_requested_at IS NOT NULL FROM runs WHERE run_id = ?)",
            (run_id, run_id)).fetchone()
        return int(row[0] or 0), bool(row[1])

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

    def newest_run_statuses(self, workflows: Sequence[str], limit: int
                            ) -> dict[str, list[tuple[str, RunStatus]]]:
        """Each workflow's newest `limit` runs as (run id, status), newest first, as
        `list_runs` orders them: an index seek per workflow, not a scan of the history."""
        query = "SELECT run_id, status FROM runs WHERE workflow = ? ORDER BY run_id DESC LIMIT ?"
        return {name: [(row[0], RunStatus(row[1]))
                       for row in self._db.execute(query, (name, limit))]
                for name in workflows}

    def node_counts(self, run_ids: Sequence[str]) -> dict[str, dict[NodeStatus, int]]:
        """For each run, how many of its nodes are in each status (statuses with none left
        out)."""
        counts: dict[str, dict[NodeStatus, int]] = {run_id: {} for run_id in run_ids}
        for chunk in chunks(list(run_ids), 500):
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
            for chunk in chunks(ids, 500):
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
        """Cancel runs that never started: the runs and all their nodes CANCELLED, each
        change in its run's history (the nodes', then the run's)."""
        with self.transaction() as db:
            for chunk in chunks(run_ids, 500):
                marks = ",".join("?" * len(chunk))
                queued = [r[0] for r in db.execute(
                    f"SELECT run_id FROM runs WHERE run_id IN ({marks}) AND status = 'PENDING'",
                    chunk)]
                if not queued:
                    continue
                marks = ",".join("?" * len(queued))
                nodes = db.execute(f"SELECT run_id, name FROM node_runs WHERE run_id IN"
                                   f" ({marks}) AND status = 'PENDING' ORDER BY run_id,"
                                   " position", queued).fetchall()
                db.execute(f"UPDATE node_runs SET status = 'CANCELLED' WHERE run_id IN ({marks})"
                           " AND status = 'PENDING'", queued)
                db.execute("UPDATE runs SET status = 'CANCELLED', cancel_requested_at ="
                           " COALESCE(cancel_requested_at, ?), finished_at = ? WHERE run_id IN"
                           f" ({marks})", [ts(at), ts(at), *queued])
                self._events([*((run_id, name, NodeStatus.CANCELLED.value)
                                 for run_id, name in nodes),
                              *((run_id, None, RunStatus.CANCELLED.value) for run_id in queued)],
                             at)


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
