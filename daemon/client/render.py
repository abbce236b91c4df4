"""Text for people: tables, the run graph coloured by status, watch lines and the backfill
progress. Pure functions of the messages (and of `now`, for what is still running), except
the two progress views that write to a stream.

Colours are the EMR console's, as `flowplan debug` draws them
(`flowplan.compiler.console`'s palette: blue running, green succeeded, red failed, yellow
retrying, purple pending, grey skipped or cancelled), only on a terminal without NO_COLOR;
a pipe gets the same text plain. Times are UTC, ISO 8601 (`2026-01-02T02:00:00Z`), as
`--from`/`--to` and the JSON output read them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from google.protobuf.message import Message

from flowplan.compiler.console import (
    BOLD,
    DIM,
    STATUS_STYLES,
    Paint,
    is_terminal,
    printable,
    rich_console,
)
from flowplan.v1 import workflow_service_pb2 as pb

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.progress import Task, TaskID

__all__ = ["Paint", "is_terminal"]  # the commands take both from here
NONE = "-"

FINISHED_RUN = frozenset({pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED,
                          pb.RUN_STATUS_CANCELLED})
FINISHED_BACKFILL = frozenset({pb.BACKFILL_STATUS_SUCCEEDED, pb.BACKFILL_STATUS_FAILED,
                               pb.BACKFILL_STATUS_CANCELLED})


# -- names and values --------------------------------------------------------------------

def said(text: str) -> str:
    """A value people gave (remarks, params, tags, an error, an e-mail), escaped before it
    is painted: colour codes in it would pass as Paint's own (a concealed or a black-on-
    black value)."""
    return printable(text, colors=False)


def run_status(value: int) -> str:
    return pb.RunStatus.Name(value).removeprefix("RUN_STATUS_")


def node_status(value: int) -> str:
    return pb.NodeStatus.Name(value).removeprefix("NODE_STATUS_")


def attempt_status(value: int) -> str:
    return pb.AttemptStatus.Name(value).removeprefix("ATTEMPT_STATUS_")


def backfill_status(value: int) -> str:
    return pb.BackfillStatus.Name(value).removeprefix("BACKFILL_STATUS_")


def trigger(value: int) -> str:
    return pb.RunTrigger.Name(value).removeprefix("RUN_TRIGGER_").lower()


def when(message: Message, field: str) -> datetime | None:
    """A Timestamp field as an aware datetime, None when unset."""
    if not message.HasField(field):
        return None
    stamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]


def _field(lines: list[str], label: str, value: str) -> None:
    """`  label      value` when there is a value; its further lines (remarks) under it."""
    value = said(value)
    if value:
        first, *more = value.splitlines() or [value]
        lines.append(f"  {label:<10} {first}")
        lines.extend(f"  {'':<10} {line}" for line in more)


def stamp(moment: datetime | None) -> str:
    if moment is None:
        return NONE
    moment = moment.astimezone(UTC)
    text = moment.replace(tzinfo=None).isoformat(timespec="seconds")  # strftime: year 1 as "1"
    millis = moment.microsecond // 1000  # shown when not zero, as docs/cli.md says
    return text + (f".{millis:03d}Z" if millis else "Z")


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(seconds, 0.0):.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def span(start: datetime | None, end: datetime | None, now: datetime) -> str:
    """How long from `start` to `end` (or to `now` while not ended)."""
    if start is None:
        return NONE
    return duration(((end or now) - start).total_seconds())


def struct_text(fields: Iterable[tuple[str, object]]) -> str:
    """`k=v` pairs, sorted; whole numbers without `.0` (a Struct holds doubles)."""
    def value(v: object) -> str:
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        if isinstance(v, bool):
            return "true" if v else "false"
        return "null" if v is None else str(v)
    return " ".join(f"{k}={value(v)}" for k, v in sorted(fields))


# -- tables --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class Status:
    """A table cell shown in the colour of a status."""

    text: str


Cell = str | Status


def table(header: Sequence[str], rows: Sequence[Sequence[Cell]], paint: Paint) -> list[str]:
    """Columns padded to their widest cell (the last one not padded), the header in bold."""
    def plain(cell: Cell) -> str:
        return cell.text if isinstance(cell, Status) else said(cell)

    widths = [max([len(h)] + [len(plain(row[i])) for row in rows]) for i, h in enumerate(header)]
    last = len(header) - 1

    def line(cells: Sequence[Cell], *, bold: bool = False) -> str:
        parts = []
        for i, cell in enumerate(cells):
            text = plain(cell)
            padded = text if i == last else text.ljust(widths[i])
            if isinstance(cell, Status):
                padded = paint.status(text, padded)
            parts.append(padded)
        joined = "  ".join(parts).rstrip()
        return paint(BOLD, joined) if bold else joined

    return [line(header, bold=True)] + [line(row) for row in rows]


# -- workflows and versions --------------------------------------------------------------

def schedule_text(workflow: pb.Workflow) -> str:
    if not workflow.HasField("schedule"):
        return "manual"
    schedule = workflow.schedule
    zone = f" {schedule.timezone}" if schedule.timezone else ""
    if schedule.kind == pb.SCHEDULE_KIND_DAILY:
        return f"daily at {schedule.at}{zone}"
    if schedule.kind == pb.SCHEDULE_KIND_INTERVAL:
        every = schedule.every_seconds
        step = f"{every // 3600}h" if every % 3600 == 0 else (
            f"{every // 60}m" if every % 60 == 0 else f"{every}s")
        return f"every {step} {schedule.window_start}-{schedule.window_end}{zone}"
    if schedule.kind == pb.SCHEDULE_KIND_CRON:
        return f"cron '{schedule.cron}'{zone}"
    return "?"


def scheduling_text(workflow: pb.Workflow) -> str:
    if workflow.tombstone:
        return "removed"
    if not workflow.HasField("schedule"):
        return NONE
    return "on" if workflow.scheduling_enabled else "off"


def workflows_table(workflows: Sequence[pb.Workflow], paint: Paint) -> list[str]:
    rows: list[list[Cell]] = [
        [w.name, str(w.latest_version), schedule_text(w), scheduling_text(w),
         stamp(when(w, "next_tick")), w.description.splitlines()[0] if w.description else ""]
        for w in workflows]
    return table(["NAME", "VERSION", "SCHEDULE", "SCHEDULING", "NEXT TICK", "DESCRIPTION"],
                 rows, paint)


def versions_table(versions: Sequence[pb.PlanVersion], paint: Paint) -> list[str]:
    rows: list[list[Cell]] = [
        [str(v.version), stamp(when(v, "published_at")), v.digest[:12], v.commit[:12] or NONE,
         ("(removed) " if v.tombstone else "") + v.remarks]
        for v in versions]
    return table(["VERSION", "PUBLISHED", "DIGEST", "COMMIT", "REMARKS"], rows, paint)


# -- runs --------------------------------------------------------------------------------

AUTOMATIC_TAGS = frozenset({"workflow_name", "task_name"})  # every node has them


def has_tag(tags: Mapping[str, str], tag: str) -> bool:
    """Whether `tags` match `tag`: "key=value", or "key" for any value."""
    key, sep, value = tag.partition("=")
    return key in tags and (not sep or tags[key] == value)


def node_counts_text(counts: pb.NodeCounts) -> str:
    """`5 ok, 1 failed, 2 skipped`: the statuses that have nodes, finished ones first."""
    parts = [(counts.succeeded, "ok"), (counts.failed, "failed"),
             (counts.skipped, "skipped"), (counts.cancelled, "cancelled"),
             (counts.running, "running"), (counts.pending, "pending")]
    return ", ".join(f"{n} {what}" for n, what in parts if n) or NONE


def runs_table(runs: Sequence[pb.Run], paint: Paint, now: datetime) -> list[str]:
    rows: list[list[Cell]] = [
        [r.run_id, r.workflow, Status(run_status(r.status)), trigger(r.trigger),
         stamp(when(r, "logical_time")), stamp(when(r, "started_at")),
         span(when(r, "started_at"), when(r, "finished_at"), now),
         node_counts_text(r.node_counts), r.previous_run_id or NONE,
         r.remarks.splitlines()[0] if r.remarks else ""]
        for r in runs]
    return table(["RUN", "WORKFLOW", "STATUS", "TRIGGER", "LOGICAL TIME", "STARTED",
                  "DURATION", "NODES", "PREVIOUS", "REMARKS"], rows, paint)


def run_header(run: pb.Run, paint: Paint, now: datetime) -> list[str]:
    """The run's own facts, one `label  value` line each (only those that are set)."""
    status = run_status(run.status)
    lines = [f"run {paint(BOLD, run.run_id)}  {run.workflow}  {paint.status(status)}"]

    def add(label: str, value: str) -> None:
        _field(lines, label, value)

    logical = stamp(when(run, "logical_time"))
    interval = when(run, "data_interval_start"), when(run, "data_interval_end")
    if interval[0] is not None and interval[0] != interval[1]:
        logical += f" (data interval {stamp(interval[0])} .. {stamp(interval[1])})"
    add("trigger", f"{trigger(run.trigger)}, logical time {logical}")
    add("plan", f"version {run.plan_version}"
        + (f" (digest {run.plan_digest[:12]})" if run.plan_digest else ""))
    started, finished = when(run, "started_at"), when(run, "finished_at")
    times = f"created {stamp(when(run, 'created_at'))}"
    if started is not None:
        times += f", started {stamp(started)}"
    if finished is not None:
        times += f", finished {stamp(finished)}"
    if started is not None:
        times += f" ({'took' if finished else 'running for'} {span(started, finished, now)})"
    add("times", times)
    cancel = when(run, "cancel_requested_at")
    add("cancel", f"requested {stamp(cancel)}" if cancel else "")
    add("queue", f"{run.queue} (override)" if run.queue else "")
    add("params", struct_text(run.params.items()))
    add("tags", " ".join(f"{k}={v}" for k, v in sorted(run.tags.items())))
    add("remarks", run.remarks)
    add("resumes", run.previous_run_id)
    add("backfill", run.backfill_id)
    return lines


def run_graph(run: pb.Run, paint: Paint, now: datetime, *,
              only: Collection[str] | None = None) -> list[str]:
    """Every node in the run's (topological) order (with `only`, those named) with its
    upstreams, status, attempts and duration; under a node, its own tags and what explains
    its state: attempts that did not succeed or that name a Spark application, the next
    retry, why it was skipped, the run it was copied from. The last line counts every node
    of the run by status."""
    upstream: dict[str, list[str]] = {}
    for edge in run.edges:
        upstream.setdefault(edge.downstream, []).append(edge.upstream)
    rows: list[list[Cell]] = []
    details: list[list[str]] = []
    for node in run.nodes:
        if only is not None and node.name not in only:
            continue
        first = node.attempts[0] if node.attempts else None
        last = node.attempts[-1] if node.attempts else None
        took = NONE
        if first is not None and last is not None:
            took = span(when(first, "started_at"), when(last, "finished_at"), now)
        rows.append([node.name, Status(node_status(node.status)),
                     str(len(node.attempts)) if node.attempts else NONE, took,
                     node.queue or NONE, ", ".join(upstream.get(node.name, [])) or NONE])
        details.append(_node_details(node, run, paint, now))
    lines = table(["NODE", "STATUS", "ATTEMPTS", "DURATION", "QUEUE", "UPSTREAM"], rows, paint)
    out = lines[:1]
    for line, extra in zip(lines[1:], details, strict=True):
        out.append(line)
        out.extend(f"    {paint(DIM, '└')} {text}" for text in extra)
    counts: dict[str, int] = {}
    for node in run.nodes:
        counts[node_status(node.status)] = counts.get(node_status(node.status), 0) + 1
    out.append(f"{len(run.nodes)} nodes: "
               + ", ".join(f"{paint.status(s, str(n) + ' ' + s.lower())}"
                           for s, n in counts.items()))
    return out


def _node_details(node: pb.NodeRun, run: pb.Run, paint: Paint, now: datetime) -> list[str]:
    extra: list[str] = []
    own = {k: v for k, v in node.tags.items()
           if k not in AUTOMATIC_TAGS and run.tags.get(k) != v}  # the run shows the rest
    if own:
        extra.append("tags " + said(" ".join(f"{k}={v}" for k, v in sorted(own.items()))))
    if node.copied_from_run_id:
        extra.append(f"copied from {node.copied_from_run_id}")
    show_attempts = len(node.attempts) > 1 or any(
        a.status in (pb.ATTEMPT_STATUS_FAILED, pb.ATTEMPT_STATUS_CANCELLED)
        or a.spark_application_id  # the link to the cluster's UI, whatever the attempt's end
        for a in node.attempts)
    for attempt in node.attempts if show_attempts else ():
        extra.append(attempt_text(attempt, run.plan_version, paint, now))
    if node.status == pb.NODE_STATUS_RETRYING and node.HasField("next_attempt_at"):
        extra.append(f"next attempt at {stamp(when(node, 'next_attempt_at'))}")
    if node.skip_reason:
        extra.append(said(node.skip_reason))
    return extra


def attempt_text(attempt: pb.Attempt, run_version: int, paint: Paint, now: datetime) -> str:
    status = attempt_status(attempt.status)
    parts = [f"attempt {attempt.number}", paint.status(status),
             span(when(attempt, "started_at"), when(attempt, "finished_at"), now)]
    if attempt.HasField("exit_code") and not attempt.error:  # the error names the code
        parts.append(f"exit {attempt.exit_code}")
    if attempt.plan_version and attempt.plan_version != run_version:
        parts.append(f"plan version {attempt.plan_version}")
    if attempt.spark_application_id:
        parts.append(attempt.spark_application_id)
    text = "  ".join(parts)
    return f"{text}: {said(attempt.error)}" if attempt.error else text


def watch_line(change: pb.WatchRunResponse, paint: Paint) -> str:
    """One status change: `TIME  #SEQ  node NAME STATUS ...` or `TIME  #SEQ  run STATUS`."""
    head = f"{stamp(when(change, 'event_time'))}  #{change.sequence}"
    if not change.HasField("node"):
        return f"{head}  run {paint.status(run_status(change.run_status))}"
    node = change.node
    status = node_status(node.status)
    parts = [f"{head}  node {node.name} {paint.status(status)}"]
    last = node.attempts[-1] if node.attempts else None
    if last is not None and node.status != pb.NODE_STATUS_PENDING:
        parts.append(f"attempt {last.number}")
        if node.status in (pb.NODE_STATUS_FAILED, pb.NODE_STATUS_RETRYING):
            if last.error:
                parts.append(f"({said(last.error)})")
            elif last.HasField("exit_code"):
                parts.append(f"(exit {last.exit_code})")
    if node.status == pb.NODE_STATUS_RETRYING and node.HasField("next_attempt_at"):
        parts.append(f"next at {stamp(when(node, 'next_attempt_at'))}")
    if node.skip_reason:
        parts.append(f"({said(node.skip_reason)})")
    return " ".join(parts)


# -- backfills and notifications ---------------------------------------------------------

def backfills_table(backfills: Sequence[pb.Backfill], paint: Paint) -> list[str]:
    rows: list[list[Cell]] = [
        [b.backfill_id, b.workflow, Status(backfill_status(b.status)),
         f"{stamp(when(b, 'start_time'))} .. {stamp(when(b, 'end_time'))}",
         f"{finished_count(b.progress)}/{b.progress.total}", progress_counts(b.progress),
         stamp(when(b, "created_at")), b.remarks.splitlines()[0] if b.remarks else ""]
        for b in backfills]
    return table(["BACKFILL", "WORKFLOW", "STATUS", "RANGE", "FINISHED", "RUNS", "CREATED",
                  "REMARKS"], rows, paint)


def backfill_header(backfill: pb.Backfill, paint: Paint, now: datetime) -> list[str]:
    """A backfill's facts, one `label  value` line each (only those that are set)."""
    status = backfill_status(backfill.status)
    lines = [f"backfill {paint(BOLD, backfill.backfill_id)}  {backfill.workflow}"
             f"  {paint.status(status)}"]

    def add(label: str, value: str) -> None:
        _field(lines, label, value)

    p = backfill.progress
    add("range", f"{stamp(when(backfill, 'start_time'))} .. {stamp(when(backfill, 'end_time'))}")
    add("runs", f"{finished_count(p)}/{p.total} finished ({progress_counts(p)})")
    created, finished = when(backfill, "created_at"), when(backfill, "finished_at")
    times = f"created {stamp(created)}"
    if finished is not None:
        times += f", finished {stamp(finished)}"
    add("times", times + f" ({'took' if finished else 'running for'}"
        f" {span(created, finished, now)})")
    parallel = backfill.max_parallel_runs
    add("parallel", f"at most {parallel} run{'s' if parallel != 1 else ''} at once"
        if parallel else "")
    add("reprocess", pb.Reprocess.Name(backfill.reprocess).removeprefix("REPROCESS_").lower()
        if backfill.reprocess else "")
    add("queue", f"{backfill.queue} (override)" if backfill.queue else "")
    add("emails", ", ".join(backfill.failure_emails))
    add("remarks", backfill.remarks)
    lines.append(f"its runs: flowplan runs --backfill {backfill.backfill_id} --limit 0")
    return lines


def notification_status(value: int) -> str:
    return pb.NotificationStatus.Name(value).removeprefix("NOTIFICATION_STATUS_")


def notifications_table(items: Sequence[pb.Notification], paint: Paint, *,
                        body: bool = False) -> list[str]:
    """One row per notification; with `body`, its text indented under it."""
    rows: list[list[Cell]] = []
    for n in items:
        about = n.run_id or n.backfill_id or NONE
        rows.append([str(n.id), stamp(when(n, "created_at")),
                     Status(notification_status(n.status)), n.kind,
                     about + (f" {n.node_name}" if n.node_name else ""),
                     ", ".join(n.recipients), n.subject, n.error])
    lines = table(["ID", "CREATED", "STATUS", "KIND", "ABOUT", "TO", "SUBJECT", "ERROR"],
                  rows, paint)
    out = lines[:1]
    for line, n in zip(lines[1:], items, strict=True):
        out.append(line)
        if body:
            out.extend(f"    {text}" for text in said(n.body).splitlines())
    return out


# -- backfill progress -------------------------------------------------------------------

def progress_counts(progress: pb.BackfillProgress) -> str:
    parts = [f"{progress.succeeded} succeeded", f"{progress.failed} failed",
             f"{progress.running} running", f"{progress.pending} pending"]
    if progress.cancelled:
        parts.append(f"{progress.cancelled} cancelled")
    return ", ".join(parts)


def finished_count(progress: pb.BackfillProgress) -> int:
    return progress.succeeded + progress.failed + progress.cancelled


def progress_line(backfill: pb.Backfill, now: datetime) -> str:
    """Plain progress, for logs and CI."""
    p = backfill.progress
    return (f"{stamp(now)} backfill {backfill.backfill_id}"
            f" {backfill_status(backfill.status)}: {finished_count(p)}/{p.total} finished"
            f" ({progress_counts(p)})")


def progress_bar(progress: pb.BackfillProgress, width: int, paint: Paint) -> str:
    """`width` cells split in proportion to succeeded, failed, cancelled (solid), running
    (shaded) and pending (light) runs."""
    return "".join(paint(style, text) for text, style in _bar_segments(progress, width))


def _bar_segments(progress: pb.BackfillProgress, width: int) -> list[tuple[str, str]]:
    segments = [(progress.succeeded, "█", STATUS_STYLES["SUCCEEDED"]),
                (progress.failed, "█", STATUS_STYLES["FAILED"]),
                (progress.cancelled, "█", STATUS_STYLES["CANCELLED"]),
                (progress.running, "▒", STATUS_STYLES["RUNNING"]),
                (progress.pending, "░", DIM)]
    total = sum(count for count, _, _ in segments)
    if total <= 0:
        return [("░" * width, DIM)]
    out, done, edge = [], 0, 0
    for count, char, style in segments:
        done += count
        right = round(done * width / total)
        if right > edge:
            out.append((char * (right - edge), style))
        edge = right
    return out


class ProgressLines:
    """One line whenever the progress changes."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last: tuple[int, ...] | None = None

    def update(self, backfill: pb.Backfill, now: datetime) -> None:
        p = backfill.progress
        key = (backfill.status, p.total, p.succeeded, p.failed, p.running, p.pending,
               p.cancelled)
        if key != self._last:
            self._last = key
            print(progress_line(backfill, now), file=self._out, flush=True)

    def end(self) -> None:
        pass


class ProgressBar:
    """A bar redrawn in place on one terminal line (a rich `Progress` with one task)."""

    def __init__(self, out: TextIO, paint: Paint) -> None:
        from rich.progress import Progress, ProgressColumn

        class BarColumn(ProgressColumn):
            def render(self, task: Task) -> RenderableType:
                return _bar_line(task.fields["backfill"], console.width, paint)

        console = rich_console(out, paint)
        self._progress = Progress(BarColumn(), console=console, auto_refresh=False,
                                  redirect_stdout=False, redirect_stderr=False)
        self._task: TaskID | None = None

    def update(self, backfill: pb.Backfill, now: datetime) -> None:
        p = backfill.progress
        if self._task is None:
            self._task = self._progress.add_task(backfill.backfill_id, total=p.total,
                                                 completed=finished_count(p), backfill=p)
            self._progress.start()  # the first draw
            return
        self._progress.update(self._task, total=p.total, completed=finished_count(p),
                              backfill=p, refresh=True)

    def end(self) -> None:
        if self._task is not None:
            self._progress.stop()  # leaves the last bar on its line
            self._task = None


def _bar_line(progress: pb.BackfillProgress, columns: int, paint: Paint) -> RenderableType:
    """`[bar] finished/total  counts` fitted to `columns` (the counts go first)."""
    counts = f" {finished_count(progress)}/{progress.total}  {progress_counts(progress)}"
    if len(counts) + 13 >= columns:  # keep it on one line: a wrapped line cannot be redrawn
        counts = f" {finished_count(progress)}/{progress.total}"
    width = max(10, min(40, columns - len(counts) - 3))
    return paint.text("[", *_bar_segments(progress, width), "]", counts)
