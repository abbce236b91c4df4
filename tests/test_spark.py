"""The spark executor with real Spark: a PySpark and a Spark SQL job through the real
engine, launcher and state store on `local[1]`, and on a standalone cluster (master and one
worker started here on loopback); a cancel kills the driver's whole process group (client
mode) and, on the cluster, the application's executor; a missing spark-submit fails the node
with the install hint; the SQL runner runs every statement to its end and reports errors as
its own, and the event log hides the job's args. Plus the pieces without a JVM: the
spark-submit lookup, the argv, the SQL statement splitter, the application id parser and how
`flowplan status` shows the id.

The real-Spark tests need the `spark` extra (pyspark ships spark-submit and the jars) and
Java 17+; CI installs both. Every Spark process is kept small: one core, 512 MiB heaps, no UI,
one shuffle partition, and the JIT's first tier only (JVM start-up dominates jobs this small).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import FLOWPLAN, ROOT, running
from google.protobuf.timestamp_pb2 import Timestamp
from test_engine_real import Env as RealEnv
from test_engine_real import drive as real_drive

from flowplan.compiler.plan import NodePlan, QueuePlan, SourcePlan
from flowplan.daemon.client import render
from flowplan.daemon.domain import NodeStatus, RunStatus
from flowplan.daemon.engine import spark
from flowplan.daemon.engine.commands import CommandError, build_command
from flowplan.daemon.engine.spark_sql import statements
from flowplan.v1 import workflow_service_pb2 as pb

LOGICAL = datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
SMALL = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "1",
         "spark.driver.memory": "512m", "spark.driver.extraJavaOptions": JAVA_OPTIONS}
LOOPBACK = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}

needs_spark = pytest.mark.skipif(
    importlib.util.find_spec("pyspark") is None,
    reason="pyspark is not installed (pip install -e '.[spark]'); CI installs it")


# ---- helpers --------------------------------------------------------------------------------


def settings(queues: dict[str, dict[str, Any]]) -> str:
    return json.dumps({"defaults": {"queue": "default"},
                       "queues": {"default": {"executor": "local", "concurrency": 2},
                                  "dev": {"executor": "local", "concurrency": 1}, **queues}})


class Env(RealEnv):
    logical_time = LOGICAL
    kill_grace_seconds = 5.0


def drive(tmp_path: Path, make_repo: Any, body: Callable[[Env], Awaitable[None]],
          limit: float = 120) -> None:
    real_drive(tmp_path, make_repo, body, env_type=Env, limit=limit)


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        fields = _stat(int(entry)) if entry.isdigit() else None
        if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def descendants(pid: int) -> set[int]:
    """`pid` and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        fields = _stat(int(entry)) if entry.isdigit() else None
        if fields is not None and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo.extend(children.get(current, ()))
    return found


def processes_naming(text: str) -> list[int]:
    """Live processes whose command line contains `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline and running(int(entry)):
                found.append(int(entry))
    return found


# ---- no JVM: the lookup, the SQL splitter, the id parser -----------------------------------


def test_lookup_order_and_nothing_found(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert spark.find_spark_submit(spark_home=None, pyspark_dir=None, search_path="") is None
    assert spark.find_spark_submit(spark_home=str(empty), pyspark_dir=empty,
                                   search_path=str(empty)) is None
    homes = {}
    for name in ("home", "pyspark", "onpath"):
        bin_dir = tmp_path / name / "bin"
        bin_dir.mkdir(parents=True)
        for tool in ("spark-submit", "spark-class"):
            (bin_dir / tool).write_text("#!/bin/sh\n")
            (bin_dir / tool).chmod(0o755)
        homes[name] = tmp_path / name
    found = spark.find_spark_submit(spark_home=str(homes["home"]), pyspark_dir=homes["pyspark"],
                                    search_path=str(homes["onpath"] / "bin"))
    assert found == spark.SparkSubmit(homes["home"] / "bin" / "spark-submit", homes["home"])
    found = spark.find_spark_submit(spark_home=str(empty), pyspark_dir=homes["pyspark"],
                                    search_path=str(homes["onpath"] / "bin"))
    assert found is not None and found.home == homes["pyspark"]
    found = spark.find_spark_submit(spark_home=None, pyspark_dir=None,
                                    search_path=f"{empty}:{homes['onpath'] / 'bin'}")
    assert found is not None and found.home == homes["onpath"]


def test_sql_statements_split_outside_literals_and_comments():
    script = ("-- header; not a statement\n"
              "SELECT 'a;b' AS s, \"c;d\" AS `e;f`;\n"
              "/* block; /* nested; */ still comment; */\n"
              "\n"
              "SELECT 'it''s', 'back\\'slash;'  -- trailing; comment\n"
              ";;\n"
              "SELECT 3")
    assert list(statements(script)) == [
        (2, "SELECT 'a;b' AS s, \"c;d\" AS `e;f`"),
        (5, "SELECT 'it''s', 'back\\'slash;'  -- trailing; comment"),
        (7, "SELECT 3")]
    assert list(statements("-- only a comment;\n/* ; */\n")) == []


def test_application_id_from_the_log_or_the_event_log(tmp_path):
    log = tmp_path / "log"
    log.write_bytes(b"x" * (spark._CHUNK - 10)  # an id across the first chunk's end
                    + b" INFO StandaloneSchedulerBackend: Connected to Spark cluster with app"
                      b" ID app-20260329020000-0007\n")
    assert spark.application_id(tmp_path) == "app-20260329020000-0007"
    log.write_text("INFO Client: Submitted application application_1767225600000_0042\n")
    assert spark.application_id(tmp_path) == "application_1767225600000_0042"
    log.write_text("no id here\n")
    events = tmp_path / spark.EVENTS_DIR
    events.mkdir()
    (events / "eventlog_v2_local-1767225600123").mkdir()  # Spark 4: rolling event logs
    assert spark.application_id(tmp_path) == "local-1767225600123"


def test_submit_argv_master_conf_and_defaults(tmp_path):
    submit = spark.SparkSubmit(Path("/opt/spark/bin/spark-submit"), Path("/opt/spark"))
    job = tmp_path / "job.py"
    queue = QueuePlan(executor="spark", concurrency=1, master="spark://10.0.0.5:7077",
                      conf={"spark.executor.memory": "2g"}, python="/usr/bin/python3.11")
    argv = spark.submit_argv(submit, queue, app_name="flowplan:w.n:wr_1:1",
                             attempt_dir=tmp_path / "1", primary=job, args=["--ds", "x y"],
                             python=queue.python)
    events = (tmp_path / "1" / spark.EVENTS_DIR).as_uri()
    assert argv == (
        "/opt/spark/bin/spark-submit", "--master", "spark://10.0.0.5:7077",
        "--name", "flowplan:w.n:wr_1:1", "--conf", "spark.executor.memory=2g",
        "--conf", f"spark.redaction.regex={spark.REDACTION_REGEX}",
        "--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={events}",
        "--conf", "spark.pyspark.driver.python=/usr/bin/python3.11",
        str(job), "--ds", "x y")
    assert (tmp_path / "1" / spark.EVENTS_DIR).is_dir()  # Spark requires it to exist
    # cluster mode: the driver is remote, nothing local is pointed at; the conf's own
    # settings win over the defaults
    queue = QueuePlan(executor="spark", concurrency=1, master="yarn",
                      conf={"spark.submit.deployMode": "cluster", "spark.app.name": "mine",
                            "spark.files": "hdfs:///a.txt"})
    argv = spark.submit_argv(submit, queue, app_name="ignored", attempt_dir=tmp_path / "2",
                             primary=spark.SQL_RUNNER, args=["query.sql"],
                             files=[tmp_path / "query.sql"])
    assert argv == (
        "/opt/spark/bin/spark-submit", "--master", "yarn",
        "--conf", "spark.submit.deployMode=cluster", "--conf", "spark.app.name=mine",
        "--conf", f"spark.files=hdfs:///a.txt,{tmp_path / 'query.sql'}",
        "--conf", f"spark.redaction.regex={spark.REDACTION_REGEX}",
        str(spark.SQL_RUNNER), "query.sql")


def test_shell_nodes_cannot_run_on_a_spark_queue(tmp_path):
    node = NodePlan(name="say", type="shell", command="echo hi", queue="spark",
                    queue_pinned=False, retries=0, retry_delay_seconds=0, retry_backoff=1,
                    timeout_seconds=None, tags={})
    queue = QueuePlan(executor="spark", concurrency=1, master="local[1]")
    with pytest.raises(CommandError, match="queue 'spark' uses executor spark, which runs"
                                           " python and sql sources; node 'say' is a shell"
                                           " command: put it on a local queue"):
        build_command(node, queue, {}, queue_name="spark", sources_dir=tmp_path,
                      attempt_dir=tmp_path)


def test_the_messages_name_the_queue_that_runs_the_node_not_the_plans(tmp_path, monkeypatch):
    """A run's queue override sends a node without a queue of its own to a spark queue: the
    reason names that queue, not the plan's."""
    queue = QueuePlan(executor="spark", concurrency=1, master="local[1]")
    shell = NodePlan(name="sh", type="shell", command="echo hi", queue="default",
                     queue_pinned=False, retries=0, retry_delay_seconds=0, retry_backoff=1,
                     timeout_seconds=None, tags={})
    with pytest.raises(CommandError, match=r"^queue 'heavy' uses executor spark, which runs"
                                           " python and sql sources; node 'sh' is a shell"
                                           " command"):
        build_command(shell, queue, {}, queue_name="heavy", sources_dir=tmp_path,
                      attempt_dir=tmp_path)
    job = NodePlan(name="j", type="python", source=SourcePlan(path="jobs/j.py", text="",
                                                              sha256="0" * 64),
                   queue="default", queue_pinned=False, retries=0, retry_delay_seconds=0,
                   retry_backoff=1, timeout_seconds=None, tags={})
    monkeypatch.setattr(spark, "locate", lambda: None)
    with pytest.raises(CommandError, match=r"^queue 'heavy' uses executor spark, but"
                                           " spark-submit was not found"):
        build_command(job, queue, {}, queue_name="heavy", sources_dir=tmp_path,
                      attempt_dir=tmp_path)


def test_status_shows_the_application_id_of_a_single_successful_attempt():
    started, finished = Timestamp(seconds=1_774_749_600), Timestamp(seconds=1_774_749_612)
    run = pb.Run(run_id="wr_1", workflow="w", status=pb.RUN_STATUS_SUCCEEDED, plan_version=1,
                 nodes=[pb.NodeRun(name="rollup", status=pb.NODE_STATUS_SUCCEEDED,
                                   queue="spark", attempts=[pb.Attempt(
                                       number=1, status=pb.ATTEMPT_STATUS_SUCCEEDED,
                                       started_at=started, finished_at=finished, exit_code=0,
                                       spark_application_id="local-1774749601234")]),
                        pb.NodeRun(name="report", status=pb.NODE_STATUS_SUCCEEDED,
                                   queue="default", attempts=[pb.Attempt(
                                       number=1, status=pb.ATTEMPT_STATUS_SUCCEEDED,
                                       started_at=started, finished_at=finished,
                                       exit_code=0)])])
    lines = render.run_graph(run, render.Paint(color=False), datetime.now(UTC))
    assert lines == [
        "NODE    STATUS     ATTEMPTS  DURATION  QUEUE    UPSTREAM",
        "rollup  SUCCEEDED  1         12.0s     spark    -",
        "    └ attempt 1  SUCCEEDED  12.0s  exit 0  local-1774749601234",
        "report  SUCCEEDED  1         12.0s     default  -",  # no Spark: nothing to add
        "2 nodes: 2 succeeded"]


# ---- real Spark -----------------------------------------------------------------------------

EXTRACT = """
import os
import sys

from pyspark.sql import SparkSession

ds, out = sys.argv[1], sys.argv[2]
spark = SparkSession.builder.getOrCreate()
rows = [(ds, "eu", 10), (ds, "eu", 20), (ds, "us", 5), ("2000-01-01", "us", 99)]
frame = spark.createDataFrame(rows, "ds string, region string, amount int")
frame.coalesce(1).write.mode("overwrite").option("header", True).csv(f"{out}/sales")
with open(f"{out}/extract.txt", "w") as handle:
    handle.write(f"{ds} {frame.filter(frame.ds == ds).count()} {os.environ['FLOWPLAN_NODE']}"
                 f" {spark.sparkContext.applicationId}\\n")
spark.stop()
"""

ROLLUP = """
-- the day's totals per region; a comment with a ; in it
CREATE TEMPORARY VIEW sales USING csv OPTIONS (path '{out}/sales', header 'true',
  inferSchema 'true');
SELECT '${{ds}}' AS ds, region, sum(amount) AS total, 'a;b' AS note
FROM sales WHERE ds = '${{ds}}' GROUP BY region ORDER BY region;
"""


@needs_spark
def test_pyspark_and_spark_sql_jobs_on_local(tmp_path, make_repo):
    out = tmp_path / "out"
    files = {
        "flowplan.yaml": settings({"spark": {"executor": "spark", "concurrency": 1,
                                             "master": "local[1]", "conf": SMALL}}),
        "workflows/rollup.yaml": f"""
name: rollup
queue: spark
nodes:
  - name: extract
    source: jobs/extract.py
    args: ["${{ds}}", "{out}"]
  - name: rollup
    source: jobs/rollup.sql
    upstream: [extract]
""",
        "jobs/extract.py": EXTRACT,
        "jobs/rollup.sql": ROLLUP.format(out=out)}

    async def body(env: Env) -> None:
        env.publish(files)
        done = await env.engine.wait_run(env.start("rollup"))
        extract, rollup = done.node("extract").attempts[0], done.node("rollup").attempts[0]
        logs = {a.node: Path(a.log_path or "").read_text() for a in (extract, rollup)}
        assert done.status is RunStatus.SUCCEEDED, logs
        # the PySpark job: args templated, FLOWPLAN_* in its environment
        ds, count, node, app_id = (out / "extract.txt").read_text().split()
        assert (ds, count, node) == ("2026-03-29", "3", "extract")
        assert extract.spark_application_id == app_id
        assert re.fullmatch(r"local-\d{13}", app_id)
        # the Spark SQL job: the last statement's rows as CSV, in its captured log
        assert "ds,region,total,note\n2026-03-29,eu,30,a;b\n2026-03-29,us,5,a;b\n" in (
            logs["rollup"])
        assert "SparkContext: Running Spark version" in logs["rollup"]  # the driver's log
        assert rollup.spark_application_id is not None
        assert re.fullmatch(r"local-\d{13}", rollup.spark_application_id)
        assert rollup.spark_application_id != app_id
        assert rollup.error is None and rollup.exit_code == 0

    drive(tmp_path, make_repo, body)


SLEEPER = """
import sys
import time
from pathlib import Path

from pyspark.sql import SparkSession

marker = Path(sys.argv[1])
spark = SparkSession.builder.getOrCreate()


def block(rows):
    marker.write_text("running")  # in a Python worker of the executor: the job is running
    time.sleep(600)
    return rows


spark.sparkContext.parallelize([1], 1).mapPartitions(block).collect()
"""


@needs_spark
def test_cancel_kills_the_driver_and_its_workers(tmp_path, make_repo):
    marker = tmp_path / "running"
    files = {
        "flowplan.yaml": settings({"spark": {"executor": "spark", "concurrency": 1,
                                             "master": "local[1]", "conf": SMALL}}),
        "workflows/long.yaml": f"""
name: long
nodes:
  - name: sleeper
    source: jobs/sleeper.py
    queue: spark
    retries: 2
    args: ["{marker}"]
""",
        "jobs/sleeper.py": SLEEPER}

    async def body(env: Env) -> None:
        env.publish(files)
        run_id = env.start("long")
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert time.monotonic() < deadline, "the Spark job did not start"
            await asyncio.sleep(0.2)
        attempt = env.engine.get_run(run_id).node("sleeper").attempts[0]
        assert attempt.pid is not None
        tree = descendants(attempt.pid)
        try:
            await cancel_and_check(env, run_id, attempt.pid, tree)
        except BaseException:  # a failure must not leave a JVM sleeping for ten minutes
            for pid in tree:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            raise

    async def cancel_and_check(env: Env, run_id: str, pid: int, tree: set[int]) -> None:
        members = group_members(pid)
        jvms = [p for p in members if b"java" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert jvms, "the driver JVM runs in the attempt's process group (client mode)"
        # the JVM, the Python driver, pyspark's worker daemon (a process group of its own,
        # which ends when the JVM closes its stdin) and the worker running the task
        assert len(tree) >= 4, tree
        env.engine.cancel_run(run_id)
        done = await env.engine.wait_run(run_id)
        assert done.status is RunStatus.CANCELLED
        node = done.node("sleeper")
        assert node.status is NodeStatus.CANCELLED and len(node.attempts) == 1
        assert node.attempts[0].spark_application_id is not None
        assert node.attempts[0].exit_code in (143, 137)  # SIGTERM (or SIGKILL after the grace)
        for _ in range(100):
            if not group_members(pid) and not any(running(p) for p in tree):
                break
            await asyncio.sleep(0.1)
        assert group_members(pid) == []
        assert [p for p in tree if running(p)] == []
        assert processes_naming(f"flowplan:long.sleeper:{run_id}") == []

    drive(tmp_path, make_repo, body)


@needs_spark
def test_missing_spark_submit_fails_the_node_without_retry(tmp_path, make_repo):
    empty = tmp_path / "empty"
    (empty / "pyspark").mkdir(parents=True)  # shadows the installed pyspark: no bin/ in it
    (empty / "pyspark" / "__init__.py").write_text("")
    repo = make_repo({
        "flowplan.yaml": settings({"spark": {"executor": "spark", "master": "local[1]"}}),
        "workflows/w.yaml": "name: w\nnodes: [{source: jobs/j.py, queue: spark, retries: 3}]\n",
        "jobs/j.py": "print('never')\n"})
    env = {**os.environ, "SPARK_HOME": str(empty), "PYTHONPATH": str(empty),
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([*FLOWPLAN, "debug", str(repo), "w"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("--- j, attempt 1: queue 'spark' uses executor spark, but spark-submit was not"
            " found: pip install 'flowplan[spark]' (or set SPARK_HOME)") in result.stdout
    assert "attempt 2" not in result.stdout


# The SQL runner on several scripts in one driver (one JVM: a new SparkContext per script),
# submitted with flowplan's own argv, so its event log can be read back too.
SQL_DRIVER = """
import contextlib
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, {runner_dir!r})
import spark_sql

spark_sql.MAX_ROWS = 3
results, _flag, _secret, *scripts = sys.argv[1:]
out = {{}}
for script in scripts:
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = spark_sql.main(["spark_sql.py", script])
    except Exception as exc:  # the runner's bug: a traceback instead of its message
        code = f"raised {{exc!r}}"
    out[Path(script).name] = [code, stdout.getvalue(), stderr.getvalue()]
Path(results).write_text(json.dumps(out))
"""

SQL_SCRIPTS = {
    # a check in a statement that is not the last one: its rows must be computed
    "mid.sql": ("CREATE TEMPORARY VIEW v AS SELECT 0 AS cnt;\n"
                "SELECT assert_true(cnt > 0, 'no rows in v') FROM v;\n"
                "SELECT 'after' AS status;\n"),
    # a runtime error in the last statement: the runner's message, no traceback
    "last.sql": "CREATE TEMPORARY VIEW v AS SELECT 1 AS x;\n\nSELECT raise_error('boom') FROM v\n",
    # the last statement fails in a row after the rows printed (MAX_ROWS is 3 here)
    "late.sql": "SELECT id, assert_true(id < 50, 'late row') AS ok FROM range(0, 100, 1, 1)",
    "ok.sql": ("CREATE TEMPORARY VIEW v AS SELECT id AS x FROM range(5);\n"
               "SELECT assert_true(x >= 0) FROM v;\n"
               "SET spark.sql.shuffle.partitions = 1;\n"
               "SELECT x, 'a;b' AS s FROM v ORDER BY x;\n"),
}


@needs_spark
def test_sql_runner_executes_every_statement_and_the_event_log_hides_the_args(tmp_path):
    submit = spark.locate()
    assert submit is not None
    for name, text in SQL_SCRIPTS.items():
        (tmp_path / name).write_text(text)
    driver = tmp_path / "driver.py"
    driver.write_text(SQL_DRIVER.format(runner_dir=str(spark.SQL_RUNNER.parent)))
    results, secret = tmp_path / "results.json", "hunter2-not-for-logs"
    queue = QueuePlan(executor="spark", concurrency=1, master="local[1]",
                      conf={**SMALL, "spark.eventLog.compress": "false"})  # readable here
    argv = spark.submit_argv(submit, queue, app_name="flowplan:w.sql:wr_1:1",
                             attempt_dir=tmp_path / "1", primary=driver,
                             args=[str(results), "--pw", secret,
                                   *(str(tmp_path / name) for name in SQL_SCRIPTS)])
    done = subprocess.run(argv, cwd=tmp_path, env=spark.submit_env(submit, os.environ),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(results.read_text())

    code, stdout, stderr = out["mid.sql"]
    assert (code, stdout) == (1, ""), out["mid.sql"]
    assert stderr.startswith("spark sql error: mid.sql, statement 2 (line 2): ")
    assert "no rows in v" in stderr and "Traceback" not in stderr

    code, stdout, stderr = out["last.sql"]
    assert (code, stdout) == (1, ""), out["last.sql"]
    assert stderr.startswith("spark sql error: last.sql, statement 2 (line 3): ")
    assert "boom" in stderr and "Traceback" not in stderr

    code, stdout, stderr = out["late.sql"]
    assert (code, stdout) == (1, ""), out["late.sql"]
    assert stderr.startswith("spark sql error: late.sql, statement 1 (line 1): ")
    assert "late row" in stderr

    code, stdout, stderr = out["ok.sql"]
    assert (code, stdout) == (0, "x,s\r\n0,a;b\r\n1,a;b\r\n2,a;b\r\n"), out["ok.sql"]
    assert stderr.endswith("(only the first 3 rows are shown)\n")

    # the event logs (one per SparkContext) hide the JVM's command line, with its args
    logs = [path.read_text() for path in (tmp_path / "1" / spark.EVENTS_DIR).rglob("events_*")]
    assert len(logs) == len(SQL_SCRIPTS)
    for log in logs:
        assert '"sun.java.command":"*********(redacted)"' in log
        assert secret not in log


# ---- a standalone cluster on loopback -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(path: Path, text: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        assert process.poll() is None, path.read_text(errors="replace")
        assert time.monotonic() < deadline, f"{text!r} not in {path}"
        time.sleep(0.2)


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A master and one worker (1 core, 1 GiB) on 127.0.0.1: (master URL, worker dir)."""
    submit = spark.locate()
    assert submit is not None and submit.home is not None
    spark_class = str(submit.home / "bin" / "spark-class")
    env = {**os.environ, "SPARK_HOME": str(submit.home), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_DAEMON_MEMORY": "256m", "SPARK_DAEMON_JAVA_OPTS": JAVA_OPTIONS,
           "SPARK_LOG_DIR": str(tmp_path), "SPARK_WORKER_DIR": str(tmp_path / "work")}
    port = _free_port()
    url = f"spark://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as handle:
            process = subprocess.Popen([spark_class, *args], env=env, stdout=handle,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        processes.append(process)
        return process, log

    try:
        master, master_log = start("master", "org.apache.spark.deploy.master.Master",
                                   "--host", "127.0.0.1", "--port", str(port),
                                   "--webui-port", "0")
        _wait_for(master_log, "I have been elected leader", master, 60)
        worker, worker_log = start("worker", "org.apache.spark.deploy.worker.Worker", url,
                                   "--host", "127.0.0.1", "--cores", "1", "--memory", "1g",
                                   "--webui-port", "0", "--work-dir", str(tmp_path / "work"))
        _wait_for(worker_log, "Successfully registered with master", worker, 60)
        yield url, tmp_path / "work"
    finally:
        for process in reversed(processes):
            for signum, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(process.pid, signum)
                    process.wait(wait)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue


TOTALS = """
CREATE TEMPORARY VIEW numbers AS SELECT id, id % 3 AS bucket FROM range(0, 30);
SELECT '${ds}' AS ds, bucket, count(*) AS n, sum(id) AS total
FROM numbers GROUP BY bucket ORDER BY bucket;
"""


@needs_spark
def test_standalone_cluster_runs_sql_and_a_cancel_ends_the_application(
        tmp_path, make_repo, standalone):
    url, work = standalone
    marker = tmp_path / "running"
    conf = {**SMALL, **LOOPBACK, "spark.executor.memory": "512m", "spark.cores.max": "1",
            "spark.executor.extraJavaOptions": JAVA_OPTIONS,
            "spark.pyspark.python": sys.executable}  # the executor's Python workers too
    files = {
        "flowplan.yaml": settings({"cluster": {"executor": "spark", "concurrency": 1,
                                               "master": url, "conf": conf}}),
        "workflows/totals.yaml": "name: totals\nqueue: cluster\nnodes: [{source: jobs/t.sql}]\n",
        "jobs/t.sql": TOTALS,
        "workflows/long.yaml": f"name: long\nqueue: cluster\n"
                               f"nodes: [{{source: jobs/sleeper.py, args: ['{marker}']}}]\n",
        "jobs/sleeper.py": SLEEPER}

    async def body(env: Env) -> None:
        env.publish(files)
        done = await env.engine.wait_run(env.start("totals"))
        attempt = done.node("t").attempts[0]
        log = Path(attempt.log_path or "").read_text()
        assert done.status is RunStatus.SUCCEEDED, log
        assert ("ds,bucket,n,total\n2026-03-29,0,10,135\n2026-03-29,1,10,145\n"
                "2026-03-29,2,10,155\n") in log
        app_id = attempt.spark_application_id
        assert app_id is not None and re.fullmatch(r"app-\d{14}-\d{4}", app_id)
        assert f"Connected to Spark cluster with app ID {app_id}" in log
        assert (work / app_id).is_dir()  # the worker ran this application's executor

        # cancel a job that runs on the cluster: the driver dies with the attempt's group,
        # and the master then ends the application, whose executor the worker kills
        run_id = env.start("long")
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert time.monotonic() < deadline, "the Spark job did not start"
            await asyncio.sleep(0.2)
        executors = processes_naming("CoarseGrainedExecutorBackend")
        assert executors, "the worker runs an executor for the job"
        env.engine.cancel_run(run_id)
        done = await env.engine.wait_run(run_id)
        assert done.status is RunStatus.CANCELLED
        attempt = done.node("sleeper").attempts[0]
        assert attempt.spark_application_id not in (None, app_id)
        assert (work / str(attempt.spark_application_id)).is_dir()
        deadline = time.monotonic() + 30
        while [p for p in executors if running(p)]:
            assert time.monotonic() < deadline, "the executor outlived its driver"
            await asyncio.sleep(0.2)
        assert attempt.pid is not None and group_members(attempt.pid) == []

    drive(tmp_path, make_repo, body)
