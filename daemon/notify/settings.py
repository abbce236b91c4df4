"""SMTP settings of the daemon. No SMTP host at all means notifications are recorded in the
outbox and not sent.

Where they come from (the `--smtp-*` flags, FLOWPLAN_SMTP_* variables, the `[smtp]` table
of the `--settings` file) is daemon/server/settings.py; `smtp_settings` turns the values of
that table into `SmtpSettings`:

    [smtp]
    host = "smtp.example.com"
    port = 587
    from = "flowplan <flowplan@example.com>"
    starttls = true
    user = "flowplan"
    password_file = "/etc/flowplan/smtp-password"   # relative: to the settings file
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Final

from flowplan.compiler.grammars import is_email_address

DEFAULT_TIMEOUT: Final = 30.0


class SettingsError(ValueError):
    """Settings that cannot be used; the message names the flag or file key at fault."""


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where and how to send mail. The password never appears in `repr`."""

    host: str
    port: int
    from_address: str
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT  # seconds, per SMTP connection and command

    def __post_init__(self) -> None:
        if not self.host:
            raise SettingsError("SMTP host must not be empty")
        if not 0 < self.port < 65536:
            raise SettingsError(f"SMTP port {self.port} is not between 1 and 65535")
        if self.timeout <= 0:
            raise SettingsError(f"SMTP timeout {self.timeout:g} must be positive")
        if (self.username is None) != (self.password is None):
            raise SettingsError("an SMTP user needs a password file, and a password file a"
                                " user (--smtp-user, --smtp-password-file)")
        check_address(self.from_address, what="SMTP from address")

    @property
    def domain(self) -> str:
        """The domain of the from address (for Message-IDs)."""
        return parseaddr(self.from_address)[1].rpartition("@")[2]

    def describe(self) -> str:
        """For logs: where mail goes, without the password."""
        user = f"{self.username}@" if self.username else ""
        tls = " with STARTTLS" if self.starttls else ""
        return f"smtp://{user}{self.host}:{self.port}{tls}, from {self.from_address}"


def check_address(text: str, *, what: str) -> str:
    """`text` is one address (`a@b.c` or `Name <a@b.c>`); returns it, else SettingsError."""
    _, address = parseaddr(text)
    if not is_email_address(address, host_alone=True):
        raise SettingsError(f"{what} {text!r} is not an e-mail address such as"
                            " flowplan@example.com or 'Flowplan <flowplan@example.com>'")
    return text


def smtp_settings(values: Mapping[str, Any], *, base: Path) -> SmtpSettings | None:
    """Settings from `[smtp]`-style values; a relative `password_file` is taken from `base`."""
    host = values.get("host")
    if host is None or host == "":
        return None
    starttls = values.get("starttls", False)
    if not isinstance(starttls, bool):
        raise SettingsError(f"smtp starttls must be true or false, not {starttls!r}")
    port = values.get("port", 587 if starttls else 25)
    if not isinstance(port, int) or isinstance(port, bool):
        raise SettingsError(f"smtp port must be a number, not {port!r}")
    timeout = values.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool):
        raise SettingsError(f"smtp timeout must be a number of seconds, not {timeout!r}")
    from_address = values.get("from") or f"flowplan@{socket.getfqdn() or 'localhost'}"
    user = values.get("user")
    if user is not None and not isinstance(user, str):
        raise SettingsError(f"smtp user must be a string, not {user!r}")
    password_file = values.get("password_file")
    password = None
    if password_file is not None:
        password = read_password(base / Path(password_file))
    return SmtpSettings(host=str(host), port=port, from_address=str(from_address),
                        starttls=starttls, username=user, password=password,
                        timeout=float(timeout))


def read_password(path: Path) -> str:
    """The first line of `path`, without its line end."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the SMTP password file:"
                            f" {exc.strerror}") from exc
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise SettingsError(f"{path}: the SMTP password file is empty")
    return lines[0]
