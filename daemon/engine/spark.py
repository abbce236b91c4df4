"""The spark executor: nodes of `executor: spark` queues become `spark-submit` commands.

A `.py` node is submitted as is; a `.sql` node is rendered to `query.sql` in its attempt
folder and submitted with the bundled runner `spark_sql.py`, which runs its statements in a
SparkSession. Both go to the queue's `master` with the queue's `conf`, in client deploy mode
unless the conf says otherwise: the driver then runs inside the attempt's process group, so
the launcher's log capture, timeouts and cancels apply to it as to any local process.

The Spark application id is read back from the attempt's log when the attempt ends
(`application_id`). To make local masters name it too (their driver logs no id of its own),
each submission writes a Spark event log to `<attempt>/spark-events/` unless the queue's
conf configures event logging itself; the driver logs "Logging events to .../<app id>".
See docs/spark.md.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flowplan.compiler.plan import QueuePlan

SQL_RUNNER = Path(__file__).resolve().parent / "spark_sql.py"
EVENTS_DIR = "spark-events"

# Standalone `app-20260101020000-0000`, YARN `application_1767225600000_0001`, local
# `local-1767225600000`, Kubernetes `spark-<32 hex>`; `_` may come before one (Spark 4's
# rolling event logs are `eventlog_v2_<app id>/events_1_<app id>.zstd`).
APPLICATION_ID = re.compile(
    rb"(?<![A-Za-z0-9-])"
    rb"(app-\d{14}-\d{4,}|application_\d{10,}_\d{4,}|local-\d{10,}|spark-[0-9a-f]{32})"
    rb"(?![\w-])")
# Spark 4's default `spark.redaction.regex`, plus the JVM's command line: it holds the job's
# args (`${params.password}` among them), which the event log and the UI's environment page
# would show in the clear. Spark redacts the value of any property whose key or value matches.
REDACTION_REGEX = r"(?i)secret|password|token|access[.]?key|credential|sun\.java\.command"
_LOG_SCAN_BYTES = 16 * 1024 * 1024  # the id comes with the SparkContext, near the start
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SparkSubmit:
    """The `spark-submit` to run, and the Spark home it belongs to (if known)."""

    path: Path
    home: Path | None


def not_found_message(queue: str) -> str:
    return (f"queue '{queue}' uses executor spark, but spark-submit was not found:"
            " pip install 'flowplan[spark]' (or set SPARK_HOME)")


def find_spark_submit(*, spark_home: str | None, pyspark_dir: Path | None,
                      search_path: str | None) -> SparkSubmit | None:
    """`spark-submit` from `$SPARK_HOME/bin`, else the pyspark package's `bin` folder, else
    the first on `search_path` (PATH's format); None if none of them has it."""
    if spark_home:
        found = _executable(Path(spark_home) / "bin" / "spark-submit")
        if found is not None:
            return SparkSubmit(found, Path(spark_home))
    if pyspark_dir is not None:
        found = _executable(pyspark_dir / "bin" / "spark-submit")
        if found is not None:
            return SparkSubmit(found, pyspark_dir)
    if search_path:
        which = shutil.which("spark-submit", path=search_path)
        if which is not None:
            real = Path(which).resolve()
            home = real.parent.parent
            return SparkSubmit(Path(which),
                               home if (home / "bin" / "spark-class").is_file() else None)
    return None


def locate() -> SparkSubmit | None:
    """`find_spark_submit` with this process's environment and installed pyspark."""
    return find_spark_submit(spark_home=os.environ.get("SPARK_HOME"),
                             pyspark_dir=_pyspark_dir(),
                             search_path=os.environ.get("PATH", os.defpath))


def _pyspark_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("pyspark")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _executable(path: Path) -> Path | None:
    return path if path.is_file() and os.access(path, os.X_OK) else None


def cluster_mode(queue: QueuePlan) -> bool:
    """The driver runs in the cluster (`spark.submit.deployMode: cluster`), not in the
    attempt's process group."""
    return queue.conf.get("spark.submit.deployMode", "client") == "cluster"


def submit_argv(submit: SparkSubmit, queue: QueuePlan, *, app_name: str, attempt_dir: Path,
                primary: Path, args: Sequence[str], python: str | None = None,
                files: Sequence[Path] = ()) -> tuple[str, ...]:
    """`spark-submit --master M --name N --conf k=v ... PRIMARY ARGS`.

    Defaults that the queue's conf does not set itself: the application name; a redaction
    regex that also hides the JVM's command line (it holds the job's args) from the event log
    and the UI; in client mode an event log in the attempt folder (so that the log names the
    application id) and the driver's Python (the queue's `python`, else this interpreter,
    which has pyspark when the pyspark package's spark-submit is used; with a `local` master
    the workers' too).
    `files` are shipped to the driver's working directory (`spark.files`, added to the
    conf's own).
    """
    conf = dict(queue.conf)
    argv: list[str] = [str(submit.path)]
    if queue.master:
        argv += ["--master", queue.master]
    if "spark.app.name" not in conf:
        argv += ["--name", app_name]
    if files:
        conf["spark.files"] = ",".join([*filter(None, [conf.get("spark.files")]),
                                        *(str(f) for f in files)])
    conf.setdefault("spark.redaction.regex", REDACTION_REGEX)
    client = not cluster_mode(queue)
    if client and not ({"spark.eventLog.enabled", "spark.eventLog.dir"} & conf.keys()):
        events = attempt_dir / EVENTS_DIR
        events.mkdir(parents=True, exist_ok=True)
        conf["spark.eventLog.enabled"] = "true"
        conf["spark.eventLog.dir"] = events.resolve().as_uri()
    if client and primary.suffix == ".py" and not (
            {"spark.pyspark.python", "spark.pyspark.driver.python"} & conf.keys()):
        interpreter = python or sys.executable
        conf["spark.pyspark.driver.python"] = interpreter
        if (queue.master or "local").startswith("local"):
            conf["spark.pyspark.python"] = interpreter
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    return (*argv, str(primary), *args)


def submit_env(submit: SparkSubmit, env: Mapping[str, str]) -> dict[str, str]:
    """The node's env plus SPARK_HOME of the spark-submit chosen (unless the node sets one),
    so that its scripts find their own Spark whatever the daemon's SPARK_HOME says."""
    out = dict(env)
    if submit.home is not None:
        out.setdefault("SPARK_HOME", str(submit.home))
    return out


def application_id(attempt_dir: Path) -> str | None:
    """The Spark application id of an attempt: the first one its log names, else the name of
    its event log file; None when it has neither (e.g. it failed before Spark started)."""
    found = _scan(attempt_dir / "log")
    if found is not None:
        return found
    try:
        names = sorted(os.listdir(attempt_dir / EVENTS_DIR))
    except OSError:
        return None
    for name in names:
        match = APPLICATION_ID.search(name.encode())
        if match is not None:
            return match.group(1).decode()
    return None


def attempt_application_id(queue: QueuePlan | None, attempt_dir: Path) -> str | None:
    """`application_id` for an attempt on a spark queue; None for other executors."""
    if queue is None or queue.executor != "spark":
        return None
    return application_id(attempt_dir)


def _scan(log: Path) -> str | None:
    try:
        handle = log.open("rb")
    except OSError:
        return None
    with handle:
        data = b""
        read = 0
        while read < _LOG_SCAN_BYTES:
            chunk = handle.read(_CHUNK)
            read += len(chunk)
            data = data[-64:] + chunk  # keep the end of the last chunk: an id may span both
            match = APPLICATION_ID.search(data)
            if match is not None and (match.end() < len(data) or not chunk):
                return match.group(1).decode()
            if not chunk:
                return None
    return None
