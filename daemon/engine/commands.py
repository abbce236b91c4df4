"""What an attempt runs: the template context, its `FLOWPLAN_*` environment and its argv.

Job sources come from the bytes embedded in the plan (written once per sha256 under the
state directory), never from the repository.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from flowplan.compiler import templating
from flowplan.compiler.plan import NodePlan, QueuePlan, SourcePlan, is_secret_name
from flowplan.daemon.engine import spark

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ARG_BYTES = 128 * 1024  # Linux's MAX_ARG_STRLEN: one argument or NAME=value, with its NUL
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
        return template_variables(self, self.timezone, node, attempt)


class RunFields(Protocol):
    """What the template variables take of a run (a `Run` or a `RunContext`)."""

    @property
    def run_id(self) -> str: ...
    @property
    def workflow(self) -> str: ...
    @property
    def logical_time(self) -> datetime: ...
    @property
    def data_interval_start(self) -> datetime | None: ...
    @property
    def data_interval_end(self) -> datetime | None: ...
    @property
    def params(self) -> Mapping[str, Any]: ...


def template_variables(run: RunFields, timezone: str, node: str, attempt: int
                       ) -> dict[str, Any]:
    """The variables a node's templates render with, in its workflow's `timezone`."""
    local = run.logical_time.astimezone(ZoneInfo(timezone))
    start = run.data_interval_start or run.logical_time
    end = run.data_interval_end or run.logical_time
    return {
        "ds": local.date().isoformat(), "ds_nodash": local.strftime("%Y%m%d"),
        "ts": local.isoformat(), "logical_time": local.isoformat(),
        "data_interval_start": start.astimezone(local.tzinfo).isoformat(),
        "data_interval_end": end.astimezone(local.tzinfo).isoformat(),
        "run_id": run.run_id, "workflow": run.workflow, "node": node,
        "attempt": attempt, "params": dict(run.params),
    }


def masked_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params as shown to people: those whose names mark them as secrets are `MASK`, and so
    are the keys so named inside an object param, at any depth (`db: {password: ...}`)."""
    return {k: MASK if is_secret_name(k) and v not in (None, "") else _masked(v)
            for k, v in params.items()}


def _masked(value: Any) -> Any:
    if isinstance(value, Mapping):
        return masked_params(value)
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value


def _secret_leaves(value: Any, *, secret: bool) -> Iterator[str]:
    """The values of a param to mask in logs: every scalar under a secret-named key (the
    param's own name, or a key inside it, at any depth)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _secret_leaves(item, secret=secret or is_secret_name(str(key)))
    elif isinstance(value, list):
        for item in value:
            yield from _secret_leaves(item, secret=secret)
    elif secret and value is not None:
        yield str(value)


def secret_values(nodes: Iterable[NodePlan], run: RunFields, timezone: str) -> list[str]:
    """A run's values to mask in logs, statuses and e-mails, longest first: its params with
    secret-like names (and the scalars under such names inside object params), and the
    values its nodes' env entries with secret-like names take as rendered for the run (for
    each attempt a node may make, when they differ)."""
    values = list(_secret_leaves(run.params, secret=False))
    for node in nodes:
        for key, template in node.env.items():
            if is_secret_name(key):
                values += _rendered(template, node, run, timezone)
    return sorted({v for v in values if len(v) >= 3}, key=len, reverse=True)


def _rendered(template: str, node: NodePlan, run: RunFields, timezone: str) -> list[str]:
    """The values `template` renders to in the node's attempts (none if it cannot render:
    then the attempt fails before it starts, and nothing was shown to the node)."""
    if "$" not in template:
        return [template]
    values: list[str] = []
    for attempt in range(1, node.retries + 2):
        try:
            values.append(templating.render(
                template, template_variables(run, timezone, node.name, attempt)))
        except templating.TemplateError:
            return values
        if attempt == 2 and values[0] == values[1]:
            break  # the attempt number is not in it: one value for all
    return values


def mask(text: str, secrets: list[str], *, start: int = 0) -> str:
    """`text[start:]` with each stretch covered by occurrences of secrets in `text` replaced
    by `MASK` (one that begins before `start` and goes on after it shows as `MASK`)."""
    covered: list[tuple[int, int]] = []
    for value in secrets:
        found = text.find(value) if value else -1
        while found != -1:
            covered.append((found, found + len(value)))
            found = text.find(value, found + 1)
    merged: list[list[int]] = []
    for begin, end in sorted(covered):
        if merged and begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([begin, end])
    out, shown = [], start
    for begin, end in merged:
        if end > shown:
            out += [text[shown:max(begin, shown)], MASK]
            shown = end
    out.append(text[shown:])
    return "".join(out)


def mask_end(text: str, secrets: list[str], *, cut: bool) -> str:
    """`text` masked; when `cut` (it is the end of a longer text), only from the first line
    that starts at least the longest secret's length in: before that, a secret that began
    before `text` could show in part, even on lines after the first (a PEM key)."""
    if not cut:
        return mask(text, secrets)
    margin = max((len(s.encode("utf-8")) for s in secrets), default=0)
    newline = text.find("\n", margin)
    return mask(text, secrets, start=newline + 1 if newline >= 0 else min(margin, len(text)))


def source_file(sources_dir: Path, source: SourcePlan) -> Path:
    """The embedded source on disk, content-addressed; written once, atomically."""
    suffix = Path(source.path).suffix
    path = sources_dir / f"{source.sha256}{suffix}"
    if not path.exists():
        sources_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(source.text, encoding="utf-8")
        os.replace(tmp, path)
    return path


def renders_as_written(node: NodePlan, queue: QueuePlan) -> bool:
    """A command on a local queue with no `$` in it, its args or its env: `build_command`
    renders nothing (a template without `$` is its own text) and writes no file."""
    return (queue.executor != "spark" and node.command is not None and "$" not in node.command
            and not any("$" in arg for arg in node.args)
            and not any("$" in value for value in node.env.values()))


def build_command(node: NodePlan, queue: QueuePlan, variables: Mapping[str, Any], *,
                  queue_name: str, sources_dir: Path, attempt_dir: Path
                  ) -> tuple[tuple[str, ...], dict[str, str]]:
    """(argv, node env) for one attempt; raises `CommandError` with a reason for people.

    `queue` is the queue the node runs on and `queue_name` its name: the run's queue
    override where the node has no queue of its own, so not always `node.queue`."""
    try:
        args = [templating.render(arg, variables) for arg in node.args]
        env = {key: templating.render(value, variables) for key, value in node.env.items()}
        command = (templating.render(node.command, variables, "shell")
                   if node.command is not None else None)
    except templating.TemplateError as exc:
        raise CommandError(str(exc)) from exc
    if queue.executor == "spark":
        return _spark_command(node, queue, variables, args, env, queue_name=queue_name,
                              sources_dir=sources_dir, attempt_dir=attempt_dir)
    if command is not None:
        return ("/bin/sh", "-c", command), env
    assert node.source is not None
    if node.type == "sql":
        query = _render_sql(node.source, variables, attempt_dir, "sqlite")
        return (sys.executable, "-m", "flowplan.daemon.engine.sql", str(query)), env
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
                   args: list[str], env: dict[str, str], *, queue_name: str,
                   sources_dir: Path, attempt_dir: Path
                   ) -> tuple[tuple[str, ...], dict[str, str]]:
    """`spark-submit` of a python source, or of the SQL runner with a rendered sql source."""
    if node.source is None or node.type == "shell":
        raise CommandError(f"queue '{queue_name}' uses executor spark, which runs python and"
                           f" sql sources; node '{node.name}' is a shell"
                           f" {'command' if node.source is None else 'source'}: put it on a"
                           " local queue")
    submit = spark.locate()
    if submit is None:
        raise CommandError(spark.not_found_message(queue_name))
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


def process_problem(argv: Iterable[str], node_env: Mapping[str, str], env: Mapping[str, str]
                    ) -> str | None:
    """Why no process can start with this argv and environment, or None.

    `node_env` is the node's own part of `env`, whose names and values are checked; `env` is
    the whole environment, whose size counts against the system's limit.
    """
    for index, arg in enumerate(argv):
        if "\0" in arg:
            return f"argument {index} contains a NUL character, which no argument can hold"
        if len(arg.encode("utf-8", "surrogateescape")) >= MAX_ARG_BYTES:
            return (f"argument {index} has {len(arg):,} characters; the system takes at most"
                    f" {MAX_ARG_BYTES - 1:,} bytes per argument")
    for name, value in node_env.items():
        if not ENV_NAME.fullmatch(name):
            return (f"env name '{name}' is not a valid name: use letters, digits and '_',"
                    " not starting with a digit")
        if "\0" in value:
            return f"env '{name}' contains a NUL character, which no environment can hold"
        if len(f"{name}={value}".encode("utf-8", "surrogateescape")) >= MAX_ARG_BYTES:
            return (f"env '{name}' has {len(value):,} characters; the system takes at most"
                    f" {MAX_ARG_BYTES - 1:,} bytes per NAME=value")
    total = sum(len(s.encode("utf-8", "surrogateescape")) + 9
                for s in (*argv, *(f"{k}={v}" for k, v in env.items())))
    if total > (limit := os.sysconf("SC_ARG_MAX")):
        return (f"the arguments and environment take {total:,} bytes; the system takes at"
                f" most {limit:,}")
    return None
