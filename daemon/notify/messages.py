"""What each notification says: pure builders from runs and plans to `Draft`s (recipients,
subject, plain-text body, idempotency key), and from a stored draft to the
`email.message.EmailMessage` that goes over SMTP. No I/O here: the notifier reads logs and
state and passes them in.

Every body is masked with the run's secret values before it leaves this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from flowplan.compiler.plan import NotifyPlan, WorkflowPlan
from flowplan.daemon.domain import NodeRun, NodeStatus, Run, RunStatus
from flowplan.daemon.engine.commands import mask, mask_end, masked_params

TAIL_LINES: Final = 50
TAIL_BYTES: Final = 4096
MAX_LISTED_RUNS: Final = 50  # a backfill message lists at most this many failed runs
MAX_LISTED_NODES: Final = 50  # an on_failure message details at most this many failed nodes
MAX_NAMED_NODES: Final = 500  # ... names at most this many more, and this many others
PREFIX: Final = "[flowplan]"


class Kind(StrEnum):
    ON_FAILURE = "on_failure"  # a run ended FAILED: the workflow's on_failure.email
    BACKFILL_FAILURE = "backfill_failure"  # a backfill finished with failed runs
    NODE_STATUS = "node_status"  # a node reached a status its notify.on lists


@dataclass(frozen=True, slots=True)
class Draft:
    """One message to record in the outbox. `key` is unique per message: recording the same
    key twice records it once."""

    key: str
    kind: Kind
    recipients: tuple[str, ...]
    subject: str
    body: str
    run_id: str | None = None
    backfill_id: str | None = None
    node: str | None = None


@dataclass(frozen=True, slots=True)
class BackfillInfo:
    """What the backfill message needs of a backfill row."""

    backfill_id: str
    workflow: str
    start_time: datetime
    end_time: datetime
    status: str
    remarks: str
    failure_emails: tuple[str, ...]


# ---- keys ---------------------------------------------------------------------------------

def on_failure_key(run_id: str) -> str:
    return f"{Kind.ON_FAILURE}/{run_id}"


def node_status_key(run_id: str, node: str, status: NodeStatus, attempt: int | None) -> str:
    return f"{Kind.NODE_STATUS}/{run_id}/{node}/{status.value}/{attempt or 0}"


def backfill_key(backfill_id: str) -> str:
    return f"{Kind.BACKFILL_FAILURE}/{backfill_id}"


def message_id(key: str, domain: str) -> str:
    """A Message-ID that depends only on the outbox key (and the sender's domain): a message
    sent again after a crash carries the same one, so mail systems can drop the copy."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"<flowplan.{digest}@{domain or 'flowplan.localhost'}>"


# ---- log tails ----------------------------------------------------------------------------

def tail_text(data: bytes, *, cut: bool, secrets: list[str]) -> str:
    """The last `TAIL_LINES` lines and at most `TAIL_BYTES` bytes of a log, masked.

    `data` is the end of the file and `cut` says whether the file goes on before it; the
    caller reads `TAIL_BYTES` plus the longest secret's length, so that a secret split by
    the start of `data` is dropped with the lines it could be on (`mask_end`) rather than
    shown in part. Masking happens before any trimming for the same reason.
    """
    text = mask_end(data.decode("utf-8", errors="replace"), secrets, cut=cut)
    lines = text.splitlines()[-TAIL_LINES:]
    text = "\n".join(lines)
    encoded = text.encode("utf-8")
    if len(encoded) > TAIL_BYTES:
        text = encoded[-TAIL_BYTES:].decode("utf-8", errors="ignore")
        newline = text.find("\n")
        if newline >= 0:
            text = text[newline + 1:]
    return text


def tail_read_size(secrets: list[str]) -> int:
    """How many bytes from the end of a log `tail_text` wants."""
    return TAIL_BYTES + max((len(s.encode("utf-8")) for s in secrets), default=0)


# ---- the three kinds of message -----------------------------------------------------------

def on_failure_message(run: Run, plan: WorkflowPlan, tails: Mapping[str, str | None],
                       secrets: list[str]) -> Draft | None:
    """The workflow's `on_failure` message for a FAILED run; None when it has no address.

    `tails` maps a failed node to the tail of its last attempt's log (None: no log); only
    the first `MAX_LISTED_NODES` failed nodes (`listed_failures`) are detailed, so that a
    wide fan-out that fails makes a message mail servers still take.
    """
    if not plan.on_failure_email:
        return None
    failed = [n for n in run.nodes if n.status is NodeStatus.FAILED]
    subject = f"{PREFIX} FAILED {run.workflow} run {run.run_id}"
    lines = [f"Run {run.run_id} of workflow {run.workflow} FAILED"
             f" ({len(failed)} of {len(run.nodes)} nodes failed).", ""]
    lines += _run_header(run, plan)
    lines += ["", f"Failed nodes ({len(failed)}):"]
    for node in listed_failures(run):
        lines += ["", *_node_failure(node, tails.get(node.name))]
    more = failed[MAX_LISTED_NODES:]
    if more:
        names = ", ".join(n.name for n in more[:MAX_NAMED_NODES])
        if len(more) > MAX_NAMED_NODES:
            names += f" and {len(more) - MAX_NAMED_NODES} others"
        lines += ["", f"... and {len(more)} more failed nodes (flowplan status"
                      f" {run.run_id}): {names}."]
    others = [f"{n.name} {n.status.value}" for n in run.nodes if n.status is not NodeStatus.FAILED]
    if others:
        named = ", ".join(others[:MAX_NAMED_NODES])
        if len(others) > MAX_NAMED_NODES:
            named += f" and {len(others) - MAX_NAMED_NODES} others"
        lines += ["", "Other nodes: " + named + "."]
    lines += _footer()
    return Draft(key=on_failure_key(run.run_id), kind=Kind.ON_FAILURE,
                 recipients=plan.on_failure_email, subject=mask(subject, secrets),
                 body=mask("\n".join(lines) + "\n", secrets), run_id=run.run_id)


def listed_failures(run: Run) -> list[NodeRun]:
    """The failed nodes the `on_failure` message details (with the tail of their log)."""
    return [n for n in run.nodes if n.status is NodeStatus.FAILED][:MAX_LISTED_NODES]


def node_status_message(run: Run, plan: WorkflowPlan, node: NodeRun, *, notify: NotifyPlan,
                        status: NodeStatus, attempt: int | None, tail: str | None,
                        secrets: list[str]) -> Draft:
    """A node's `notify` message: it reached `status` (in attempt `attempt`)."""
    number = f" (attempt {attempt})" if attempt else ""
    subject = f"{PREFIX} {status.value} {run.workflow}.{node.name} in run {run.run_id}{number}"
    lines = [f"Node {node.name} of run {run.run_id} ({run.workflow}) is"
             f" {status.value}{number}.", ""]
    lines += _run_header(run, plan)
    lines += ["", *_node_attempt(node, attempt)]
    if status is NodeStatus.RETRYING and node.next_attempt_at is not None:
        lines.append(f"Next attempt:  {_when(node.next_attempt_at)}")
    if status in (NodeStatus.FAILED, NodeStatus.RETRYING):
        lines += ["", *_tail_lines(node, attempt, tail)]
    lines += _footer(f"You get this message because node {node.name} subscribes"
                     f" {', '.join(notify.email)} to: {', '.join(notify.on)}.")
    return Draft(key=node_status_key(run.run_id, node.name, status, attempt),
                 kind=Kind.NODE_STATUS, recipients=notify.email,
                 subject=mask(subject, secrets), body=mask("\n".join(lines) + "\n", secrets),
                 run_id=run.run_id, node=node.name)


def backfill_message(backfill: BackfillInfo, runs: Sequence[Run], recipients: Sequence[str],
                     secrets: Mapping[str, list[str]]) -> Draft | None:
    """One message for a whole backfill, listing its failed ticks; None when no tick's latest
    run failed or there is nobody to tell.

    `runs` are the latest run of each tick, with their nodes; `secrets` maps a run id to its
    secret values.
    """
    failed = sorted((r for r in runs if r.status is RunStatus.FAILED),
                    key=lambda r: r.logical_time)
    if not failed or not recipients:
        return None
    subject = (f"{PREFIX} backfill {backfill.backfill_id} of {backfill.workflow}:"
               f" {len(failed)} of {len(runs)} runs FAILED")
    lines = [f"Backfill {backfill.backfill_id} of workflow {backfill.workflow} finished"
             f" ({backfill.status}): {len(failed)} of {len(runs)} runs FAILED.", "",
             f"Range:         {_when(backfill.start_time)} .. {_when(backfill.end_time)}"]
    if backfill.remarks:
        lines.append(f"Remarks:       {backfill.remarks}")
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status.value] = counts.get(run.status.value, 0) + 1
    lines.append("Runs:          " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    lines += ["", "Failed runs (logical time, run, failed nodes):", ""]
    for run in failed[:MAX_LISTED_RUNS]:
        run_lines = [f"- {_when(run.logical_time)}  {run.run_id}"]
        for node in run.nodes:
            if node.status is NodeStatus.FAILED:
                run_lines.append(f"    {node.name}: {_error(node)}")
        lines += [mask(line, secrets.get(run.run_id, [])) for line in run_lines]
    if len(failed) > MAX_LISTED_RUNS:
        lines.append(f"... and {len(failed) - MAX_LISTED_RUNS} more failed runs"
                     f" (flowplan runs --backfill {backfill.backfill_id} --status FAILED).")
    lines += _footer("Each failed run's logs: flowplan logs RUN NODE.")
    all_secrets = sorted({s for values in secrets.values() for s in values}, key=len,
                         reverse=True)
    return Draft(key=backfill_key(backfill.backfill_id), kind=Kind.BACKFILL_FAILURE,
                 recipients=tuple(recipients), subject=mask(subject, all_secrets),
                 body=mask("\n".join(lines) + "\n", all_secrets),
                 backfill_id=backfill.backfill_id)


def merge_recipients(*groups: Iterable[str]) -> tuple[str, ...]:
    """Addresses in order of first appearance, each once (compared case-insensitively)."""
    seen: set[str] = set()
    merged = []
    for group in groups:
        for address in group:
            if address.lower() not in seen:
                seen.add(address.lower())
                merged.append(address)
    return tuple(merged)


# ---- the e-mail itself --------------------------------------------------------------------

def email_message(*, from_address: str, recipients: Sequence[str], subject: str, body: str,
                  message_id: str, date: datetime, kind: str, run_id: str | None,
                  backfill_id: str | None) -> EmailMessage:
    """The RFC 5322 message. Everything in it comes from the outbox row, so a resend is the
    same message: same Message-ID, same Date."""
    message = EmailMessage()
    message["From"] = from_address
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    message["X-Flowplan-Kind"] = kind
    if run_id is not None:
        message["X-Flowplan-Run"] = run_id
    if backfill_id is not None:
        message["X-Flowplan-Backfill"] = backfill_id
    # quoted-printable keeps a UTF-8 body 7-bit: smtplib never asks a server for 8BITMIME
    message.set_content(body, cte="quoted-printable")
    return message


# ---- pieces -------------------------------------------------------------------------------

def _run_header(run: Run, plan: WorkflowPlan) -> list[str]:
    local = run.logical_time.astimezone(ZoneInfo(plan.timezone))
    in_zone = "" if local.utcoffset() == run.logical_time.utcoffset() else (
        f" ({local:%Y-%m-%d %H:%M} {plan.timezone})")
    lines = [f"Workflow:      {run.workflow} (plan version {run.plan_version})",
             f"Run:           {run.run_id} (trigger {run.trigger.value})",
             f"Logical time:  {_when(run.logical_time)}{in_zone}"]
    if run.started_at is not None:
        lines.append(f"Started:       {_when(run.started_at)}")
    if run.finished_at is not None:
        lines.append(f"Finished:      {_when(run.finished_at)}")
    if run.backfill_id:
        lines.append(f"Backfill:      {run.backfill_id}")
    if run.previous_run_id:
        lines.append(f"Resumed from:  {run.previous_run_id}")
    if run.params:
        # as the API shows them: a secret too short to mask in text is still `********`
        lines.append("Params:        " + ", ".join(
            f"{k}={v}" for k, v in sorted(masked_params(run.params).items())))
    if run.remarks:
        lines.append(f"Remarks:       {run.remarks}")
    return lines


def _node_failure(node: NodeRun, tail: str | None) -> list[str]:
    attempts = len(node.attempts)
    copied = f", copied from run {node.copied_from_run_id}" if node.copied_from_run_id else ""
    head = f"--- {node.name}: {_error(node)}"
    if attempts:
        head += f" (attempt {node.attempts[-1].number} of {attempts}{copied})"
    return [head, *_tail_lines(node, None, tail)]


def _node_attempt(node: NodeRun, number: int | None) -> list[str]:
    attempt = next((a for a in node.attempts if a.number == number), None)
    if attempt is None:
        return [f"Node:          {node.name}"]
    lines = [f"Node:          {node.name}, attempt {attempt.number}",
             f"Started:       {_when(attempt.started_at)}"]
    if attempt.finished_at is not None:
        lines.append(f"Finished:      {_when(attempt.finished_at)}")
    if attempt.exit_code is not None:
        lines.append(f"Exit code:     {attempt.exit_code}")
    if attempt.error:
        lines.append(f"Error:         {attempt.error}")
    return lines


def _tail_lines(node: NodeRun, number: int | None, tail: str | None) -> list[str]:
    attempts = [a for a in node.attempts if number is None or a.number == number]
    path = attempts[-1].log_path if attempts else None
    if tail is None:
        return [f"(no log{f' at {path}' if path else ''})"]
    if not tail:
        return [f"(the log {path} is empty)"]
    return [f"Last lines of the log ({path}):", *(f"  | {line}" for line in tail.splitlines())]


def _error(node: NodeRun) -> str:
    if node.attempts and node.attempts[-1].error:
        return node.attempts[-1].error
    if node.skip_reason:
        return node.skip_reason
    return "failed"


def _when(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def _footer(*extra: str) -> list[str]:
    return ["", "--", *extra, "Sent by flowplan."]
