"""The outbox table (state schema 3): every notification is a row before anything tries to
send it, so a message survives a crash, an SMTP outage and a restart.

A row's `key` is unique (`messages.*_key`, or `sender.retry_key` for a follow-up to the
recipients a server refused for now): recording the same message twice (an engine event
replayed after a restart) keeps the first row. All access goes through
`StateStore.transaction()`, on the event loop's thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from flowplan.daemon.notify.messages import Draft
from flowplan.daemon.state.store import StateStore, parse_ts, ts


class OutboxStatus(StrEnum):
    PENDING = "PENDING"  # to send, at `next_attempt_at`
    SENT = "SENT"  # the SMTP server accepted it
    FAILED = "FAILED"  # given up: too many attempts or a permanent refusal (`last_error`)
    NOT_SENT = "NOT_SENT"  # recorded while no SMTP server was configured; never sent


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    key: str
    kind: str
    recipients: tuple[str, ...]
    subject: str
    body: str
    message_id: str
    status: OutboxStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    sent_at: datetime | None = None
    run_id: str | None = None
    backfill_id: str | None = None
    node: str | None = None


class Outbox:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def add(self, draft: Draft, *, message_id: str, at: datetime,
            status: OutboxStatus = OutboxStatus.PENDING, last_error: str | None = None
            ) -> int | None:
        """Record `draft`; its row id, or None when a row with its key exists already."""
        due = ts(at) if status is OutboxStatus.PENDING else None
        with self._store.transaction() as db:
            cursor = db.execute(
                "INSERT INTO outbox (key, kind, run_id, backfill_id, node, recipients, subject,"
                " body, message_id, status, attempts, next_attempt_at, last_error, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,0,?,?,?) ON CONFLICT (key) DO NOTHING",
                (draft.key, draft.kind.value, draft.run_id, draft.backfill_id, draft.node,
                 json.dumps(list(draft.recipients)), draft.subject, draft.body, message_id,
                 status.value, due, last_error, ts(at)))
            return cursor.lastrowid if cursor.rowcount else None

    def get(self, row_id: int) -> OutboxRow | None:
        with self._store.transaction() as db:
            row = db.execute("SELECT * FROM outbox WHERE id = ?", (row_id,)).fetchone()
        return None if row is None else _row(row)

    def rows(self, *, status: OutboxStatus | None = None) -> list[OutboxRow]:
        """Rows in the order they were recorded."""
        with self._store.transaction() as db:
            if status is None:
                found = db.execute("SELECT * FROM outbox ORDER BY id").fetchall()
            else:
                found = db.execute("SELECT * FROM outbox WHERE status = ? ORDER BY id",
                                   (status.value,)).fetchall()
        return [_row(r) for r in found]

    def page(self, *, run_id: str | None = None, status: OutboxStatus | None = None,
             before_id: int | None = None, limit: int = 100) -> list[OutboxRow]:
        """Newest first; `before_id` pages on."""
        where, args = [], []
        for clause, value in (("run_id = ?", run_id), ("status = ?", status and status.value),
                              ("id < ?", before_id)):
            if value is not None:
                where.append(clause)
                args.append(value)
        text = f"WHERE {' AND '.join(where)}" if where else ""
        with self._store.transaction() as db:
            found = db.execute(f"SELECT * FROM outbox {text} ORDER BY id DESC LIMIT ?",
                               [*args, limit]).fetchall()
        return [_row(r) for r in found]

    def next_due(self) -> OutboxRow | None:
        """The pending row whose next attempt comes first (oldest first among equals)."""
        with self._store.transaction() as db:
            row = db.execute("SELECT * FROM outbox WHERE status = 'PENDING'"
                             " ORDER BY next_attempt_at, id LIMIT 1").fetchone()
        return None if row is None else _row(row)

    def count(self, status: OutboxStatus) -> int:
        with self._store.transaction() as db:
            return int(db.execute("SELECT count(*) FROM outbox WHERE status = ?",
                                  (status.value,)).fetchone()[0])

    def summary(self) -> tuple[dict[OutboxStatus, int], datetime | None]:
        """Messages by status, and when the oldest pending one was created (for metrics)."""
        with self._store.transaction() as db:
            counts = {OutboxStatus(status): int(n) for status, n in db.execute(
                "SELECT status, count(*) FROM outbox GROUP BY status")}
            oldest = db.execute("SELECT min(created_at) FROM outbox"
                                " WHERE status = 'PENDING'").fetchone()[0]
        return counts, parse_ts(oldest) if oldest is not None else None

    def begin_attempt(self, row_id: int) -> None:
        """Count the attempt before sending: a crash mid-send still counts it."""
        with self._store.transaction() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (row_id,))

    def mark_sent(self, row_id: int, *, at: datetime, note: str | None = None) -> None:
        with self._store.transaction() as db:
            db.execute("UPDATE outbox SET status = 'SENT', sent_at = ?, next_attempt_at = NULL,"
                       " last_error = ? WHERE id = ?", (ts(at), note, row_id))

    def mark_sent_and_retry(self, row_id: int, *, at: datetime, key: str,
                            recipients: tuple[str, ...], next_attempt_at: datetime,
                            note: Callable[[int], str]) -> int:
        """Mark a row SENT and, in the same transaction, add a PENDING row `key` that sends
        the same message (content, Message-ID, Date) to `recipients` at `next_attempt_at`;
        the new row's id. `note(id)` is the first row's note."""
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO outbox (key, kind, run_id, backfill_id, node, recipients, subject,"
                " body, message_id, status, attempts, next_attempt_at, created_at)"
                " SELECT ?, kind, run_id, backfill_id, node, ?, subject, body, message_id,"
                " 'PENDING', 0, ?, created_at FROM outbox WHERE id = ?"
                " ON CONFLICT (key) DO NOTHING",
                (key, json.dumps(list(recipients)), ts(next_attempt_at), row_id))
            retry_id = int(db.execute("SELECT id FROM outbox WHERE key = ?",
                                      (key,)).fetchone()[0])
            db.execute("UPDATE outbox SET status = 'SENT', sent_at = ?, next_attempt_at = NULL,"
                       " last_error = ? WHERE id = ?", (ts(at), note(retry_id), row_id))
        return retry_id

    def mark_retry(self, row_id: int, *, error: str, next_attempt_at: datetime) -> None:
        with self._store.transaction() as db:
            db.execute("UPDATE outbox SET next_attempt_at = ?, last_error = ? WHERE id = ?",
                       (ts(next_attempt_at), error, row_id))

    def mark_failed(self, row_id: int, *, error: str) -> None:
        with self._store.transaction() as db:
            db.execute("UPDATE outbox SET status = 'FAILED', next_attempt_at = NULL,"
                       " last_error = ? WHERE id = ?", (error, row_id))


def _row(row: sqlite3.Row) -> OutboxRow:
    return OutboxRow(
        id=row["id"], key=row["key"], kind=row["kind"],
        recipients=tuple(json.loads(row["recipients"])), subject=row["subject"],
        body=row["body"], message_id=row["message_id"], status=OutboxStatus(row["status"]),
        attempts=row["attempts"],
        created_at=parse_ts(row["created_at"]),  # type: ignore[arg-type]
        next_attempt_at=parse_ts(row["next_attempt_at"]), last_error=row["last_error"],
        sent_at=parse_ts(row["sent_at"]), run_id=row["run_id"],
        backfill_id=row["backfill_id"], node=row["node"])
