"""E-mail notifications through a durable outbox (docs/notifications.md).

Wiring, in the daemon:

    settings = config.smtp     # daemon/server/settings.py; None: record, do not send
    sender = OutboxSender(Outbox(store), settings, clock=clock)
    notifier = Notifier(store=store, plans=plans, sender=sender)
    engine.subscribe(notifier.on_event, durable=True)  # before engine.start()
    await sender.start()
    ...                                                 # backfill runner, when a backfill ends:
    notifier.backfill_finished(backfill_id)
    ...
    await sender.stop()
"""

from flowplan.daemon.notify.notifier import Notifier
from flowplan.daemon.notify.outbox import Outbox, OutboxRow, OutboxStatus
from flowplan.daemon.notify.sender import AttemptOutcome, OutboxSender, RetryPolicy
from flowplan.daemon.notify.settings import SettingsError, SmtpSettings, smtp_settings

__all__ = ["AttemptOutcome", "Notifier", "Outbox", "OutboxRow", "OutboxSender", "OutboxStatus",
           "RetryPolicy", "SettingsError", "SmtpSettings", "smtp_settings"]
