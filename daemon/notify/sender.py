"""Delivery of the outbox: one background asyncio task sends pending rows, oldest due first,
with smtplib in a worker thread so the event loop never waits on a mail server.

- Recording a row wakes the task at once; otherwise it sleeps (on the injected `Clock`)
  until the next row is due. There is no polling interval.
- A failed attempt (anything that goes wrong building or sending the message) is retried
  after `RetryPolicy.delay(n)`: 30 s, 1 min, 2 min, ... capped at 1 h; after `max_attempts`
  (10, about 3 h of trying) the row is FAILED and logged. A permanent refusal (an SMTP 5xx
  for the sender, every recipient or the content) fails it at once: sending it again cannot
  succeed.
- Recipients the server refuses for now (4xx) while it accepts others get the message again
  from a follow-up row of their own (`retry_key`); those refused with a 5xx do not.
- At least once: the attempt is counted before sending and the result recorded after; a
  crash in between sends the message again on restart, with the same Message-ID. A clean
  `stop()` waits for the message being sent and records its outcome.
- Each attempt's outcome (`AttemptOutcome`) goes to the `on_attempt` listener once
  recorded: the daemon's metrics count them (`flowplan_outbox_send_attempts_total`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from enum import StrEnum
from typing import Final

from flowplan.daemon.engine.clock import Clock, sleep_unless
from flowplan.daemon.notify.messages import Draft, email_message, message_id
from flowplan.daemon.notify.outbox import Outbox, OutboxRow, OutboxStatus
from flowplan.daemon.notify.settings import SmtpSettings

log = logging.getLogger("flowplan.notify")

NO_SMTP: Final = "no SMTP server configured"
NO_SMTP_DOMAIN: Final = "flowplan.localhost"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 10
    first_delay_seconds: float = 30.0
    max_delay_seconds: float = 3600.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt."""
        return min(self.first_delay_seconds * 2.0 ** (attempts - 1), self.max_delay_seconds)


class AttemptOutcome(StrEnum):
    """How one attempt to send a message ended."""

    SENT = "sent"  # the SMTP server accepted it
    RETRIED = "retried"  # it failed; another attempt is due later
    FAILED = "failed"  # it failed and the message is given up (permanent, or the last)


class DeliveryError(Exception):
    """One attempt failed; `permanent` when trying again cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class OutboxSender:
    """Records drafts in the outbox and delivers them. `start()` / `stop()` bracket the
    delivery task; `record()` works before `start()` too (the row waits)."""

    def __init__(self, outbox: Outbox, settings: SmtpSettings | None, *, clock: Clock,
                 policy: RetryPolicy | None = None,
                 on_attempt: Callable[[AttemptOutcome], None] | None = None) -> None:
        """`on_attempt` hears each attempt's outcome once recorded (no I/O: it runs on the
        event loop)."""
        self._outbox = outbox
        self._on_attempt = on_attempt
        self._settings = settings
        self._clock = clock
        self._policy = policy or RetryPolicy()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._sending: OutboxRow | None = None  # the row whose message smtplib is sending

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    @property
    def configured(self) -> bool:
        return self._settings is not None

    # ---- recording ----------------------------------------------------------------------

    def record(self, draft: Draft) -> int | None:
        """Record a message; its row id, or None when its key was recorded before."""
        now = self._clock.now()
        if self._settings is None:
            row_id = self._outbox.add(draft, message_id=message_id(draft.key, NO_SMTP_DOMAIN),
                                      at=now, status=OutboxStatus.NOT_SENT, last_error=NO_SMTP)
            if row_id is not None:
                log.info("notification %s recorded as outbox row %d, not sent: %s",
                         draft.key, row_id, NO_SMTP)
            return row_id
        row_id = self._outbox.add(draft, message_id=message_id(draft.key, self._settings.domain),
                                  at=now)
        if row_id is None:
            log.debug("notification %s was recorded before", draft.key)
        else:
            log.info("notification %s recorded as outbox row %d for %s", draft.key, row_id,
                     ", ".join(draft.recipients))
            self._wake.set()
        return row_id

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start delivering, beginning with the rows a previous process left unsent."""
        if self._task is not None:
            return
        if self._settings is None:
            waiting = self._outbox.count(OutboxStatus.PENDING)
            log.warning("%s: notifications are recorded in the outbox and not sent%s",
                        NO_SMTP, f" ({waiting} earlier messages wait for one)" if waiting
                        else "")
            return
        log.info("notifications go to %s", self._settings.describe())
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-sender")

    async def stop(self, *, grace_seconds: float | None = None) -> None:
        """Stop after the message being sent, if any; what is left is sent by the next start.
        Idempotent.

        smtplib's worker thread cannot be interrupted (the process waits for it anyway), so
        stop() waits for the server's answer, each SMTP command at most the SMTP timeout, and
        records it: else the next start would send the message again. After `grace_seconds`
        (by default the SMTP timeout) a warning says what it waits for.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        if grace_seconds is None:
            grace_seconds = self._settings.timeout if self._settings else 0.0
        done, _ = await asyncio.wait({task}, timeout=grace_seconds)
        if not done and (row := self._sending) is not None:
            log.warning("stopping: waiting for the SMTP server's answer to notification %s"
                        " (outbox row %d)", row.key, row.id)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # ---- delivery -----------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before the read: a row recorded after it wakes us again
            try:
                row = self._outbox.next_due()
                if row is None:
                    await self._wake.wait()
                    continue
                assert row.next_attempt_at is not None
                wait = (row.next_attempt_at - self._clock.now()).total_seconds()
                if wait > 0:
                    await self._sleep_or_wake(wait)
                    continue
                await self._deliver(row)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or a locked database: log, back off, carry on
                log.exception("outbox delivery failed; trying again in %gs",
                              self._policy.first_delay_seconds)
                await self._sleep_or_wake(self._policy.first_delay_seconds)

    async def _sleep_or_wake(self, seconds: float) -> None:
        await sleep_unless(self._clock, seconds, self._wake)

    async def _deliver(self, row: OutboxRow) -> None:
        settings = self._settings
        assert settings is not None
        limit = self._policy.max_attempts
        if row.attempts >= limit:  # its last attempt was cut short by a crash
            self._give_up(row, row.attempts, row.last_error or "interrupted")
            return
        number = row.attempts + 1
        self._outbox.begin_attempt(row.id)
        self._sending = row
        try:
            message = email_message(
                from_address=settings.from_address, recipients=row.recipients,
                subject=row.subject, body=row.body, message_id=row.message_id,
                date=row.created_at, kind=row.kind, run_id=row.run_id,
                backfill_id=row.backfill_id)
            refused = await asyncio.to_thread(send_message, settings, message)
        except DeliveryError as exc:
            self._failed(row, number, str(exc), permanent=exc.permanent)
            return
        except Exception as exc:  # bad data in the row, a bug: still a failed attempt
            self._failed(row, number, f"the message could not be built or sent:"
                         f" {type(exc).__name__}: {exc}", unexpected=True)
            return
        finally:
            self._sending = None
        self._sent(row, number, refused)

    def _sent(self, row: OutboxRow, number: int, refused: dict[str, tuple[int, bytes]]
              ) -> None:
        """Record a message the server accepted for some recipients at least; those it
        refused for now (4xx) get it from a follow-up row."""
        now = self._clock.now()
        later = tuple(sorted(a for a, (code, _) in refused.items() if code < 500))
        listed = "; ".join(f"{address} ({code} {text.decode('utf-8', 'replace')})"
                           for address, (code, text) in sorted(refused.items()))
        if later:
            retry_at = now + timedelta(seconds=self._policy.delay(number))
            retry_id = self._outbox.mark_sent_and_retry(
                row.id, at=now, key=retry_key(row.key, number), recipients=later,
                next_attempt_at=retry_at,
                note=lambda retry_id: (
                    f"refused by the server: {listed}; retried for {', '.join(later)} as"
                    f" outbox row {retry_id}"))
            log.warning("notification %s (outbox row %d): refused by the server: %s; retried"
                        " for %s as outbox row %d at %s", row.key, row.id, listed,
                        ", ".join(later), retry_id, retry_at.isoformat(timespec="seconds"))
        else:
            note = f"refused by the server: {listed}" if refused else None
            if note:
                log.warning("notification %s (outbox row %d): %s", row.key, row.id, note)
            self._outbox.mark_sent(row.id, at=now, note=note)
        log.info("notification %s (outbox row %d) sent to %s", row.key, row.id,
                 ", ".join(a for a in row.recipients if a not in refused))
        self._attempted(AttemptOutcome.SENT)

    def _failed(self, row: OutboxRow, number: int, error: str, *, permanent: bool = False,
                unexpected: bool = False) -> None:
        """Record a failed attempt: retried with backoff, or given up when permanent or the
        last. `unexpected` logs the traceback too."""
        limit = self._policy.max_attempts
        if permanent or number >= limit:
            self._give_up(row, number, error)
            self._attempted(AttemptOutcome.FAILED)
            return
        next_at = self._clock.now() + timedelta(seconds=self._policy.delay(number))
        self._outbox.mark_retry(row.id, error=error, next_attempt_at=next_at)
        log.warning("notification %s (outbox row %d): attempt %d of %d failed: %s;"
                    " next attempt at %s", row.key, row.id, number, limit, error,
                    next_at.isoformat(timespec="seconds"), exc_info=unexpected)
        self._attempted(AttemptOutcome.RETRIED)

    def _attempted(self, outcome: AttemptOutcome) -> None:
        if self._on_attempt is not None:
            try:
                self._on_attempt(outcome)
            except Exception:  # a listener's bug must not stop delivery
                log.exception("the outbox's attempt listener failed")

    def _give_up(self, row: OutboxRow, attempts: int, error: str) -> None:
        self._outbox.mark_failed(row.id, error=error)
        log.error("notification %s (outbox row %d, to %s) given up after %d attempt%s: %s",
                  row.key, row.id, ", ".join(row.recipients), attempts,
                  "" if attempts == 1 else "s", error)


def retry_key(key: str, attempt: int) -> str:
    """The key of the follow-up row for the recipients refused for now in `attempt` of the
    row `key`: unique, since no message's own key has that shape."""
    return f"{key}/retry/{attempt}"


def send_message(settings: SmtpSettings, message: EmailMessage
                 ) -> dict[str, tuple[int, bytes]]:
    """Send one message (blocking: call it in a worker thread). Returns the recipients the
    server refused when it accepted others; raises `DeliveryError` with a reason for people."""
    where = f"{settings.host}:{settings.port}"
    try:
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"cannot connect to the SMTP server {where}: {_reason(exc)}"
                            ) from exc
    refusals: dict[str, tuple[int, bytes]] | None = None  # set once the server accepted it
    try:
        smtp.ehlo()
        if settings.starttls:
            if not smtp.has_extn("starttls"):
                raise DeliveryError(f"the SMTP server {where} does not offer STARTTLS,"
                                    " which the settings require (--smtp-starttls): turn"
                                    " it off or use a server that has it")
            try:
                smtp.starttls(context=ssl.create_default_context())
            except ssl.SSLError as exc:
                raise DeliveryError(f"STARTTLS with the SMTP server {where} failed:"
                                    f" {exc}") from exc
            smtp.ehlo()
        if settings.username is not None and settings.password is not None:
            try:
                smtp.login(settings.username, settings.password)
            except smtplib.SMTPAuthenticationError as exc:
                raise DeliveryError(f"the SMTP server {where} refused the login of"
                                    f" {settings.username}: {_reason(exc)}") from exc
            except smtplib.SMTPNotSupportedError as exc:
                raise DeliveryError(f"the SMTP server {where} does not offer AUTH"
                                    " (it may need --smtp-starttls)") from exc
        refusals = smtp.send_message(message)
    except DeliveryError:
        raise
    except smtplib.SMTPRecipientsRefused as exc:
        permanent = all(code >= 500 for code, _ in exc.recipients.values())
        named = "; ".join(f"{a} ({c} {t.decode('utf-8', 'replace')})"
                          for a, (c, t) in sorted(exc.recipients.items()))
        raise DeliveryError(f"the SMTP server {where} refused every recipient: {named}",
                            permanent=permanent) from exc
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        raise DeliveryError(f"the SMTP server {where} refused the message: {_reason(exc)}",
                            permanent=exc.smtp_code >= 500) from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"sending through the SMTP server {where} failed:"
                            f" {_reason(exc)}") from exc
    finally:
        if refusals is None:
            smtp.close()
    # accepted: a QUIT answered badly, or not at all, must not send the message again
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()
    return refusals


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(
            exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {text}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
