"""The state database itself (daemon/state/database.py, store.py): opening, schema, WAL."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flowplan.daemon.state.migrations import MIGRATIONS
from flowplan.daemon.state.store import DB_FILE, StateError, StateStore

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _write(store: StateStore, rows: int) -> None:
    """One commit per row."""
    for i in range(rows):
        store.set_switch(f"wf{i}", enabled=True, git_enabled=True, at=AT)


def _wal_frames(path: Path) -> int:
    """Frames in the WAL not yet copied back (checkpointing nothing, from a second reader)."""
    db = sqlite3.connect(path)
    try:
        _, logged, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(logged - copied)
    finally:
        db.close()


def test_background_checkpoints_keep_commits_free_of_checkpoints(tmp_path: Path) -> None:
    store = StateStore(tmp_path, checkpoint_every=0.05)
    try:
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        names = {t.name for t in threading.enumerate()}
        assert "flowplan-checkpoint" in names
        size_before = (tmp_path / DB_FILE).stat().st_size
        _write(store, 2000)  # past SQLite's 1,000-page mark for an automatic checkpoint
        deadline = time.monotonic() + 10
        while (tmp_path / DB_FILE).stat().st_size == size_before:
            assert time.monotonic() < deadline, "the checkpoint thread copied nothing back"
            time.sleep(0.02)
    finally:
        store.close()
    assert "flowplan-checkpoint" not in {t.name for t in threading.enumerate()}
    reopened = StateStore(tmp_path)
    try:
        assert reopened.switch("wf0") == reopened.switch("wf1999") == (True, True)
    finally:
        reopened.close()


def test_without_background_checkpoints_sqlite_checkpoints_in_the_commit(tmp_path: Path
                                                                         ) -> None:
    store = StateStore(tmp_path)
    try:
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        assert "flowplan-checkpoint" not in {t.name for t in threading.enumerate()}
        _write(store, 2000)
        assert _wal_frames(tmp_path / DB_FILE) < 1000
    finally:
        store.close()


def test_a_newer_schema_is_refused_with_an_upgrade_hint(tmp_path: Path) -> None:
    StateStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_FILE)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StateError, match=r"newer than this flowplan knows.*upgrade flowplan"):
        StateStore(tmp_path)


def test_a_file_that_is_not_a_database_is_refused_with_a_way_out(tmp_path: Path) -> None:
    (tmp_path / DB_FILE).write_text("not a database\n" * 100)
    with pytest.raises(StateError, match=r"state.sqlite3: file is not a database: restore the"
                                          r" database from a backup"):
        StateStore(tmp_path)


def test_an_empty_database_beside_run_folders_is_refused_until_they_are_moved_away(
        tmp_path: Path) -> None:
    """A lost database must not start over silently; moving `runs/` away is the deliberate
    way to start over."""
    (tmp_path / "runs" / "20260101T000000-1").mkdir(parents=True)
    (tmp_path / DB_FILE).write_bytes(b"")
    with pytest.raises(StateError, match=r"missing or empty but .*runs holds 1 run folder"):
        StateStore(tmp_path)
    (tmp_path / "runs").rename(tmp_path / "runs.old")
    StateStore(tmp_path).close()
    (tmp_path / "runs").mkdir()  # a database with its schema: run folders are its own
    (tmp_path / "runs" / "20260101T000000-2").mkdir()
    StateStore(tmp_path).close()


def test_a_second_run_of_the_same_tick_raises_the_stores_own_error(tmp_path: Path) -> None:
    """The store speaks its domain, not sqlite3: callers catch DuplicateRunError."""
    from flowplan.daemon.domain import DuplicateRunError, Run, RunStatus, RunTrigger

    def run(run_id: str) -> Run:
        return Run(run_id=run_id, workflow="wf", plan_version=1, plan_digest="d",
                   trigger=RunTrigger.SCHEDULE, logical_time=AT, status=RunStatus.PENDING,
                   created_at=AT)

    store = StateStore(tmp_path)
    try:
        store.insert_run(run("r1"), graph_version=1)
        with pytest.raises(DuplicateRunError, match="r2: a run with this id or of this"):
            store.insert_run(run("r2"), graph_version=1)
        with pytest.raises(DuplicateRunError, match="r1:"):
            store.insert_run(run("r1"), graph_version=1)
        assert [r.run_id for r in store.list_runs(workflow="wf")] == ["r1"]
    finally:
        store.close()


def test_only_a_commit_that_wrote_says_the_database_can_be_written_again(
        tmp_path: Path) -> None:
    """A read inside a transaction commits on a full disk too: it must not clear the error
    that health reports (NOT_SERVING) until a write or the probe succeeds."""
    store = StateStore(tmp_path / "state")
    for clear in ("write", "probe"):
        store.write_error = "database or disk is full"  # as after a refused commit
        with store.transaction() as db:
            db.execute("SELECT count(*) FROM runs").fetchone()
        assert store.write_error == "database or disk is full"
        if clear == "write":
            store.set_switch("w", enabled=True, git_enabled=True, at=datetime.now(UTC))
        else:
            store.probe_write()
        assert store.write_error is None


def test_a_backfills_unfinished_check_reads_its_active_runs_only(tmp_path: Path) -> None:
    """Asked at every run's end: through runs_by_backfill it walked the runs that already
    ended, which made a 100,000-run backfill quadratic."""
    store = StateStore(tmp_path)
    try:
        asked: list[str] = []
        store._db.set_trace_callback(asked.append)
        assert store.backfill_unfinished("bf_x") is False
        store._db.set_trace_callback(None)
        [query] = [q for q in asked if "backfill_id" in q]
        plan = store._db.execute(f"EXPLAIN QUERY PLAN {query}").fetchall()
        assert [row[3] for row in plan] == [
            "SEARCH runs USING INDEX runs_active_by_backfill (backfill_id=?)"]
    finally:
        store.close()
