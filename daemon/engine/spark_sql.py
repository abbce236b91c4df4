"""The Spark SQL runner of spark queues: `spark-submit spark_sql.py QUERY_FILE`.

Runs the statements of a rendered `.sql` node one after the other in one SparkSession (so
temporary views made by one statement are seen by the next), each to its end (a query's rows
are computed, not only planned), and prints the rows of the last statement as CSV, header
first, like the embedded SQL engine of local queues. A statement that fails, while planned or
while its rows are computed, stops the script: its number, first line and Spark's message go
to stderr, and the exit code is 1.

This file is the primary resource of a `spark-submit`: it runs in the Spark driver's Python,
which may not have flowplan installed, so it imports nothing but the standard library and
pyspark.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

MAX_ROWS = 10_000  # of the last statement, printed to the log


def statements(script: str) -> Iterator[tuple[int, str]]:
    """(first line, text) of each statement of `script`, split at `;` outside string
    literals (raw `r'...'` ones end at their first quote, as Spark lexes them), quoted
    identifiers and comments (`-- ...`, nestable `/* ... */`).
    Statements that hold nothing but comments and blanks are left out."""
    start, line, depth, quote, raw = 0, 1, 0, "", False
    text_line, has_code = 1, False  # the statement's first line; whether it has code yet
    i, end = 0, len(script)
    while i < end:
        char = script[i]
        pair = script[i:i + 2]
        if quote:
            if char == "\\" and quote != "`" and not raw:
                i += 1  # an escaped character, e.g. \' in a string
                line += script[i:i + 1] == "\n"
            elif char == quote:
                quote = ""
        elif depth:
            if pair == "/*":
                depth, i = depth + 1, i + 1
            elif pair == "*/":
                depth, i = depth - 1, i + 1
        elif pair == "--":
            newline = script.find("\n", i)
            i = end if newline < 0 else newline
            continue
        elif pair == "/*":
            depth, i = 1, i + 1
        elif char in "'\"`" or (char in "rR" and script[i + 1:i + 2] in ("'", '"')
                                 and not (i and (script[i - 1].isalnum() or script[i - 1] == "_"))):
            raw = char in "rR"
            if not has_code:
                start, text_line, has_code = i, line, True
            i += raw
            quote = script[i]
        elif char == ";":
            if has_code:
                yield text_line, script[start:i].strip()
            has_code = False
        elif not char.isspace() and not has_code:
            start, text_line, has_code = i, line, True
        if char == "\n":
            line += 1
        i += 1
    if has_code:
        yield text_line, script[start:].strip()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: spark-submit spark_sql.py QUERY_FILE", file=sys.stderr)
        return 2
    path = Path(argv[1])
    script = path.read_text(encoding="utf-8")
    from py4j.protocol import Py4JJavaError  # type: ignore[import-untyped]
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    try:
        todo = list(statements(script))
        columns: list[str] = []
        rows: list[Any] = []
        for number, (first_line, statement) in enumerate(todo, start=1):
            try:
                columns, rows = run(spark.sql(statement), last=number == len(todo))
            except (PySparkException, Py4JJavaError) as exc:
                message = exc.java_exception.toString() if isinstance(exc, Py4JJavaError) else exc
                print(f"spark sql error: {path.name}, statement {number} (line {first_line}):"
                      f" {message}", file=sys.stderr)
                return 1
        if columns:
            # One write: spark-submit runs the driver with PYTHONUNBUFFERED, so row-by-row
            # writes would let the JVM's log lines (same file) land between the rows.
            table = io.StringIO()
            writer = csv.writer(table)
            writer.writerow(columns)
            writer.writerows(tuple(row) for row in rows[:MAX_ROWS])
            sys.stdout.write(table.getvalue())
            if len(rows) > MAX_ROWS:
                print(f"(only the first {MAX_ROWS} rows are shown)", file=sys.stderr)
        sys.stdout.flush()
        return 0
    finally:
        spark.stop()


def run(result: DataFrame, *, last: bool) -> tuple[list[str], list[Any]]:
    """Execute a statement's DataFrame to its end: `spark.sql` runs commands (DDL, INSERT,
    ...) at once but only plans a query, whose rows must be computed for its checks
    (`assert_true`, `raise_error`, a bad cast) to fail. The last statement's columns and its
    first `MAX_ROWS + 1` rows; other statements' rows are computed and dropped (a "noop"
    write: nothing reaches the driver)."""
    if not result.columns:
        return [], []  # a command without output: it has run
    noop = result.write.format("noop").mode("overwrite")
    if not last:
        noop.save()
        return [], []
    rows = result.limit(MAX_ROWS + 1).collect()
    if len(rows) > MAX_ROWS:
        # The limit stopped the query early (fewer rows would mean that every partition was
        # read to its end): run it to its end too, so that a check in a later row fails.
        noop.save()
    return result.columns, rows


if __name__ == "__main__":
    sys.exit(main(sys.argv))
