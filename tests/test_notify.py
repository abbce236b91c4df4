"""E-mail notifications through the outbox, against a real SMTP server (aiosmtpd on
127.0.0.1): each kind of message from real engine runs, retries with backoff on a fake clock,
restart with an unsent outbox, no server configured, STARTTLS refused, login, recipients
refused for now, a clean stop mid-send, settings refused at start."""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from engine_fakes import FakeClock

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.plan import Plan, PlanError, WorkflowPlan
from flowplan.compiler.repo import read_repo
from flowplan.compiler.store import PlanStore
from flowplan.daemon.domain import (
    Attempt,
    AttemptStatus,
    NodeRun,
    NodeStatus,
    Run,
    RunStatus,
    RunTrigger,
)
from flowplan.daemon.engine.clock import Clock, SystemClock
from flowplan.daemon.engine.commands import mask, secret_values
from flowplan.daemon.engine.engine import Engine, EngineSettings, StatusEvent
from flowplan.daemon.engine.launcher import LocalLauncher
from flowplan.daemon.notify import (
    Notifier,
    Outbox,
    OutboxSender,
    OutboxStatus,
    RetryPolicy,
    SmtpSettings,
)
from flowplan.daemon.notify.messages import (
    TAIL_BYTES,
    Draft,
    Kind,
    listed_failures,
    on_failure_message,
    tail_text,
)
from flowplan.daemon.server.command import add_serve_arguments
from flowplan.daemon.server.config import UsageError
from flowplan.daemon.server.settings import load_settings
from flowplan.daemon.state.store import StateStore, ts
from flowplan.daemon.watcher import PlanCatalog

LOGICAL = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
SECRET = "s3cr3t-t0ken-value"


# ---- a real SMTP server -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Inbox:
    """What the SMTP server received (`raw`: as it came); `refuse` makes RCPT answer 550 for
    those addresses, `later` 452 (try again later); `data_delay` seconds pass before DATA is
    answered (a server that scans content), `receiving` counts the DATA commands begun."""

    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    later: set[str] = field(default_factory=set)
    data_delay: float = 0.0
    receiving: int = 0
    quit_answer: str = "221 Bye"  # what QUIT gets (a server may close with 421)

    async def handle_RCPT(  # noqa: N802 (the hook names are aiosmtpd's)
            self, server: SMTP, session: Session, envelope: Envelope, address: str,
            rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return "550 no such mailbox"
        if address in self.later:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
            self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.receiving += 1
        await asyncio.sleep(self.data_delay)
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.raw.append(envelope.content)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    async def handle_QUIT(  # noqa: N802
            self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return self.quit_answer

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for _, m in self.messages]


class Server:
    def __init__(self, port: int, **smtp: Any) -> None:
        self.port = port
        self.inbox = Inbox()
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=port, **smtp)
        self.up = False

    def start(self) -> None:
        self._controller.start()
        self.up = True

    def stop(self) -> None:
        if self.up:
            self._controller.stop()
            self.up = False


@pytest.fixture
def server() -> Iterator[Server]:
    smtp = Server(free_port())
    smtp.start()
    yield smtp
    smtp.stop()


def settings_for(port: int, **kwargs: Any) -> SmtpSettings:
    kwargs.setdefault("timeout", 5.0)
    return SmtpSettings(host="127.0.0.1", port=port, from_address="flowplan@example.org",
                        **kwargs)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def draft(key: str = "on_failure/wr_1", to: tuple[str, ...] = ("ops@example.com",)) -> Draft:
    return Draft(key=key, kind=Kind.ON_FAILURE, recipients=to, subject=f"[flowplan] {key}",
                 body="hello\n", run_id="wr_1")


# ---- a daemon-shaped harness: engine, store, outbox, sender, notifier ---------------------

class Env:
    def __init__(self, tmp: Path, make_repo: Any, settings: SmtpSettings | None,
                 clock: Clock | None = None) -> None:
        self.make_repo = make_repo
        self.plans = PlanStore(tmp / "store")
        self.state = StateStore(tmp / "state")
        self.catalog = PlanCatalog(self.plans)
        self.engine = Engine(store=self.state, plans=self.catalog,
                             launcher=LocalLauncher(), clock=SystemClock(),
                             settings=EngineSettings(state_dir=tmp / "state",
                                                     kill_grace_seconds=1.0))
        self.outbox = Outbox(self.state)
        self.sender = OutboxSender(self.outbox, settings, clock=clock or SystemClock())
        self.notifier = Notifier(store=self.state, plans=self.catalog,
                                 sender=self.sender)
        self.engine.subscribe(self.notifier.on_event, durable=True)

    def publish(self, files: dict[str, str]) -> None:
        result = compile_repo(read_repo(self.make_repo(files)))
        assert result.ok, [str(d) for d in result.diagnostics]
        self.plans.publish(result.plans)
        self.catalog.rescan()

    async def run(self, workflow: str, **kwargs: Any) -> str:
        plan = self.plans.latest(workflow)
        assert plan is not None
        kwargs.setdefault("trigger", RunTrigger.MANUAL)
        kwargs.setdefault("logical_time", LOGICAL)
        run_id = self.engine.create_run(plan, **kwargs).run_id
        await self.engine.wait_run(run_id)
        return run_id


def drive(env: Env, body_: Callable[[Env], Awaitable[None]]) -> None:
    async def main() -> None:
        await env.sender.start()
        await env.engine.start()
        try:
            await body_(env)
        finally:
            await env.engine.stop()
            await env.sender.stop()
            env.state.close()

    asyncio.run(asyncio.wait_for(main(), 20))


FAILING = """
name: daily_sales
params: {region: eu, API_TOKEN: THE_SECRET}
on_failure: {email: [data-team@example.com, lead@example.com]}
nodes:
  - name: ingest
    command: echo ingest ok
  - name: transform
    upstream: [ingest]
    command: for i in $(seq 1 80); do echo "line $i token=${params.API_TOKEN}"; done; exit 3
    notify: {email: [ana@example.com], on: [failed]}
  - name: report
    upstream: [transform]
    command: echo never
  - name: side
    upstream: [ingest]
    command: echo side
    notify: {email: [bob@example.com], on: [failed]}
""".replace("THE_SECRET", SECRET)


def test_a_failed_run_sends_one_on_failure_message_with_the_log_tail_masked(
        tmp_path: Path, make_repo: Any, server: Server) -> None:
    env = Env(tmp_path, make_repo, settings_for(server.port))

    async def body_(env: Env) -> None:
        env.publish({"workflows/daily_sales.yaml": FAILING})
        run_id = await env.run("daily_sales")
        assert env.state.get_run(run_id).status is RunStatus.FAILED  # type: ignore[union-attr]
        # a replayed event (a restart re-emitting it) records nothing new
        env.notifier.on_event(StatusEvent(run_id, None, "FAILED", LOGICAL))
        env.notifier.on_event(StatusEvent(run_id, "transform", "FAILED", LOGICAL, 1))
        await until(lambda: len(server.inbox.messages) == 2)
        await asyncio.sleep(0.1)  # nothing else arrives
        assert len(server.inbox.messages) == 2

        kinds = sorted(str(m["X-Flowplan-Kind"]) for _, m in server.inbox.messages)
        assert kinds == ["node_status", "on_failure"]
        by_kind = {str(m["X-Flowplan-Kind"]): (to, m) for to, m in server.inbox.messages}
        to, message = by_kind["on_failure"]
        assert to == ["data-team@example.com", "lead@example.com"]
        assert message["Subject"] == f"[flowplan] FAILED daily_sales run {run_id}"
        assert message["From"] == "flowplan@example.org"
        assert message["X-Flowplan-Run"] == run_id
        text = body(message)
        assert f"Run {run_id} of workflow daily_sales FAILED" in text
        assert "plan version 1" in text
        assert "Logical time:  2026-03-28T23:30:00+00:00" in text
        assert "--- transform: exited with code 3" in text
        assert "line 80 token=********" in text  # the end of the log ...
        assert "line 30 token" not in text  # ... only its last 50 lines
        assert "line 31 token=********" in text
        assert "API_TOKEN=********" in text
        assert SECRET not in text and SECRET not in message.as_string()
        assert "Other nodes: ingest SUCCEEDED, report SKIPPED, side SUCCEEDED." in text

        to, message = by_kind["node_status"]
        assert to == ["ana@example.com"]  # `side` succeeded: bob subscribed to failed only
        assert message["Subject"] == (
            f"[flowplan] FAILED daily_sales.transform in run {run_id} (attempt 1)")
        assert "line 80 token=********" in body(message)
        assert SECRET not in message.as_string()

        rows = env.outbox.rows()
        assert [r.status for r in rows] == [OutboxStatus.SENT] * 2
        assert {r.message_id for r in rows} == {str(m["Message-ID"])
                                                for _, m in server.inbox.messages}

    drive(env, body_)


SUBSCRIBED = """
name: flaky
nodes:
  - name: flaky
    command: if [ -e %(marker)s ]; then echo second; else touch %(marker)s; exit 1; fi
    retries: 1
    retry_delay: 0s
    notify:
      email: [ana@example.com, ops@example.com]
      on: [running, retrying, succeeded, failed]
  - name: quiet
    upstream: [flaky]
    command: echo quiet
    notify: {email: [bob@example.com], on: [failed, retrying]}
"""


def test_node_notify_sends_each_subscribed_status(tmp_path: Path, make_repo: Any,
                                                   server: Server) -> None:
    env = Env(tmp_path, make_repo, settings_for(server.port))

    async def body_(env: Env) -> None:
        env.publish({"workflows/flaky.yaml": SUBSCRIBED % {"marker": tmp_path / "marker"}})
        run_id = await env.run("flaky")
        await until(lambda: len(server.inbox.messages) == 4)
        await asyncio.sleep(0.1)
        assert server.inbox.subjects() == [
            f"[flowplan] RUNNING flaky.flaky in run {run_id} (attempt 1)",
            f"[flowplan] RETRYING flaky.flaky in run {run_id} (attempt 1)",
            f"[flowplan] RUNNING flaky.flaky in run {run_id} (attempt 2)",
            f"[flowplan] SUCCEEDED flaky.flaky in run {run_id} (attempt 2)",
        ]
        assert all(to == ["ana@example.com", "ops@example.com"]
                   for to, _ in server.inbox.messages)
        retrying = body(server.inbox.messages[1][1])
        assert "Error:         exited with code 1" in retrying
        assert "Next attempt:" in retrying
        assert "subscribes ana@example.com, ops@example.com to: running, retrying" in retrying

    drive(env, body_)


BACKFILLED = """
name: nightly
on_failure: {email: [owner@example.com]}
schedule: {every: day, at: "00:00"}
nodes:
  - name: load
    command: echo "loading ${ds}"; test "${ds}" = "2026-01-02"
"""


def add_backfill(env: Env, *, days: int, remarks: str, failure_emails: list[str]) -> None:
    """Backfill bf_1 of nightly, FAILED, over the first `days` days of January 2026 (its
    runs are the test's to make)."""
    with env.state.transaction() as db:
        db.execute(
            "INSERT INTO backfills (backfill_id, workflow, start_time, end_time, status,"
            " max_parallel_runs, remarks, failure_emails, reprocess, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            ("bf_1", "nightly", ts(datetime(2026, 1, 1, tzinfo=UTC)),
             ts(datetime(2026, 1, days, tzinfo=UTC)), "FAILED", days, remarks,
             json.dumps(failure_emails), "all", ts(LOGICAL)))


def test_a_backfill_sends_one_message_for_its_failed_runs(tmp_path: Path, make_repo: Any,
                                                          server: Server) -> None:
    env = Env(tmp_path, make_repo, settings_for(server.port))

    async def body_(env: Env) -> None:
        env.publish({"workflows/nightly.yaml": BACKFILLED})
        add_backfill(env, days=3, remarks="reload january",
                     failure_emails=["backfill@example.com", "OWNER@example.com"])
        runs = [await env.run("nightly", trigger=RunTrigger.BACKFILL, backfill_id="bf_1",
                              logical_time=datetime(2026, 1, day, tzinfo=UTC))
                for day in (1, 2, 3)]
        await asyncio.sleep(0.2)
        assert server.inbox.messages == []  # no message per failed backfill run
        assert env.notifier.backfill_finished("bf_1")
        assert not env.notifier.backfill_finished("bf_1")  # once per backfill
        assert not env.notifier.backfill_finished("bf_missing")
        await until(lambda: len(server.inbox.messages) == 1)
        to, message = server.inbox.messages[0]
        assert to == ["backfill@example.com", "OWNER@example.com"]  # owner@ once
        assert message["Subject"] == "[flowplan] backfill bf_1 of nightly: 2 of 3 runs FAILED"
        assert message["X-Flowplan-Backfill"] == "bf_1"
        text = body(message)
        assert "Remarks:       reload january" in text
        assert "Runs:          2 FAILED, 1 SUCCEEDED" in text
        assert f"- 2026-01-01T00:00:00+00:00  {runs[0]}" in text
        assert f"- 2026-01-03T00:00:00+00:00  {runs[2]}" in text
        assert runs[1] not in text
        assert "    load: exited with code 1" in text

    drive(env, body_)


PAIR = """
name: pair
on_failure: {email: [owner@example.com]}
nodes:
  - {name: a, command: echo a}
  - {name: b, command: exit 1, upstream: [a]}
"""


def test_a_run_whose_plan_cannot_be_loaded_gets_a_warning_and_its_backfill_its_message(
        tmp_path: Path, make_repo: Any, server: Server, caplog: Any) -> None:
    """A run failed because a plan version it uses no longer loads (a restart, an
    admission; here a resumed run's copied node's older version): no failure e-mail of its
    own (the plan holds the recipients), a warning instead; its backfill's message goes to
    the backfill's failure_emails, listing the run without its nodes' errors (its secrets
    cannot be known to mask them)."""
    env = Env(tmp_path, make_repo, settings_for(server.port))

    async def body_(env: Env) -> None:
        env.publish({"workflows/nightly.yaml": BACKFILLED, "workflows/pair.yaml": PAIR})
        add_backfill(env, days=1, remarks="", failure_emails=["backfill@example.com"])
        run_id = await env.run("nightly", trigger=RunTrigger.BACKFILL, backfill_id="bf_1",
                               logical_time=datetime(2026, 1, 1, tzinfo=UTC))
        first = await env.run("pair")
        env.publish({"workflows/nightly.yaml": BACKFILLED,
                     "workflows/pair.yaml": PAIR.replace("name: pair", "name: pair\n"
                                                         "description: version 2")})
        resumed = env.engine.resume_run(first, ["b"], plan_version=2).run_id
        await env.engine.wait_run(resumed)  # a: copied, version 1; b: version 2, failed
        await until(lambda: len(server.inbox.messages) == 2)  # first's and resumed's

        def damaged(workflow: str, version: int) -> Plan:
            if version == 1:
                raise PlanError(f"{workflow} version 1: the plan file is damaged")
            return env.plans.load(workflow, version)

        env.catalog.get = damaged  # type: ignore[method-assign]
        rows = len(env.outbox.rows())
        caplog.clear()
        restarted = Notifier(store=env.state, plans=env.catalog, sender=env.sender)
        restarted.on_event(StatusEvent(resumed, None, "FAILED", LOGICAL, None, None))
        assert len(env.outbox.rows()) == rows
        assert [(r.levelname, r.exc_info) for r in caplog.records] == [("WARNING", None)]
        assert f"run {resumed} failed, and no failure e-mail was recorded: its plan cannot" \
               " be loaded (pair version 1: the plan file is damaged)" in caplog.text
        assert env.notifier.backfill_finished("bf_1")
        await until(lambda: len(server.inbox.messages) == 3)
        [(to, message)] = [(to, m) for to, m in server.inbox.messages
                           if m["X-Flowplan-Backfill"] == "bf_1"]
        assert to == ["backfill@example.com"]
        text = body(message)
        assert f"- 2026-01-01T00:00:00+00:00  {run_id}" in text
        assert "exited with code" not in text

    drive(env, body_)


# ---- delivery: retries, restart, no server, STARTTLS, login --------------------------------

async def settle_delivery(clock: FakeClock, outbox: Outbox, attempts: int) -> None:
    """Wait (in real time) until the first row has made `attempts` attempts and recorded
    the result of the last one (a retry is due later than now, or the row is final)."""
    def done() -> bool:
        row = outbox.rows()[0]
        return row.attempts == attempts and (
            row.status is not OutboxStatus.PENDING
            or (row.next_attempt_at is not None and row.next_attempt_at > clock.now()))
    await until(done)
    await clock.settle()


def test_server_down_then_up_retries_with_exponential_backoff(tmp_path: Path,
                                                              caplog: Any) -> None:
    caplog.set_level(logging.INFO, "flowplan.notify")
    smtp = Server(free_port())
    clock = FakeClock()
    state = StateStore(tmp_path / "state")
    outbox = Outbox(state)
    sender = OutboxSender(outbox, settings_for(smtp.port), clock=clock)

    async def main() -> None:
        await sender.start()
        start = clock.now()
        sender.record(draft())
        await settle_delivery(clock, outbox, 1)
        row = outbox.rows()[0]
        assert row.status is OutboxStatus.PENDING
        assert row.next_attempt_at == start + timedelta(seconds=30)
        assert "cannot connect to the SMTP server 127.0.0.1" in (row.last_error or "")
        await clock.advance(30)
        await settle_delivery(clock, outbox, 2)
        assert outbox.rows()[0].next_attempt_at == start + timedelta(seconds=30 + 60)
        smtp.start()
        try:
            await clock.advance(59)
            await asyncio.sleep(0.1)
            assert smtp.inbox.messages == [] and outbox.rows()[0].attempts == 2
            await clock.advance(1)
            await until(lambda: outbox.rows()[0].status is OutboxStatus.SENT)
        finally:
            await sender.stop()
            smtp.stop()
        assert len(smtp.inbox.messages) == 1
        row = outbox.rows()[0]
        assert row.attempts == 3 and row.sent_at == start + timedelta(seconds=90)
        assert smtp.inbox.messages[0][1]["Message-ID"] == row.message_id

    asyncio.run(asyncio.wait_for(main(), 10))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "attempt 1 of 10 failed" in warnings[0]


def test_gives_up_after_max_attempts_and_logs_it(tmp_path: Path, caplog: Any) -> None:
    clock = FakeClock()
    state = StateStore(tmp_path / "state")
    outbox = Outbox(state)
    sender = OutboxSender(outbox, settings_for(free_port()), clock=clock,
                          policy=RetryPolicy(max_attempts=3, first_delay_seconds=1))

    async def main() -> None:
        await sender.start()
        sender.record(draft())
        for attempts, wait in ((1, 1), (2, 2), (3, 0)):
            await settle_delivery(clock, outbox, attempts)
            await clock.advance(wait)
        await sender.stop()

    asyncio.run(asyncio.wait_for(main(), 10))
    row = outbox.rows()[0]
    assert row.status is OutboxStatus.FAILED and row.attempts == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "given up after 3 attempts: cannot connect" in errors[0]


def test_a_permanent_refusal_fails_at_once(tmp_path: Path, server: Server) -> None:
    server.inbox.refuse = {"gone@example.com"}
    outbox = Outbox(StateStore(tmp_path / "state"))
    sender = OutboxSender(outbox, settings_for(server.port), clock=SystemClock())

    async def main() -> None:
        await sender.start()
        sender.record(draft("a", to=("gone@example.com",)))
        sender.record(draft("b", to=("gone@example.com", "ok@example.com")))
        await until(lambda: all(r.status is not OutboxStatus.PENDING for r in outbox.rows()))
        await sender.stop()

    asyncio.run(asyncio.wait_for(main(), 10))
    failed, partial = outbox.rows()
    assert failed.status is OutboxStatus.FAILED and failed.attempts == 1
    assert "refused every recipient: gone@example.com (550" in (failed.last_error or "")
    assert partial.status is OutboxStatus.SENT
    assert "refused by the server: gone@example.com (550" in (partial.last_error or "")
    assert [to for to, _ in server.inbox.messages] == [["ok@example.com"]]


def test_a_restart_delivers_what_the_last_process_left_unsent(tmp_path: Path,
                                                              server: Server) -> None:
    state = StateStore(tmp_path / "state")
    outbox = Outbox(state)
    first = OutboxSender(outbox, settings_for(server.port), clock=SystemClock())
    interrupted = first.record(draft("on_failure/wr_1"))
    first.record(draft("on_failure/wr_2"))
    assert interrupted is not None
    outbox.begin_attempt(interrupted)  # the process died while sending it
    state.close()  # ... and never started delivering the other

    state = StateStore(tmp_path / "state")
    outbox = Outbox(state)
    second = OutboxSender(outbox, settings_for(server.port), clock=SystemClock())

    async def main() -> None:
        await second.start()
        await until(lambda: len(server.inbox.messages) == 2)
        await second.stop()

    asyncio.run(asyncio.wait_for(main(), 10))
    rows = outbox.rows()
    assert [(r.status, r.attempts) for r in rows] == [(OutboxStatus.SENT, 2),
                                                      (OutboxStatus.SENT, 1)]
    assert [m["Message-ID"] for _, m in server.inbox.messages] == [r.message_id for r in rows]
    assert second.record(draft("on_failure/wr_1")) is None  # recorded once, ever


def test_without_smtp_messages_are_recorded_not_sent_and_one_warning_is_logged(
        tmp_path: Path, make_repo: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, "flowplan.notify")
    env = Env(tmp_path, make_repo, None)

    async def body_(env: Env) -> None:
        env.publish({"workflows/daily_sales.yaml": FAILING})
        await env.run("daily_sales")
        await env.run("daily_sales")

    drive(env, body_)
    rows = Outbox(StateStore(tmp_path / "state")).rows()
    assert [r.kind for r in rows] == ["node_status", "on_failure"] * 2
    assert {(r.status, r.last_error) for r in rows} == {
        (OutboxStatus.NOT_SENT, "no SMTP server configured")}
    assert all(SECRET not in r.body for r in rows)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["no SMTP server configured: notifications are recorded in the outbox"
                        " and not sent"]


def test_starttls_against_a_server_without_it_is_a_clear_error_and_retried(
        tmp_path: Path, server: Server, caplog: Any) -> None:
    clock = FakeClock()
    outbox = Outbox(StateStore(tmp_path / "state"))
    sender = OutboxSender(outbox, settings_for(server.port, starttls=True), clock=clock)

    async def main() -> None:
        await sender.start()
        sender.record(draft())
        await settle_delivery(clock, outbox, 1)
        await clock.advance(30)
        await settle_delivery(clock, outbox, 2)
        await sender.stop()

    asyncio.run(asyncio.wait_for(main(), 10))
    row = outbox.rows()[0]
    assert row.status is OutboxStatus.PENDING and server.inbox.messages == []
    assert row.last_error == (f"the SMTP server 127.0.0.1:{server.port} does not offer"
                              " STARTTLS, which the settings require (--smtp-starttls): turn"
                              " it off or use a server that has it")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "does not offer STARTTLS" in warnings[0]


def test_login_with_the_password_file(tmp_path: Path) -> None:
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"hunter2")

    smtp = Server(free_port(), authenticator=authenticator, auth_require_tls=False)
    smtp.start()
    (tmp_path / "password").write_text("hunter2\n")
    settings = smtp_from(
        ["--smtp-host", "127.0.0.1", "--smtp-port", str(smtp.port), "--smtp-user", "flow",
         "--smtp-password-file", str(tmp_path / "password"), "--smtp-from", "f@example.org"])
    assert settings is not None and "hunter2" not in repr(settings)
    outbox = Outbox(StateStore(tmp_path / "state"))
    sender = OutboxSender(outbox, settings, clock=SystemClock())

    async def main() -> None:
        await sender.start()
        sender.record(draft())
        await until(lambda: outbox.rows()[0].status is OutboxStatus.SENT)
        await sender.stop()

    try:
        asyncio.run(asyncio.wait_for(main(), 10))
    finally:
        smtp.stop()
    assert logins == [(b"flow", b"hunter2")] and len(smtp.inbox.messages) == 1


def test_a_failing_listener_never_fails_the_engine(tmp_path: Path, caplog: Any) -> None:
    state = StateStore(tmp_path / "state")
    notifier = Notifier(store=state, plans=PlanCatalog(PlanStore(tmp_path / "store")),
                        sender=OutboxSender(Outbox(state), None, clock=SystemClock()))
    state.close()  # every read now raises
    notifier.on_event(StatusEvent("wr_1", None, "FAILED", LOGICAL))
    notifier.on_event(StatusEvent("wr_1", "n", "SUCCEEDED", LOGICAL, 1))
    assert not notifier.backfill_finished("bf_1")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["run wr_1: the notification for the run FAILED could not be recorded",
                      "run wr_1: the notification for n SUCCEEDED could not be recorded",
                      "backfill bf_1: the failure notification could not be recorded"]


# ---- settings and log tails ---------------------------------------------------------------

def smtp_from(argv: list[str], environ: dict[str, str] | None = None) -> SmtpSettings | None:
    """The SMTP settings `flowplan serve` would use with these flags and FLOWPLAN_* variables
    (by default none)."""
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return load_settings(parser.parse_args(argv), environ=environ or {}).smtp()


def test_settings_from_a_toml_file_with_flags_over_it(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "secret").write_text("pw\n")
    file = tmp_path / "conf" / "flowplan.toml"
    file.write_text('[smtp]\nhost = "mail.example.com"\nstarttls = true\nuser = "flow"\n'
                    'password_file = "secret"\nfrom = "Flowplan <fp@example.com>"\n'
                    '[server]\nlisten = "127.0.0.1:50051"\n')

    settings = smtp_from(["--settings", str(file)])
    assert settings == SmtpSettings(host="mail.example.com", port=587,
                                    from_address="Flowplan <fp@example.com>", starttls=True,
                                    username="flow", password="pw")
    assert settings.domain == "example.com"
    settings = smtp_from(["--settings", str(file), "--smtp-host", "localhost",
                          "--no-smtp-starttls", "--smtp-port", "2525"])
    assert settings is not None
    assert (settings.host, settings.port, settings.starttls) == ("localhost", 2525, False)
    assert smtp_from([]) is None

    file.write_text('[smtp]\nhost = "h"\nprot = 25\n')
    with pytest.raises(UsageError, match=r"unknown key\(s\) in \[smtp\]: prot"):
        smtp_from(["--settings", str(file)])
    with pytest.raises(UsageError, match="needs a password file"):
        smtp_from(["--smtp-host", "h", "--smtp-user", "u"])
    with pytest.raises(UsageError, match="not an e-mail address"):
        smtp_from(["--smtp-host", "h", "--smtp-from", "nope"])


def test_log_tail_limits_and_never_shows_part_of_a_secret() -> None:
    lines = "".join(f"line {i}\n" for i in range(100)).encode()
    assert tail_text(lines, cut=False, secrets=[]).splitlines()[0] == "line 50"
    long = ("x" * 200 + "\n") * 40
    assert len(tail_text(long.encode(), cut=False, secrets=[]).encode()) <= TAIL_BYTES
    secret = "abcdef-secret"
    # the read window starts inside the secret: its end must not show
    assert "secret" not in tail_text(f"{secret[5:]} rest\nok {secret}\n".encode(), cut=True,
                                     secrets=[secret])
    # one long line: the first len(secret) characters go instead
    assert tail_text(f"{secret[5:]}{'y' * 20}".encode(), cut=True,
                     secrets=[secret]) == "y" * 15
    assert tail_text(f"ok {secret}\n".encode(), cut=False, secrets=[secret]) == "ok ********"


TEMPLATED = """
name: templated
params: {region: eu}
on_failure: {email: [data-team@example.com]}
nodes:
  - name: load
    env: {DB_TOKEN: "${params.region}-${ds_nodash}-zz9"}
    command: echo "using $DB_TOKEN"; exit 2
"""


def test_the_rendered_value_of_a_templated_env_secret_is_masked_in_e_mails(
        tmp_path: Path, make_repo: Any, server: Server) -> None:
    env = Env(tmp_path, make_repo, settings_for(server.port))
    rendered = "eu-20260328-zz9"  # what the node's DB_TOKEN was, not its template

    async def body_(env: Env) -> None:
        env.publish({"workflows/templated.yaml": TEMPLATED})
        await env.run("templated")
        await until(lambda: len(server.inbox.messages) == 1)
        _, message = server.inbox.messages[0]
        assert "using ********" in body(message)
        assert rendered not in message.as_string()

    drive(env, body_)


def test_overlapping_secrets_are_masked_as_one_stretch() -> None:
    # masking "abcd" first must not leave "ef" of "cdef" in clear
    assert mask("x abcdef y", ["abcd", "cdef"]) == "x ******** y"
    assert mask("aaaa-aaa", ["aaa"]) == "********-********"
    assert mask("nothing here", ["abcd"]) == "nothing here"


def test_a_multi_line_secret_cut_by_the_tail_window_never_shows_in_part() -> None:
    key = "-----BEGIN KEY-----\nAAAAAAAA\nBBBBBBBB\n-----END KEY-----"
    data = (key + "\n" + "after the key\n" * 4 + "last line\n").encode()
    # the window starts inside the key: the key's later lines must not show either
    cut = tail_text(data[25:], cut=True, secrets=[key])
    assert "BBBB" not in cut and "END KEY" not in cut and cut.endswith("key\nlast line")
    assert tail_text(data, cut=False, secrets=[key]).splitlines()[:2] == [
        "********", "after the key"]


# ---- recipients refused for now, attempts that raise, a stop mid-send -----------------------

def test_recipients_refused_for_now_get_the_message_from_a_follow_up_row(
        tmp_path: Path, server: Server) -> None:
    server.inbox.later = {"busy@example.com"}  # 452: try again later
    server.inbox.refuse = {"gone@example.com"}  # 550: never
    clock = FakeClock()
    outbox = Outbox(StateStore(tmp_path / "state"))
    sender = OutboxSender(outbox, settings_for(server.port), clock=clock)
    start = clock.now()

    async def main() -> None:
        await sender.start()
        sender.record(draft(to=("ok@example.com", "busy@example.com", "gone@example.com")))
        await settle_delivery(clock, outbox, 1)
        await until(lambda: len(outbox.rows()) == 2)
        server.inbox.later = set()
        await clock.advance(30)
        await until(lambda: outbox.rows()[1].status is OutboxStatus.SENT)
        await sender.stop()

    asyncio.run(asyncio.wait_for(main(), 10))
    first, retry = outbox.rows()
    assert (first.status, first.attempts) == (OutboxStatus.SENT, 1)
    assert first.last_error == (
        "refused by the server: busy@example.com (452 4.5.3 Too many recipients);"
        " gone@example.com (550 no such mailbox); retried for busy@example.com as outbox"
        f" row {retry.id}")
    assert retry.key == "on_failure/wr_1/retry/1" and retry.recipients == ("busy@example.com",)
    assert (retry.kind, retry.run_id, retry.subject, retry.body, retry.message_id,
            retry.created_at) == (first.kind, first.run_id, first.subject, first.body,
                                  first.message_id, first.created_at)
    assert (retry.status, retry.attempts, retry.sent_at) == (
        OutboxStatus.SENT, 1, start + timedelta(seconds=30))
    assert [to for to, _ in server.inbox.messages] == [["ok@example.com"],
                                                      ["busy@example.com"]]
    assert {str(m["Message-ID"]) for _, m in server.inbox.messages} == {first.message_id}


def test_an_attempt_that_raises_is_a_failed_attempt_and_later_rows_go_on(
        tmp_path: Path, server: Server, caplog: Any) -> None:
    clock = FakeClock()
    outbox = Outbox(StateStore(tmp_path / "state"))
    sender = OutboxSender(outbox, settings_for(server.port), clock=clock,
                          policy=RetryPolicy(max_attempts=2))
    start = clock.now()

    async def main() -> None:
        await sender.start()
        # a row no message can be built from (a header with a line break)
        sender.record(draft("bad", to=("ops@example.com\r\nBcc: spy@example.com",)))
        await settle_delivery(clock, outbox, 1)
        sender.record(draft("good"))
        await until(lambda: outbox.rows()[1].status is OutboxStatus.SENT)
        await clock.advance(30)
        await settle_delivery(clock, outbox, 2)
        await sender.stop()

    asyncio.run(asyncio.wait_for(main(), 10))
    bad, good = outbox.rows()
    assert (bad.status, bad.attempts, good.status) == (OutboxStatus.FAILED, 2, OutboxStatus.SENT)
    assert (bad.last_error or "").startswith(
        "the message could not be built or sent: ValueError: Header values may not contain")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "attempt 1 of 2 failed" in warnings[0].getMessage()
    assert warnings[0].exc_info is not None  # the traceback, to find the cause
    assert f"next attempt at {(start + timedelta(seconds=30)).isoformat()}" in \
        warnings[0].getMessage()
    assert [to for to, _ in server.inbox.messages] == [["ops@example.com"]]


def test_a_message_the_server_accepted_is_sent_once_however_it_answers_quit(
        tmp_path: Path, server: Server) -> None:
    """The server said 250 to the message, then 421 to QUIT: the message is delivered, and
    trying again sent it up to 10 times."""
    server.inbox.quit_answer = "421 closing"
    outbox = Outbox(StateStore(tmp_path / "state"))
    sender = OutboxSender(outbox, settings_for(server.port), clock=SystemClock())

    async def main() -> None:
        await sender.start()
        sender.record(draft())
        await until(lambda: outbox.rows()[0].status is not OutboxStatus.PENDING)
        await sender.stop()

    asyncio.run(asyncio.wait_for(main(), 10))
    row = outbox.rows()[0]
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.SENT, 1, None)
    assert len(server.inbox.messages) == 1


def test_a_stop_while_the_server_is_slow_to_answer_records_the_message_as_sent(
        tmp_path: Path, server: Server, caplog: Any) -> None:
    server.inbox.data_delay = 1.0  # longer than the stop's grace, shorter than the timeout
    state = StateStore(tmp_path / "state")
    outbox = Outbox(state)
    sender = OutboxSender(outbox, settings_for(server.port, timeout=3.0), clock=SystemClock())

    async def main() -> None:
        await sender.start()
        sender.record(draft())
        await until(lambda: server.inbox.receiving == 1)
        await sender.stop(grace_seconds=0.2)

    asyncio.run(asyncio.wait_for(main(), 10))
    row = outbox.rows()[0]
    assert (row.status, row.attempts) == (OutboxStatus.SENT, 1)  # not sent again at start
    assert len(server.inbox.messages) == 1 and outbox.next_due() is None
    assert any("waiting for the SMTP server's answer to notification on_failure/wr_1"
               in r.getMessage() for r in caplog.records)


# ---- settings refused at start --------------------------------------------------------------

def test_settings_that_cannot_send_are_refused_at_start_naming_the_setting(
        tmp_path: Path) -> None:
    (tmp_path / "ascii").write_text("hunter2\n")
    (tmp_path / "accents").write_text("pässwörd\n")
    login = ["--smtp-user", "flow", "--smtp-password-file", str(tmp_path / "ascii")]
    with pytest.raises(UsageError) as refused:
        smtp_from(["--smtp-host", "mail.example.com", *login])
    assert str(refused.value) == (
        "--smtp-user and --smtp-password-file without --smtp-starttls would send the SMTP"
        " password to mail.example.com in clear: turn on --smtp-starttls, or send through a"
        " mail relay on this machine (host localhost, 127.0.0.1 or ::1)")
    for host in ("localhost", "127.0.0.1", "127.0.0.53", "::1"):  # a relay on this machine
        assert smtp_from(["--smtp-host", host, *login]) is not None
    assert smtp_from(["--smtp-host", "mail.example.com", "--smtp-starttls", *login]) is not None

    with pytest.raises(UsageError, match=(
            "the SMTP password in --smtp-password-file has characters other than ASCII")):
        smtp_from(["--smtp-host", "127.0.0.1", "--smtp-user", "flow",
                   "--smtp-password-file", str(tmp_path / "accents")])
    with pytest.raises(UsageError, match="FLOWPLAN_SMTP_USER 'flöw' has characters other"):
        smtp_from(["--smtp-host", "127.0.0.1", "--smtp-password-file",
                   str(tmp_path / "ascii")], {"FLOWPLAN_SMTP_USER": "flöw"})

    with pytest.raises(UsageError) as refused:
        smtp_from(["--smtp-host", "h"], {"FLOWPLAN_SMTP_FROM": "fp@example.com, b@example.com"})
    assert str(refused.value) == (
        "FLOWPLAN_SMTP_FROM 'fp@example.com, b@example.com' is 2 addresses: give one, such as"
        " flowplan@example.com or 'Flowplan <flowplan@example.com>'")
    file = tmp_path / "flowplan.toml"
    file.write_text('[smtp]\nhost = "h"\nfrom = "fp@example.com\\r\\nBcc: spy@example.com"\n')
    with pytest.raises(UsageError) as refused:
        smtp_from(["--settings", str(file)])
    assert str(refused.value).startswith(
        f"[smtp] from of {file} 'fp@example.com\\r\\nBcc: spy@example.com' has a line break:")
    # a display name with a comma is still one address
    assert smtp_from(["--smtp-host", "h", "--smtp-from", '"Ops, Data" <fp@example.com>'])
    with pytest.raises(UsageError) as refused:  # SMTPS: no greeting before a TLS handshake
        smtp_from(["--smtp-host", "h", "--smtp-port", "465"])
    assert str(refused.value) == ("--smtp-port 465 is SMTPS (implicit TLS), which flowplan does"
                                  " not speak: give port 587 with --smtp-starttls (or 25)")


# ---- what the messages say -----------------------------------------------------------------

def failed_run(failures: int, params: dict[str, Any] | None = None) -> Run:
    """A run whose `failures` nodes failed, each with a log path."""
    def node(i: int) -> NodeRun:
        attempt = Attempt(run_id="wr_1", node=f"part{i}", number=1, plan_version=1,
                          status=AttemptStatus.FAILED, started_at=LOGICAL, finished_at=LOGICAL,
                          exit_code=1, error="exited with code 1",
                          log_path=f"/state/runs/wr_1/part{i}/1/log")
        return NodeRun(run_id="wr_1", name=f"part{i}", status=NodeStatus.FAILED,
                       queue="default", plan_version=1, attempts=(attempt,))
    return Run(run_id="wr_1", workflow="fanout", plan_version=1, plan_digest="d",
               trigger=RunTrigger.SCHEDULE, logical_time=LOGICAL, status=RunStatus.FAILED,
               created_at=LOGICAL, params=params or {},
               nodes=tuple(node(i) for i in range(failures)))


def on_failure_plan(make_repo: Any) -> WorkflowPlan:
    result = compile_repo(read_repo(make_repo({"workflows/fanout.yaml": (
        "name: fanout\non_failure: {email: [ops@example.com]}\n"
        "nodes:\n  - {name: part0, command: 'exit 1'}\n")})))
    assert result.ok, [str(d) for d in result.diagnostics]
    [plan] = [p.content for p in result.plans if p.content.name == "fanout"]
    return plan


def test_an_on_failure_message_details_at_most_50_failed_nodes(make_repo: Any) -> None:
    run = failed_run(2500)  # a fan-out whose partitions all failed (the database was down)
    tail = "\n".join(f"ERROR connection to the database failed ({'x' * 60})"
                     for _ in range(50))
    assert [n.name for n in listed_failures(run)] == [f"part{i}" for i in range(50)]
    message = on_failure_message(run, on_failure_plan(make_repo),
                                 {n.name: tail for n in listed_failures(run)}, [])
    assert message is not None
    assert len(message.body.encode()) < 300_000  # 10.9 MB before: refused by servers (552)
    assert message.body.count("\n--- part") == 50
    assert message.body.count("Last lines of the log") == 50
    assert "Failed nodes (2500):" in message.body
    names = ", ".join(f"part{i}" for i in range(50, 550))
    assert (f"\n... and 2450 more failed nodes (flowplan status wr_1): {names} and 1950"
            " others.\n") in message.body

    few = on_failure_message(failed_run(51), on_failure_plan(make_repo), {}, [])
    assert few is not None and "... and 1 more failed nodes (flowplan status wr_1): part50." \
        in few.body


def test_an_on_failure_message_names_at_most_500_other_nodes(make_repo: Any) -> None:
    run = failed_run(2500)  # one partition failed, the 2,499 others succeeded or were skipped
    statuses = [NodeStatus.FAILED] + [NodeStatus.SUCCEEDED] * 2000 + [NodeStatus.SKIPPED] * 499
    run = replace(run, nodes=tuple(replace(node, status=status)
                                   for node, status in zip(run.nodes, statuses, strict=True)))
    message = on_failure_message(run, on_failure_plan(make_repo), {}, [])
    assert message is not None
    named = ", ".join(f"part{i} SUCCEEDED" for i in range(1, 501))
    assert f"\nOther nodes: {named} and 1999 others.\n" in message.body
    assert len(message.body.encode()) < 30_000  # 2,499 statuses listed before: 46 KB


def test_params_with_secret_names_are_masked_however_short(make_repo: Any) -> None:
    run = failed_run(1, {"region": "eu", "DB_PASSWORD": "7q", "PIN_KEY": 42,
                         "API_TOKEN": "abcdef", "EMPTY_SECRET": ""})
    message = on_failure_message(run, on_failure_plan(make_repo), {},
                                 secret_values([], run, "UTC"))
    assert message is not None
    assert ("Params:        API_TOKEN=********, DB_PASSWORD=********, EMPTY_SECRET=,"
            " PIN_KEY=********, region=eu") in message.body.splitlines()


def test_the_values_masked_are_the_scalars_under_secret_names_and_never_a_null() -> None:
    run = failed_run(1, {"API_TOKEN": None, "region": "eu", "PIN_KEY": 42,
                         "db": {"host": "db.example", "password": "n3sted", "port": 5432},
                         "keys": {"api_key": ["first", "second"]}})
    assert sorted(secret_values([], run, "UTC")) == ["first", "n3sted", "second"]


def test_a_utf_8_body_is_sent_7_bit_as_quoted_printable(tmp_path: Path, server: Server) -> None:
    outbox = Outbox(StateStore(tmp_path / "state"))
    sender = OutboxSender(outbox, settings_for(server.port), clock=SystemClock())
    text = "Grüße: the load of Zürich failed ✗\nDétails below.\n"

    async def main() -> None:
        await sender.start()
        sender.record(Draft(key="on_failure/wr_1", kind=Kind.ON_FAILURE,
                            recipients=("ops@example.com",), subject="[flowplan] Zürich",
                            body=text, run_id="wr_1"))
        await until(lambda: len(server.inbox.messages) == 1)
        await sender.stop()

    asyncio.run(asyncio.wait_for(main(), 10))
    raw = server.inbox.raw[0]
    assert raw.isascii()  # no 8BITMIME asked for, none needed
    assert b"Content-Transfer-Encoding: quoted-printable" in raw
    _, message = server.inbox.messages[0]
    assert body(message).replace("\r\n", "\n") == text  # CRLF: as on the wire
    assert message["Subject"] == "[flowplan] Zürich"
