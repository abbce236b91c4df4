"""The client commands of `flowplan`, one handler per command: `workflows`, `versions`, `run`,
`backfill`, `backfills`, `backfill-status`, `runs`, `status`, `watch`, `logs`, `cancel`,
`cancel-backfill`, `resume`, `notifications`, `pause`, `unpause`.

Each handler builds one request from its options, calls the daemon through a `Client`, and
prints the answer: text for people (see `render`), or with `--json` the response message in
protobuf's JSON mapping with the proto's field names (one indented object for a single
answer; one object per line when a command prints several, as streams do). Errors go to
stderr as `error: CODE: message` with each field violation; see `connection` for the exit
codes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, TextIO, TypeVar

from google.protobuf.message import Message

from flowplan.compiler.console import printable
from flowplan.compiler.grammars import duration_option as _seconds
from flowplan.compiler.grammars import param_option as _param
from flowplan.daemon.client import connection, render
from flowplan.daemon.client.api import Client, ClientError, Retry
from flowplan.daemon.client.connection import (
    DEFAULT_ADDRESS,
    DEFAULT_TIMEOUT_SECONDS,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    report,
    target_from_options,
)
from flowplan.v1 import workflow_service_pb2 as pb

POLL_SECONDS = 0.5  # `backfill --wait` asks for the backfill's progress this often
MAX_PAGE_SIZE = 1000

T = TypeVar("T")

RUN_STATUSES = {"pending": pb.RUN_STATUS_PENDING, "running": pb.RUN_STATUS_RUNNING,
                "succeeded": pb.RUN_STATUS_SUCCEEDED, "failed": pb.RUN_STATUS_FAILED,
                "cancelled": pb.RUN_STATUS_CANCELLED}
TRIGGERS = {"manual": pb.RUN_TRIGGER_MANUAL, "schedule": pb.RUN_TRIGGER_SCHEDULE,
            "backfill": pb.RUN_TRIGGER_BACKFILL, "debug": pb.RUN_TRIGGER_DEBUG,
            "resume": pb.RUN_TRIGGER_RESUME}
REPROCESS = {"missing": pb.REPROCESS_MISSING, "failed": pb.REPROCESS_FAILED,
             "all": pb.REPROCESS_ALL}
BACKFILL_STATUSES = {"running": pb.BACKFILL_STATUS_RUNNING,
                     "succeeded": pb.BACKFILL_STATUS_SUCCEEDED,
                     "failed": pb.BACKFILL_STATUS_FAILED,
                     "cancelled": pb.BACKFILL_STATUS_CANCELLED}
NOTIFICATION_STATUSES = {"pending": pb.NOTIFICATION_STATUS_PENDING,
                         "sent": pb.NOTIFICATION_STATUS_SENT,
                         "failed": pb.NOTIFICATION_STATUS_FAILED,
                         "not_sent": pb.NOTIFICATION_STATUS_NOT_SENT}

TIME_HELP = ("an ISO date or date and time: 2026-01-02 (00:00 UTC that day), 2026-01-02T02:00"
             " (UTC), 2026-01-02T02:00+08:00")


@dataclasses.dataclass(frozen=True, slots=True)
class Output:
    """Where a command prints: its results on `stream` (stdout), notes on stderr."""

    stream: TextIO
    json: bool
    paint: render.Paint
    live: bool  # a terminal that can redraw a line (the progress bar)

    def line(self, text: str = "") -> None:
        print(printable(text, colors=self.paint.color), file=self.stream, flush=True)

    def lines(self, lines: Iterable[str]) -> None:
        for text in lines:
            print(printable(text, colors=self.paint.color), file=self.stream)
        self.stream.flush()

    def message(self, message: Message, *, one_line: bool = False) -> None:
        """The message in protobuf's JSON mapping, proto field names."""
        from google.protobuf import json_format  # only --json pays for it
        text = json_format.MessageToJson(message, preserving_proto_field_name=True,
                                         indent=None if one_line else 2)
        print(text, file=self.stream, flush=True)

    def note(self, text: str) -> None:
        print(printable(text, colors=False), file=sys.stderr, flush=True)

    def binary(self) -> BinaryIO:
        """stdout for raw bytes (what was printed as text so far goes first)."""
        self.stream.flush()
        buffer: BinaryIO | None = getattr(self.stream, "buffer", None)
        if buffer is None:
            raise UsageError("stdout takes no bytes here")
        return buffer


Body = Callable[[Client, argparse.Namespace, Output], int]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[str]:
    """Add the client commands to the `flowplan` parser; their names."""
    common = _common_options()
    names: list[str] = []

    def add(name: str, body: Body, help_: str, description: str) -> argparse.ArgumentParser:
        names.append(name)
        parser = subparsers.add_parser(name, help=help_, description=description,
                                       parents=[common])
        parser.set_defaults(handler=_handler(body, parser))
        return parser

    workflows = add("workflows", cmd_workflows, "list the daemon's workflows",
                    "List the workflows the daemon knows, with their latest plan version,"
                    " schedule, scheduling switch and next tick.")
    workflows.add_argument("--all", action="store_true",
                           help="also list workflows removed from the repository")

    versions = add("versions", cmd_versions, "list a workflow's published plan versions",
                   "List the published plan versions of WORKFLOW, newest first.")
    versions.add_argument("workflow", metavar="WORKFLOW")

    run = add("run", cmd_run, "start a manual run",
              "Start a manual run of WORKFLOW now, with its latest plan version, whether its"
              " scheduling switch is on or off. With --wait, follow it to its end: exit 0 if"
              " it succeeded, 1 if not.")
    run.add_argument("workflow", metavar="WORKFLOW")
    run.add_argument("--param", action="append", default=[], type=_param, metavar="K=V",
                     help="a template parameter over the workflow's params; V is read as a"
                          " JSON scalar when it is one (5, 2.5, true, null, \"5\"), else as"
                          " a string; repeat for more")
    run.add_argument("--queue", help="run the nodes on this queue (nodes whose YAML sets a"
                                     " queue keep it)")
    run.add_argument("--remarks", help="free text kept with the run")
    run.add_argument("--logical-time", type=_time, metavar="TIME",
                     help=f"the run's logical time (default: now): {TIME_HELP}")
    run.add_argument("--wait", action="store_true",
                     help="follow the run's status changes until it ends")

    backfill = add("backfill", cmd_backfill, "run a workflow over a past time range",
                   "Start a backfill: one run of WORKFLOW per scheduling tick from --from to"
                   " --to (both inclusive), oldest first. Times are " + TIME_HELP + "; a"
                   " date alone as --from means 00:00 UTC and as --to the whole day (to"
                   " 23:59:59.999999 UTC), not the workflow's timezone. With --wait,"
                   " show the progress until the backfill ends: exit 0 if every run"
                   " succeeded, 1 if not.")
    backfill.add_argument("workflow", metavar="WORKFLOW")
    backfill.add_argument("--from", dest="start", type=_time, required=True, metavar="TIME",
                          help="the start of the range (inclusive); a date is 00:00 UTC")
    backfill.add_argument("--to", dest="end", type=_end_time, required=True, metavar="TIME",
                          help="the end of the range (inclusive); a date alone includes"
                               " that whole day (UTC)")
    backfill.add_argument("--parallel", type=_positive_int, metavar="N",
                          help="at most N runs at once (default: the workflow's"
                               " max_active_runs)")
    backfill.add_argument("--queue", help="run the nodes on this queue (nodes whose YAML"
                                          " sets a queue keep it)")
    backfill.add_argument("--remarks", help="free text kept with the backfill and its runs")
    backfill.add_argument("--failure-email", action="append", default=[], metavar="ADDR",
                          help="tell ADDR when a run of the backfill fails; repeat for more")
    backfill.add_argument("--dry-run", action="store_true",
                          help="list the logical times it would run, create nothing")
    backfill.add_argument("--reprocess", choices=sorted(REPROCESS), type=str.lower,
                          help="which ticks to run: all (the default), missing (no"
                               " successful run yet), failed (latest run failed or was"
                               " cancelled)")
    backfill.add_argument("--wait", action="store_true",
                          help="show the progress until the backfill ends")

    runs = add("runs", cmd_runs, "list runs, newest first",
               "List runs, newest first; the filters combine.")
    runs.add_argument("--workflow", help="only runs of this workflow")
    runs.add_argument("--status", choices=list(RUN_STATUSES), type=str.lower,
                      help="only runs in this status")
    runs.add_argument("--trigger", choices=list(TRIGGERS), type=str.lower,
                      help="only runs started this way")
    runs.add_argument("--tag", type=_tag, metavar="K[=V]",
                      help="only runs of workflows with the tag K=V (K alone: any value) on"
                           " the workflow or on one of its nodes")
    runs.add_argument("--backfill", metavar="ID", help="only the runs of this backfill")
    runs.add_argument("--limit", type=_non_negative_int, default=20, metavar="N",
                      help="at most N runs (default 20; 0: all)")

    status = add("status", cmd_status, "show a run and its graph",
                 "Show a run and its graph: every node in order with its upstreams, status,"
                 " attempts, duration and own tags, coloured by status on a terminal"
                 " (NO_COLOR turns colour off).")
    status.add_argument("run_id", metavar="RUN")
    status.add_argument("--tag", type=_tag, metavar="K[=V]",
                        help="only the nodes with the tag K=V (K alone: any value)")

    watch = add("watch", cmd_watch, "follow a run's status changes until it ends",
                "Print a run's status changes, one line each (its history first), until the"
                " run ends; reconnect if the stream breaks. Exit 0 if the run succeeded, 1"
                " if not.")
    watch.add_argument("run_id", metavar="RUN")

    logs = add("logs", cmd_logs, "print a node's log",
               "Write the log (stdout and stderr) of one attempt of a node, as raw bytes.")
    logs.add_argument("run_id", metavar="RUN")
    logs.add_argument("node", metavar="NODE")
    logs.add_argument("--attempt", type=_positive_int, metavar="N",
                      help="the attempt number (default: the latest)")
    logs.add_argument("--follow", "-f", action="store_true",
                      help="keep printing new output until the attempt ends")

    cancel = add("cancel", cmd_cancel, "cancel a run",
                 "Cancel a run that has not finished: running nodes are stopped, pending ones"
                 " cancelled.")
    cancel.add_argument("run_id", metavar="RUN")

    backfills = add("backfills", cmd_backfills, "list backfills, newest first",
                    "List backfills, newest first, with their status and progress; the"
                    " filters combine.")
    backfills.add_argument("--workflow", help="only backfills of this workflow")
    backfills.add_argument("--status", choices=list(BACKFILL_STATUSES), type=str.lower,
                           help="only backfills in this status")

    backfill_status = add("backfill-status", cmd_backfill_status, "show a backfill",
                          "Show a backfill: its workflow, range, options, status and how"
                          " many of its runs are in each status.")
    backfill_status.add_argument("backfill_id", metavar="ID")

    cancel_backfill = add("cancel-backfill", cmd_cancel_backfill, "cancel a backfill",
                          "Cancel a backfill and every run of it that has not finished.")
    cancel_backfill.add_argument("backfill_id", metavar="ID")

    resume = add("resume", cmd_resume, "re-run a finished run from some of its nodes",
                 "Resume a finished run (AWS Glue's ResumeWorkflowRun): the given nodes and"
                 " every node downstream of them run again in a new run; the other nodes are"
                 " copied from RUN.")
    resume.add_argument("run_id", metavar="RUN")
    resume.add_argument("--node", action="append", required=True, metavar="NODE",
                        help="a node to run again; repeat for more")
    resume.add_argument("--plan-version", type=_positive_int, metavar="V",
                        help="the plan version of the re-run nodes (default: the latest)")
    resume.add_argument("--remarks", help="free text kept with the new run")
    resume.add_argument("--dry-run", action="store_true",
                        help="say which nodes would start, create nothing")

    notifications = add(
        "notifications", cmd_notifications, "list the notification outbox, newest first",
        "List the e-mails the daemon recorded in its outbox, newest first: sent, pending,"
        " failed (with the error) or not sent (no SMTP server configured), so that what"
        " would have been sent can be read without one.")
    notifications.add_argument("--run", metavar="RUN", help="only notifications about RUN")
    notifications.add_argument("--status", choices=list(NOTIFICATION_STATUSES),
                               type=str.lower, help="only notifications in this status")
    notifications.add_argument("--limit", type=_non_negative_int, default=20, metavar="N",
                               help="at most N notifications (default 20; 0: all)")
    notifications.add_argument("--body", action="store_true",
                               help="also print each notification's text")

    for name, enabled, what in (("pause", False, "stop scheduling a workflow"),
                                ("unpause", True, "schedule a workflow again")):
        switch = add(name, cmd_pause if not enabled else cmd_unpause, what,
                     f"Flip the scheduling switch of WORKFLOW {'on' if enabled else 'off'}."
                     " It holds until a new plan version changes schedule.enabled in git;"
                     " manual runs and backfills work either way.")
        switch.add_argument("workflow", metavar="WORKFLOW")
    return names


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    daemon = common.add_argument_group("daemon connection")
    daemon.add_argument("--address", metavar="HOST:PORT",
                        help=f"the daemon (default: $FLOWPLAN_ADDRESS, else {DEFAULT_ADDRESS})")
    daemon.add_argument("--token-file", type=Path, metavar="FILE",
                        help="a file holding the daemon's bearer token (default:"
                             " $FLOWPLAN_TOKEN_FILE)")
    daemon.add_argument("--tls-ca", type=Path, metavar="FILE",
                        help="use TLS, trusting the CA certificates (PEM) in FILE")
    daemon.add_argument("--tls-cert", type=Path, metavar="FILE",
                        help="mutual TLS: this client certificate (PEM), with --tls-key")
    daemon.add_argument("--tls-key", type=Path, metavar="FILE",
                        help="mutual TLS: the client certificate's private key (PEM)")
    daemon.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                        help=f"deadline of each call (default: {DEFAULT_TIMEOUT_SECONDS:g} s,"
                             " none for streams)")
    common.add_argument("--json", action="store_true",
                        help="print the response message(s) as JSON (proto field names; one"
                             " object per line when there are several)")
    return common


def common_option_arity() -> dict[str, int]:
    """The options every client command takes, and how many values each one takes."""
    return {option: 0 if action.nargs == 0 else 1
            for action in _common_options()._actions for option in action.option_strings}


def _handler(body: Body, parser: argparse.ArgumentParser
             ) -> Callable[[argparse.Namespace], int]:
    def usage_error(exc: UsageError) -> int:
        """As argparse reports a usage error: the command's usage, then the error."""
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def handle(args: argparse.Namespace) -> int:
        try:
            target = target_from_options(
                address=args.address, token_file=args.token_file, tls_ca=args.tls_ca,
                tls_cert=args.tls_cert, tls_key=args.tls_key, timeout=args.timeout,
                environ=os.environ)
        except UsageError as exc:
            return usage_error(exc)
        stdout = sys.stdout
        out = Output(stream=stdout, json=args.json,
                     paint=render.Paint.for_stream(stdout), live=render.is_terminal(stdout))
        # tried again after UNAVAILABLE only once the daemon has answered: a daemon that is
        # not running is reported at once (exit 3), a restart during `watch` is not
        retry = Retry(first_delay=connection.RECONNECT_FIRST_DELAY,
                      max_delay=connection.RECONNECT_MAX_DELAY,
                      give_up_after=connection.RECONNECT_GIVE_UP_SECONDS, before_answer=False)
        with Client(target=target, retry=retry, on_reconnect=out.note) as client:
            client.poll_seconds = POLL_SECONDS
            try:
                return body(client, args, out)
            except ClientError as err:
                return report(err, client, sys.stderr)
            except UsageError as exc:
                return usage_error(exc)
    return handle


# -- option types ------------------------------------------------------------------------





def _time(text: str) -> datetime:
    """An ISO date (00:00 UTC that day) or date and time (UTC unless it has an offset)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {TIME_HELP}; got '{text}'") from None
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)  # as the daemon takes it
    except OverflowError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is outside 0001-01-01T00:00Z..9999-12-31T23:59:59Z (in UTC), the"
            " times the daemon takes") from None
    return moment


def _end_time(text: str) -> datetime:
    """As `_time`, but a date alone is the end of that day: `--to 2026-11-05` includes the
    day's ticks, as a person reads it, instead of stopping at its first instant."""
    moment = _time(text)
    if _is_date(text):
        moment += timedelta(days=1) - timedelta(microseconds=1)
    return moment


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def _tag(text: str) -> str:
    key = text.partition("=")[0]
    if not key.strip():
        raise argparse.ArgumentTypeError(f"expected K=V or K, got '{text}'")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, got '{text}'")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0, got '{text}'")
    return value




# -- helpers -----------------------------------------------------------------------------

def _all_pages(fetch: Callable[[str], tuple[Sequence[T], str]]) -> list[T]:
    """Every item of a paged list: `fetch(page_token)` gives a page and the next token."""
    items: list[T] = []
    token, seen = "", set()
    while True:
        page, token = fetch(token)
        items.extend(page)
        if not token or token in seen:  # a server that repeats a token would loop forever
            return items
        seen.add(token)


def _now() -> datetime:
    return datetime.now(UTC)


# -- workflows ---------------------------------------------------------------------------

def cmd_workflows(client: Client, args: argparse.Namespace, out: Output) -> int:
    def fetch(token: str) -> tuple[Sequence[pb.Workflow], str]:
        page = client.list_workflows(page_token=token, include_tombstones=args.all)
        return page.workflows, page.next_page_token

    workflows = _all_pages(fetch)
    if out.json:
        out.message(pb.ListWorkflowsResponse(workflows=workflows))
    elif not workflows:
        out.line("no workflows")
    else:
        out.lines(render.workflows_table(workflows, out.paint))
    return EXIT_OK


def cmd_versions(client: Client, args: argparse.Namespace, out: Output) -> int:
    def fetch(token: str) -> tuple[Sequence[pb.PlanVersion], str]:
        page = client.list_plan_versions(args.workflow, page_token=token)
        return page.plan_versions, page.next_page_token

    versions = _all_pages(fetch)
    if out.json:
        out.message(pb.ListPlanVersionsResponse(plan_versions=versions))
    elif not versions:
        out.line(f"{args.workflow}: no published version")
    else:
        out.lines(render.versions_table(versions, out.paint))
    return EXIT_OK


def _set_scheduling(client: Client, args: argparse.Namespace, out: Output, *,
                    enabled: bool) -> int:
    workflow = client.set_scheduling(args.workflow, enabled=enabled)
    if out.json:
        out.message(pb.SetSchedulingStatusResponse(workflow=workflow))
        return EXIT_OK
    text = f"{workflow.name or args.workflow}: scheduling {render.scheduling_text(workflow)}"
    next_tick = render.when(workflow, "next_tick")
    out.line(text + (f", next tick {render.stamp(next_tick)}" if next_tick else ""))
    return EXIT_OK


def cmd_pause(client: Client, args: argparse.Namespace, out: Output) -> int:
    return _set_scheduling(client, args, out, enabled=False)


def cmd_unpause(client: Client, args: argparse.Namespace, out: Output) -> int:
    return _set_scheduling(client, args, out, enabled=True)


# -- runs --------------------------------------------------------------------------------

def cmd_run(client: Client, args: argparse.Namespace, out: Output) -> int:
    run = client.start_run(args.workflow, params=dict(args.param), queue=args.queue or "",
                           remarks=args.remarks or "", logical_time=args.logical_time)
    if out.json:
        out.message(pb.StartRunResponse(run=run), one_line=args.wait)
    else:
        out.line(f"started run {run.run_id} of {run.workflow or args.workflow}"
                 f" (plan version {run.plan_version}, logical time"
                 f" {render.stamp(render.when(run, 'logical_time'))})")
    if not args.wait:
        return EXIT_OK
    return follow_run(client, run.run_id, out)


def cmd_watch(client: Client, args: argparse.Namespace, out: Output) -> int:
    return follow_run(client, args.run_id, out)


def follow_run(client: Client, run_id: str, out: Output) -> int:
    """Print the run's status changes (its whole history first) until it ends; reopen the
    stream after the last sequence seen when it breaks. 0 if the run succeeded, else 1."""
    last = 0
    status: int = pb.RUN_STATUS_UNSPECIFIED
    try:
        while True:
            for change in client.watch_run(run_id, after_sequence=last, until_end=False):
                last = change.sequence or last
                status = change.run_status
                if out.json:
                    out.message(change, one_line=True)
                else:
                    out.line(render.watch_line(change, out.paint))
            if status in render.FINISHED_RUN:
                break
            # the stream ended before a change that finishes the run: ask the run itself
            run = client.get_run(run_id, include_graph=False)
            if run.status in render.FINISHED_RUN:
                status = run.status
                break
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        out.note(f"\nstopped watching; run {run_id} goes on (flowplan cancel {run_id} stops"
                 " it)")
        raise
    if not out.json:
        out.line(f"run {run_id} {out.paint.status(render.run_status(status))}")
    return EXIT_OK if status == pb.RUN_STATUS_SUCCEEDED else EXIT_FAILED


def cmd_runs(client: Client, args: argparse.Namespace, out: Output) -> int:
    limit: int = args.limit
    runs: list[pb.Run] = []
    token = ""
    while True:
        page = client.list_runs(
            workflow=args.workflow or "", tag=args.tag or "", backfill_id=args.backfill or "",
            status=RUN_STATUSES.get(args.status or "", pb.RUN_STATUS_UNSPECIFIED),
            trigger=TRIGGERS.get(args.trigger or "", pb.RUN_TRIGGER_UNSPECIFIED),
            page_token=token,
            page_size=min(limit - len(runs), MAX_PAGE_SIZE) if limit else MAX_PAGE_SIZE)
        runs.extend(page.runs)
        token = page.next_page_token
        if not token or (limit and len(runs) >= limit):
            break
    exact = not limit or len(runs) <= limit  # the token continues right after the last run
    runs = runs[:limit] if limit else runs
    if not runs:  # a filter's name mistyped is NOT_FOUND, not "no runs"
        _exists(client, workflow=args.workflow, backfill_id=args.backfill)
    if out.json:
        out.message(pb.ListRunsResponse(runs=runs, next_page_token=token if exact else ""))
        return EXIT_OK
    if not runs:
        out.line("no runs")
        return EXIT_OK
    out.lines(render.runs_table(runs, out.paint, _now()))
    if token:
        out.note(f"(more runs: --limit {limit * 2 if limit else 0}, or 0 for all)")
    return EXIT_OK


def _exists(client: Client, *, workflow: str | None = None, backfill_id: str | None = None,
            run_id: str | None = None) -> None:
    """ClientError NOT_FOUND (naming the field) when a list's filter names nothing: an empty
    list is the API's answer to a name it does not know, which hides a typo."""
    if workflow:
        client.get_workflow(workflow)
    if backfill_id:
        client.get_backfill(backfill_id)
    if run_id:
        client.get_run(run_id, include_graph=False)


def cmd_status(client: Client, args: argparse.Namespace, out: Output) -> int:
    response = pb.GetRunResponse(run=client.get_run(args.run_id, include_graph=True))
    if out.json:
        out.message(response)
        return EXIT_OK
    now = _now()
    out.lines(render.run_header(response.run, out.paint, now))
    out.line()
    if not response.run.nodes:
        out.line("(no nodes)")
        return EXIT_OK
    shown = None
    if args.tag:
        shown = {n.name for n in response.run.nodes if render.has_tag(n.tags, args.tag)}
    out.lines(render.run_graph(response.run, out.paint, now, only=shown))
    if shown is not None and not shown:
        out.note(f"no node of run {args.run_id} has the tag {args.tag}")
    return EXIT_OK


def cmd_logs(client: Client, args: argparse.Namespace, out: Output) -> int:
    sink = None if out.json else out.binary()
    written = False
    for chunk in client.node_log(args.run_id, args.node, attempt=args.attempt or 0,
                                 follow=args.follow, until_end=False):
        written = True
        if sink is None:
            out.message(chunk, one_line=True)
        elif chunk.data:
            sink.write(chunk.data)
            sink.flush()
    if not written and not args.attempt:
        why = _no_log(client.get_run(args.run_id, include_graph=True), args.node,
                      follow=args.follow)
        if why:
            out.note(f"flowplan logs: node {args.node} has no log: {why}")
    return EXIT_OK


def _no_log(run: pb.Run, name: str, *, follow: bool) -> str:
    """Why a node that sent no log has none: it never started (and will not, or not yet)."""
    node = next((n for n in run.nodes if n.name == name), None)
    if node is None or node.attempts:
        return ""  # an attempt whose log is empty: nothing to explain
    if node.status == pb.NODE_STATUS_SKIPPED:
        return "it was skipped" + (f" ({node.skip_reason})" if node.skip_reason else "")
    if node.status == pb.NODE_STATUS_CANCELLED:
        return "it was cancelled before it started"
    if node.status == pb.NODE_STATUS_PENDING and not follow:
        return "it has not started yet (--follow waits for it)"
    return ""


def cmd_cancel(client: Client, args: argparse.Namespace, out: Output) -> int:
    run = client.cancel_run(args.run_id)
    if out.json:
        out.message(pb.CancelRunResponse(run=run))
        return EXIT_OK
    status = render.run_status(run.status)
    if run.status in render.FINISHED_RUN:
        out.line(f"run {args.run_id} {out.paint.status(status)}")
    else:
        out.line(f"run {args.run_id}: cancel requested, its running nodes are stopping"
                 f" (flowplan watch {args.run_id})")
    return EXIT_OK


def cmd_resume(client: Client, args: argparse.Namespace, out: Output) -> int:
    response = client.resume_run(args.run_id, args.node, plan_version=args.plan_version or 0,
                                 dry_run=args.dry_run, remarks=args.remarks or "")
    if out.json:
        out.message(response)
        return EXIT_OK
    nodes = ", ".join(response.node_names)
    what = f"{nodes} and every node downstream, with plan version {response.plan_version}"
    if args.dry_run:
        out.line(f"dry run: resuming run {args.run_id} would start {what}")
    else:
        out.line(f"resumed run {args.run_id} as {response.run_id}: starting {what}")
    return EXIT_OK


# -- backfills ---------------------------------------------------------------------------

def cmd_backfill(client: Client, args: argparse.Namespace, out: Output) -> int:
    if args.end < args.start:  # the daemon would say so too, in its own field names
        raise UsageError(f"--to {render.stamp(args.end)} is before --from"
                         f" {render.stamp(args.start)}: give the earlier time as --from")
    response = client.start_backfill(
        args.workflow, start=args.start, end=args.end, queue=args.queue or "",
        remarks=args.remarks or "", failure_emails=args.failure_email,
        max_parallel_runs=args.parallel or 0, dry_run=args.dry_run,
        reprocess=REPROCESS[args.reprocess or "all"])  # sent, not left to UNSPECIFIED
    wait = args.wait and bool(response.backfill_id)
    times = [render.stamp(t.ToDatetime(tzinfo=UTC)) for t in response.logical_times]
    if out.json:
        out.message(response, one_line=wait)
    elif args.dry_run:
        span = f", first {times[0]}, last {times[-1]}:" if times else ""
        out.line(f"dry run: a backfill of {args.workflow} would start {_runs(len(times))}{span}")
        out.lines(f"  {t}" for t in times)
    elif not response.backfill_id:
        reprocess = args.reprocess or "all"
        out.line(f"nothing to backfill: no tick from {render.stamp(args.start)} to"
                 f" {render.stamp(args.end)} is selected by --reprocess {reprocess}")
    else:
        span = f", {times[0]} .. {times[-1]}" if times else ""
        out.line(f"started backfill {response.backfill_id} of {args.workflow}:"
                 f" {_runs(len(times))}{span}")
    if not wait:
        return EXIT_OK
    return wait_backfill(client, response.backfill_id, out)


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def wait_backfill(client: Client, backfill_id: str, out: Output) -> int:
    """Poll the backfill's progress every POLL_SECONDS until it ends: a bar on a terminal,
    a line per change otherwise (a JSON line per change with --json)."""
    view: render.ProgressBar | render.ProgressLines = (
        render.ProgressBar(out.stream, out.paint) if out.live else
        render.ProgressLines(out.stream))
    shown: pb.Backfill | None = None
    try:
        while True:
            backfill = client.get_backfill(backfill_id)  # tried again through a restart
            response = pb.GetBackfillResponse(backfill=backfill)
            if out.json:
                if shown is None or (shown.status, shown.progress) != (
                        backfill.status, backfill.progress):
                    out.message(response, one_line=True)
            else:
                view.update(backfill, _now())
            shown = backfill
            if backfill.status in render.FINISHED_BACKFILL:
                break
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        view.end()
        out.note(f"\nstopped waiting; backfill {backfill_id} goes on (flowplan"
                 f" cancel-backfill {backfill_id} stops it)")
        raise
    view.end()
    if not out.json:
        progress = backfill.progress
        status = render.backfill_status(backfill.status)
        out.line(f"backfill {backfill_id} {out.paint.status(status)}: {_runs(progress.total)}"
                 f" ({render.progress_counts(progress)})")
        if progress.failed:
            out.line(f"failed runs: flowplan runs --backfill {backfill_id} --status failed")
    return EXIT_OK if backfill.status == pb.BACKFILL_STATUS_SUCCEEDED else EXIT_FAILED


def cmd_cancel_backfill(client: Client, args: argparse.Namespace, out: Output) -> int:
    response = client.cancel_backfill(args.backfill_id)
    if out.json:
        out.message(response)
        return EXIT_OK
    status = render.backfill_status(response.backfill.status)
    count = len(response.cancelled_run_ids)
    out.line(f"backfill {args.backfill_id} {out.paint.status(status)}: cancelling {count}"
             f" unfinished run{'s' if count != 1 else ''}")
    out.lines(f"  {run_id}" for run_id in response.cancelled_run_ids)
    return EXIT_OK


def cmd_backfills(client: Client, args: argparse.Namespace, out: Output) -> int:
    def fetch(token: str) -> tuple[Sequence[pb.Backfill], str]:
        page = client.list_backfills(
            workflow=args.workflow or "", page_token=token, page_size=MAX_PAGE_SIZE,
            status=BACKFILL_STATUSES.get(args.status or "", pb.BACKFILL_STATUS_UNSPECIFIED))
        return page.backfills, page.next_page_token

    backfills = _all_pages(fetch)
    if not backfills:
        _exists(client, workflow=args.workflow)
    if out.json:
        out.message(pb.ListBackfillsResponse(backfills=backfills))
    elif not backfills:
        out.line("no backfills")
    else:
        out.lines(render.backfills_table(backfills, out.paint))
    return EXIT_OK


def cmd_backfill_status(client: Client, args: argparse.Namespace, out: Output) -> int:
    response = pb.GetBackfillResponse(backfill=client.get_backfill(args.backfill_id))
    if out.json:
        out.message(response)
    else:
        out.lines(render.backfill_header(response.backfill, out.paint, _now()))
    return EXIT_OK


# -- notifications -----------------------------------------------------------------------

def cmd_notifications(client: Client, args: argparse.Namespace, out: Output) -> int:
    limit: int = args.limit
    items: list[pb.Notification] = []
    token = ""
    while True:
        page = client.list_notifications(
            run_id=args.run or "", page_token=token,
            status=NOTIFICATION_STATUSES.get(args.status or "",
                                             pb.NOTIFICATION_STATUS_UNSPECIFIED),
            page_size=min(limit - len(items), MAX_PAGE_SIZE) if limit else MAX_PAGE_SIZE)
        items.extend(page.notifications)
        token = page.next_page_token
        if not token or (limit and len(items) >= limit):
            break
    items = items[:limit] if limit else items
    if not items:
        _exists(client, run_id=args.run)
    if out.json:
        out.message(pb.ListNotificationsResponse(notifications=items, next_page_token=token))
        return EXIT_OK
    if not items:
        out.line("no notifications")
        return EXIT_OK
    out.lines(render.notifications_table(items, out.paint, body=args.body))
    if token:
        out.note(f"(more notifications: --limit {limit * 2}, or 0 for all)")
    return EXIT_OK
