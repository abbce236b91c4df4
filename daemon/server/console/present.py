"""How the console shows values: status names, times, schedules in words, graphs."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from markupsafe import Markup

from flowplan.v1 import workflow_service_pb2 as pb


def file_span(seconds: float) -> str:
    """A time span as the workflow file writes one: `45s`, `10m`, `1h30m`, `0.5s`."""
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    whole = int(seconds)
    parts = [(whole // 3600, "h"), (whole % 3600 // 60, "m"), (whole % 60, "s")]
    return "".join(f"{count}{unit}" for count, unit in parts if count)


def struct_json(struct: Message) -> dict[str, Any]:
    """A Struct (params) as JSON values, whole numbers as integers: a Struct holds every
    number as a double, but the workflow file or the user wrote `10`, not `10.0`."""
    plain: dict[str, Any] = _whole(json_format.MessageToDict(struct))
    return plain


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole(item) for item in value]
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    return value


def status_name(enum: Any, value: int) -> str:
    """RUN_STATUS_SUCCEEDED as SUCCEEDED: the names the pages' data-status attributes use."""
    name: str = enum.Name(value)
    unset: str = enum.DESCRIPTOR.values_by_number[0].name
    return name[len(unset) - len("UNSPECIFIED"):]


def graph_json(nodes: Iterable[tuple[str, str | None]], edges: Iterable[pb.Edge]) -> str:
    """What graph.js draws: `{"nodes": [{"name", "status"}], "edges": [[up, down]]}`."""
    return json.dumps({"nodes": [{"name": name, "status": status} for name, status in nodes],
                       "edges": [[e.upstream, e.downstream] for e in edges]},
                      separators=(",", ":"))


def attempt_view(attempt: pb.Attempt) -> dict[str, Any]:
    """An attempt as the pages' scripts get it (a change event, a node's JSON, the
    timeline): times shown as `when` shows them, and as seconds since the epoch."""
    return {"number": attempt.number, "status": status_name(pb.AttemptStatus, attempt.status),
            "started": when(attempt, "started_at"), "finished": when(attempt, "finished_at"),
            "started_time": _seconds(attempt, "started_at"),
            "finished_time": _seconds(attempt, "finished_at"),
            "exit_code": attempt.exit_code if attempt.HasField("exit_code") else None,
            "error": attempt.error, "spark": attempt.spark_application_id,
            "copied_from": attempt.copied_from_run_id}


def timeline_json(run: pb.Run, now: float) -> str:
    """What timeline.js draws: every node of the run in order with the attempts it ran in
    this run (copied ones ran in another), and the daemon's clock (`now`, seconds)."""
    return json.dumps({"now": now, "nodes": [
        {"name": node.name, "attempts": [
            {"number": a.number, "status": status_name(pb.AttemptStatus, a.status),
             "started_time": _seconds(a, "started_at"),
             "finished_time": _seconds(a, "finished_at")}
            for a in node.attempts if not a.copied_from_run_id and a.HasField("started_at")]}
        for node in run.nodes]}, separators=(",", ":"))


def _seconds(message: Message, name: str) -> float | None:
    if not message.HasField(name):
        return None
    seconds: float = getattr(message, name).ToMilliseconds() / 1000
    return seconds


def schedule_words(workflow: pb.Workflow) -> str:
    """A workflow's schedule in words, with its time zone."""
    if not workflow.HasField("schedule"):
        return "manual only"
    schedule = workflow.schedule
    zone = f" ({schedule.timezone})" if schedule.timezone else ""
    if schedule.kind == pb.SCHEDULE_KIND_DAILY:
        return f"every day at {schedule.at}{zone}"
    if schedule.kind == pb.SCHEDULE_KIND_INTERVAL:
        every = schedule.every_seconds
        count, unit = ((every // 3600, "hour") if every % 3600 == 0 else
                       (every // 60, "minute") if every % 60 == 0 else (every, "second"))
        step = unit if count == 1 else f"{count} {unit}s"
        return (f"every {step} from {schedule.window_start} to {schedule.window_end}{zone}")
    if schedule.kind == pb.SCHEDULE_KIND_CRON:
        return f"cron {schedule.cron}{zone}"
    return "unknown schedule"


def breakable(value: str) -> Markup:
    """An id that may break in its middle (a `<wbr>`) when its column is narrow: a list of
    `wr_` and `bf_` ids fits an 800 px window, each id on two lines at most."""
    half = (len(value) + 1) // 2
    return Markup("{}<wbr>{}").format(value[:half], value[half:])


_NAME_BREAKS = frozenset("_-.=/")
_NAME_RUN = 16  # letters at most between two places a long name may wrap


def breakable_name(value: str) -> Markup:
    """A name or a tag that may wrap after `_ - . = /` (and every 16 letters without one)
    when its column is narrow: a 100-letter name never widens a list past its window."""
    parts: list[str] = []
    start = 0
    for at, letter in enumerate(value, 1):
        if letter in _NAME_BREAKS or at - start >= _NAME_RUN:
            parts.append(value[start:at])
            start = at
    parts.append(value[start:])
    return Markup("<wbr>").join(parts)


def when_lines(message: Message, name: str) -> Markup:
    """A timestamp field as `when` shows it, its date and its time each kept whole: in a
    narrow column they go on two lines, never broken at a hyphen or a colon."""
    date, _, time = when(message, name).partition(" ")
    return Markup('<span class="whole">{}</span> <span class="whole">{}</span>').format(
        date, time)


def when(message: Message, name: str) -> str:
    """A timestamp field as `2026-01-31 02:00:00 UTC`; empty when unset."""
    if not message.HasField(name):
        return ""
    stamp = getattr(message, name).ToDatetime(tzinfo=UTC)
    assert isinstance(stamp, datetime)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """A time span for people: `850 ms`, `12.4 s`, `3m 05s`, `2h 01m`. Whole milliseconds,
    rounded half up as console.js's formatDuration does, so a page counting a run live ends
    on the text a reload shows."""
    ms = round(max(0.0, seconds) * 1000)
    if ms < 1000:
        return f"{ms} ms"
    tenths = (ms + 50) // 100
    if tenths < 600:
        return f"{tenths // 10}.{tenths % 10} s"
    whole = max(60, ms // 1000)  # 59.96 s rounds up to a minute, not down to 0m 59s
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def run_seconds(run: pb.Run, now: datetime | None = None) -> float | None:
    """The seconds a run took (finished - started) or has taken so far while it runs; None
    for a run that never started."""
    if not run.HasField("started_at"):
        return None
    started = run.started_at.ToDatetime(tzinfo=UTC)
    end = (run.finished_at.ToDatetime(tzinfo=UTC) if run.HasField("finished_at")
           else now or datetime.now(UTC))
    return (end - started).total_seconds()


def run_duration(run: pb.Run, now: datetime | None = None) -> str:
    """How long a run took, or `running 1m 12s` so far while it runs; empty for a run that
    never started."""
    seconds = run_seconds(run, now)
    if seconds is None:
        return ""
    return duration(seconds) if run.HasField("finished_at") else "running " + duration(seconds)
