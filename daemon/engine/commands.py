"""What an attempt runs: the template context, its `FLOWPLAN_*` environment and its argv.

Job sources come from the bytes embedded in the plan (written once per sha256 under the
state directory), never from the repository.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from compiler import templating
from compiler.plan import NodePlan, QueuePlan, SourcePlan
from daemon.engine import spark

SECRET_MARKERS = ("SECRET", "TOKEN", "PASSWORD", "KEY")
MASK = "********"


class CommandError(Exception):
    """The node cannot be started (a template that does not render, an executor missing)."""


@dataclass(frozen=True, slots=True)
class RunContext:
    """The run-level values every node of a run sees."""

    run_id: str
    workflow: str
    timezone: str
    logical_time: datetime
    data_interval_start: datetime | None
    data_interval_end: datetime | None
    params: Mapping[str, Any]
    workspace: Path

    def variables(self, node: str, attempt: int) -> dict[str, Any]:
        local = self.logical_time.astimezone(ZoneInfo(self.timezone))
        start = self.data_interval_start or self.logical_time
        end = self.data_interval_end or self.logical_time
        return {
            "ds": local.date().isoformat(), "ds_nodash": local.strftime("%Y%m%d"),
            "ts": local.isoformat(), "logical_time": local.isoformat(),
            "data_interval_start": start.astimezone(local.tzinfo).isoformat(),
            "data_interval_end": end.astimezone(local.tzinfo).isoformat(),
            "run_id": self.run_id, "workflow": self.workflow, "node": node,
            "attempt": attempt, "params": dict(self.params),
        }


def is_secret(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def secret_values(nodes: Iterable[NodePlan], params: Mapping[str, Any]) -> list[str]:
    """A run's values to mask in logs, statuses and e-mails: its nodes' env entries and its
    params with secret-like names, longest first (so no secret is half-masked)."""
    values = [v for node in nodes for k, v in node.env.items() if is_secret(k)]
    values += [str(v) for k, v in params.items() if is_secret(k)]
    return sorted({v for v in values if len(v) >= 3}, key=len, reverse=True)


def mask(text: str, secrets: list[str]) -> str:
    for value in secrets:
        text = text.replace(value, MASK)
    return text


def source_file(sources_dir: Path, source: SourcePlan) -> Path:
    """The embedded source on disk, content-addressed; written once, atomically."""
    suffix = Path(source.path).suffix
    path = sources_dir / f"{source.sha256}{suffix}"
    if not path.exists():
        sources_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(source.text, encoding="utf-8")
        os.replace(tmp, path)
    return path


def build_command(node: NodePlan, queue: QueuePlan, variables: Mapping[str, Any], *,
                  sources_dir: Path, attempt_dir: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """(argv, node env) for one attempt; raises `CommandError` with a reason for people."""
    try:
        args = [templating.render(arg, variables) for arg in node.args]
        env = {key: templating.render(value, variables) for key, value in node.env.items()}
        command = (templating.render(node.command, variables, "shell")
                   if node.command is not None else None)
    except templating.TemplateError as exc:
        raise CommandError(str(exc)) from exc
    if queue.executor == "spark":
        return _spark_command(node, queue, variables, args, env, sources_dir=sources_dir,
                              attempt_dir=attempt_dir)
    if command is not None:
        return ("/bin/sh", "-c", command), env
    assert node.source is not None
    if node.type == "sql":
        query = _render_sql(node.source, variables, attempt_dir, "sqlite")
        return (sys.executable, "-m", "daemon.engine.sql", str(query)), env
    path = str(source_file(sources_dir, node.source))
    if node.type == "python":
        return (queue.python or sys.executable, path, *args), env
    return ("/bin/sh", path, *args), env


def _render_sql(source: SourcePlan, variables: Mapping[str, Any], attempt_dir: Path,
                dialect: Literal["sqlite", "spark_sql"]) -> Path:
    """The rendered `.sql` source, each value a literal of `dialect`, as `query.sql` in the
    attempt folder."""
    try:
        sql = templating.render(source.text, variables, dialect)
    except templating.TemplateError as exc:
        raise CommandError(f"{source.path}: {exc}") from exc
    attempt_dir.mkdir(parents=True, exist_ok=True)
    query = attempt_dir / "query.sql"
    query.write_text(sql, encoding="utf-8")
    return query


def _spark_command(node: NodePlan, queue: QueuePlan, variables: Mapping[str, Any],
                   args: list[str], env: dict[str, str], *, sources_dir: Path,
                   attempt_dir: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """`spark-submit` of a python source, or of the SQL runner with a rendered sql source."""
    if node.source is None or node.type == "shell":
        raise CommandError(f"queue '{node.queue}' uses executor spark, which runs python and"
                           f" sql sources; node '{node.name}' is a shell"
                           f" {'command' if node.source is None else 'source'}: put it on a"
                           " local queue")
    submit = spark.locate()
    if submit is None:
        raise CommandError(spark.not_found_message(node.queue))
    files: list[Path] = []
    if node.type == "sql":
        query = _render_sql(node.source, variables, attempt_dir, "spark_sql")
        if spark.cluster_mode(queue):  # the driver is remote: ship the query beside it
            files, job_args = [query], [query.name]
        else:
            job_args = [str(query)]
        primary = spark.SQL_RUNNER
    else:
        primary, job_args = source_file(sources_dir, node.source), args
    name = (f"flowplan:{variables['workflow']}.{variables['node']}:{variables['run_id']}"
            f":{variables['attempt']}")
    argv = spark.submit_argv(submit, queue, app_name=name, attempt_dir=attempt_dir,
                             primary=primary, args=job_args, python=queue.python, files=files)
    return argv, spark.submit_env(submit, env)


def attempt_env(base: Mapping[str, str], variables: Mapping[str, Any], node_env: Mapping[str, str],
                *, workspace: Path, sqlite_db: Path) -> dict[str, str]:
    """The process environment: the daemon's, the run context as FLOWPLAN_*, the node's env."""
    env = dict(base)
    for key in ("ds", "ds_nodash", "ts", "logical_time", "data_interval_start",
                "data_interval_end", "run_id", "workflow", "node", "attempt"):
        env[f"FLOWPLAN_{key.upper()}"] = str(variables[key])
    env["FLOWPLAN_PARAMS"] = json.dumps(variables["params"], sort_keys=True)
    env["FLOWPLAN_WORKSPACE"] = str(workspace)
    env["FLOWPLAN_SQLITE_DB"] = str(sqlite_db)
    env.update(node_env)
    return env
