"""The embedded SQL engine of local queues: SQLite from the standard library.

`python -m flowplan.daemon.engine.sql QUERY_FILE` runs a rendered `.sql` node against the database
in `$FLOWPLAN_SQLITE_DB` (one per workflow under the state directory, so tables persist
between runs), in one transaction, and prints the rows of the last statement as CSV.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import sys
from pathlib import Path


def run(script: str, database: str) -> list[tuple[object, ...]] | None:
    """Execute every statement in one transaction; the last statement's rows, if any."""
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("BEGIN")
        rows: list[tuple[object, ...]] | None = None
        header: list[str] = []
        for statement in _split(script):
            cursor = connection.execute(statement)
            if cursor.description:
                header = [d[0] for d in cursor.description]
                rows = [tuple(header), *cursor.fetchall()]
            else:
                rows = None
        connection.execute("COMMIT")
        return rows
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    finally:
        connection.close()


def _split(script: str) -> list[str]:
    """Statements of a script, split where sqlite3 says a statement is complete."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip() and not current.strip().startswith("--"):
        statements.append(current.strip())
    return statements


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m flowplan.daemon.engine.sql QUERY_FILE", file=sys.stderr)
        return 2
    database = os.environ.get("FLOWPLAN_SQLITE_DB", "flowplan.sqlite3")
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    try:
        rows = run(Path(sys.argv[1]).read_text(encoding="utf-8"), database)
    except sqlite3.Error as exc:
        print(f"sql error: {exc}", file=sys.stderr)
        return 1
    if rows:
        csv.writer(sys.stdout).writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
