"""Numbered schema migrations of the state database. Append only: never edit a released one.

`PRAGMA user_version` holds the number of the last migration applied.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: runs, node runs, attempts, backfills, scheduling switches, ticks
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        plan_version INTEGER NOT NULL,
        plan_digest TEXT NOT NULL,
        graph_version INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        logical_time TEXT NOT NULL,
        data_interval_start TEXT,
        data_interval_end TEXT,
        status TEXT NOT NULL,
        params TEXT NOT NULL,
        remarks TEXT NOT NULL DEFAULT '',
        queue_override TEXT,
        backfill_id TEXT,
        previous_run_id TEXT,
        cancel_requested_at TEXT,
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT
    );
    CREATE UNIQUE INDEX runs_one_per_tick ON runs (workflow, logical_time, trigger)
        WHERE trigger = 'schedule';
    CREATE INDEX runs_by_workflow ON runs (workflow, run_id);
    CREATE INDEX runs_by_backfill ON runs (backfill_id, logical_time)
        WHERE backfill_id IS NOT NULL;
    CREATE INDEX runs_active ON runs (status) WHERE status IN ('PENDING', 'RUNNING');

    CREATE TABLE node_runs (
        run_id TEXT NOT NULL REFERENCES runs (run_id),
        name TEXT NOT NULL,
        position INTEGER NOT NULL,
        status TEXT NOT NULL,
        queue TEXT NOT NULL,
        plan_version INTEGER NOT NULL,
        copied_from_run_id TEXT,
        next_attempt_at TEXT,
        skip_reason TEXT,
        PRIMARY KEY (run_id, name)
    ) WITHOUT ROWID;

    CREATE TABLE attempts (
        run_id TEXT NOT NULL,
        node TEXT NOT NULL,
        number INTEGER NOT NULL,
        plan_version INTEGER NOT NULL,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        exit_code INTEGER,
        error TEXT,
        log_path TEXT,
        pid INTEGER,
        pid_start INTEGER,
        copied_from_run_id TEXT,
        PRIMARY KEY (run_id, node, number),
        FOREIGN KEY (run_id, node) REFERENCES node_runs (run_id, name)
    ) WITHOUT ROWID;
    CREATE INDEX attempts_running ON attempts (status) WHERE status = 'RUNNING';

    CREATE TABLE backfills (
        backfill_id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        start_time TEXT NOT NULL,
        end_time TEXT NOT NULL,
        status TEXT NOT NULL,
        max_parallel_runs INTEGER NOT NULL,
        queue_override TEXT,
        remarks TEXT NOT NULL DEFAULT '',
        failure_emails TEXT NOT NULL DEFAULT '[]',
        reprocess TEXT NOT NULL,
        created_at TEXT NOT NULL,
        finished_at TEXT
    );

    CREATE TABLE scheduling_switches (
        workflow TEXT PRIMARY KEY,
        enabled INTEGER NOT NULL,
        git_enabled INTEGER NOT NULL,
        changed_at TEXT NOT NULL
    );

    CREATE TABLE ticks (
        workflow TEXT NOT NULL,
        logical_time TEXT NOT NULL,
        run_id TEXT,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (workflow, logical_time)
    ) WITHOUT ROWID;
    """,
    # 2: how far the scheduler has considered each workflow's ticks
    """
    CREATE TABLE schedule_cursors (
        workflow TEXT PRIMARY KEY,
        considered_until TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # 3: the notification outbox: each e-mail is a row before it is sent (daemon/notify)
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        run_id TEXT,
        backfill_id TEXT,
        node TEXT,
        recipients TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        message_id TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        last_error TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE status = 'PENDING';
    """,
    # 4: each run's status history, numbered, for WatchRun: written in the same commit as
    # the change it records, so sequences survive restarts without gaps
    """
    CREATE TABLE run_events (
        run_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        node TEXT,
        status TEXT NOT NULL,
        attempt INTEGER,
        at TEXT NOT NULL,
        PRIMARY KEY (run_id, sequence)
    ) WITHOUT ROWID;
    """,
    # 5: the Spark application id of an attempt on a spark queue (daemon/engine/spark.py)
    """
    ALTER TABLE attempts ADD COLUMN spark_application_id TEXT;
    """,
    # 6: "has this backfill an unfinished run?" at each run's end, without walking the runs
    # that already ended (runs_by_backfill did: quadratic over a 100,000-run backfill). The
    # WHERE is the query's own, word for word, so that SQLite uses it.
    """
    CREATE INDEX runs_active_by_backfill ON runs (backfill_id)
        WHERE status IN ('PENDING', 'RUNNING');
    """,
)
