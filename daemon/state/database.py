"""The state database: the connection and its durability, schema migrations, one
transaction at a time, WAL checkpoints, and the errors of a database that cannot be used or
written. The rows themselves live in runs.py, schedules.py and backfills.py;
`flowplan.daemon.state.store.StateStore` puts them together.

SQLite in WAL mode, one writer, every change committed before the
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
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from flowplan.daemon.state.migrations import MIGRATIONS

DB_FILE = "state.sqlite3"

log = logging.getLogger("flowplan.state")


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


def chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]



class Database:
    """One SQLite state database: opened, checked and migrated; `transaction` for writes."""

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
        changes = self._db.total_changes
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
        if self._db.total_changes != changes:  # a commit that only read proves nothing
            self._writable_again()

    def _writable_again(self) -> None:
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
        self._writable_again()  # a PRAGMA is not counted in total_changes

    # ---- writes -------------------------------------------------------------------------


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
