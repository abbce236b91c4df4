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

`commit_off_loop` runs writes on a thread of their own (the commit thread), with a
connection of its own, several writes queued meanwhile in one transaction: the caller awaits
the commit, so nothing acts on a write before it is durable, and the event loop serves
others meanwhile. Writes made on the loop (`transaction`) and those of the commit thread
take turns on one lock; reads on the loop's connection see only committed transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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


class _PerThread(threading.local):
    """A thread's connection (None: the loop's) and whether it is inside a transaction."""

    db: sqlite3.Connection | None = None
    in_tx: bool = False


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
        self._synchronous = synchronous
        self._local = _PerThread()
        self._write_lock = threading.Lock()  # one transaction at a time, whichever thread
        self._commits: _CommitThread | None = None  # started by the first commit_off_loop
        try:
            self._loop_db = sqlite3.connect(self.path, isolation_level=None,
                                            check_same_thread=False)
        except sqlite3.Error as exc:  # unreadable, a broken link
            raise damaged(self.path, exc) from exc
        self._loop_db.row_factory = sqlite3.Row
        self.write_error: str | None = None  # why commits fail, while they do
        try:
            self._refuse_empty_beside_runs(state_dir)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._configure(self._db)
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

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection of the calling thread: the commit thread's own, else the loop's."""
        return self._local.db or self._loop_db

    def _configure(self, db: sqlite3.Connection) -> None:
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=10000")

    def close(self) -> None:
        """Close the connections; writes queued for the commit thread and not yet begun are
        dropped (nothing acted on them: their callers never saw them committed)."""
        if self._commits is not None:
            self._commits.close()
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._loop_db.close()

    def commit_off_loop(self, write: Callable[[], object]) -> asyncio.Future[None]:
        """Run `write` (store writes) on the commit thread, in one transaction with the
        other writes queued meanwhile; the future is done once that transaction is
        committed, or fails with what `write` raised (StateWriteError: the disk refused the
        commit, nothing of it was written). Call it from the event loop."""
        if self._commits is None:
            self._commits = _CommitThread(self)
        return self._commits.submit(write)

    def _open_commit_connection(self) -> None:
        """In the commit thread: its own connection, configured as the loop's."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        self._configure(db)
        if self._checkpointer is not None:
            db.execute("PRAGMA wal_autocheckpoint=0")
        self._local.db = db

    def _commit_batch(self, writes: Sequence[Callable[[], object]]
                      ) -> list[BaseException | None]:
        """In the commit thread: `writes` in one transaction; each one's outcome (None:
        committed). A write that fails for a reason of its own (not the disk) is retried
        alone, so that it does not take the others down with it."""
        try:
            with self.transaction():
                for write in writes:
                    write()
            return [None] * len(writes)
        except StateWriteError as exc:
            return [exc] * len(writes)
        except Exception as exc:
            if len(writes) == 1:
                return [exc]
        outcomes: list[BaseException | None] = []
        for write in writes:
            try:
                with self.transaction():
                    write()
                outcomes.append(None)
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

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
        """One durable transaction; nested use (in the same thread) joins the outer one. A
        write the disk refuses (full, I/O error, locked) raises StateWriteError, after a
        rollback. On the loop, it waits while the commit thread commits."""
        local = self._local
        db = self._db
        if local.in_tx:
            yield db
            return
        with self._write_lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                local.in_tx = True
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:  # a failed COMMIT can leave it open
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and _refused_write(exc):
                    raise self._write_failed(exc) from exc
                raise
            finally:
                local.in_tx = False
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


class _CommitThread:
    """The writes of `Database.commit_off_loop`: queued on the loop, committed by one thread,
    a batch at a time. A batch is everything queued while the previous one was committing
    (or during the loop iteration that queued the first), so a burst costs one commit."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="flowplan-commit",
            initializer=database._open_commit_connection)
        self._queue: list[tuple[Callable[[], object], asyncio.Future[None]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False

    def submit(self, write: Callable[[], object]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self._closed:
            future.set_exception(RuntimeError("the state store is closed"))
            return future
        self._queue.append((write, future))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue and not self._closed:
                batch, self._queue = self._queue, []
                outcomes = await loop.run_in_executor(
                    self._executor, self._database._commit_batch, [w for w, _ in batch])
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller stopped waiting (the engine stopping)
                        continue
                    if outcome is None:
                        future.set_result(None)
                    else:
                        future.set_exception(outcome)
        finally:
            self._drainer = None

    def close(self) -> None:
        """Wait for the batch being committed; drop the rest."""
        self._closed = True
        for _, future in self._queue:
            future.cancel()
        self._queue = []
        self._executor.submit(self._close_connection)
        self._executor.shutdown(wait=True)

    def _close_connection(self) -> None:
        db = self._database._local.db
        if db is not None:
            db.close()


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
