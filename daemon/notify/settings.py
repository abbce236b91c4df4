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

import ipaddress
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any, Final

from flowplan.compiler.grammars import is_email_address

DEFAULT_TIMEOUT: Final = 30.0
SMTPS_PORT: Final = 465

Name = Callable[[str], str]
"""How a message calls an `[smtp]` key: `flag_name`, or as the daemon's settings gave it."""


def flag_name(key: str) -> str:
    """The `flowplan serve` flag of an `[smtp]` key: `password_file` -> `--smtp-password-file`."""
    return "--smtp-" + key.replace("_", "-")


class SettingsError(ValueError):
    """Settings that cannot be used; the message names the flag or file key at fault.

    Given a function of a `Name`, `str()` names flags and `named()` names each key as the
    daemon's settings gave it (a flag, a FLOWPLAN_SMTP_* variable or a file key).
    """

    def __init__(self, message: str | Callable[[Name], str]) -> None:
        self._message = message
        super().__init__(self.named(flag_name))

    def named(self, name: Name) -> str:
        return self._message if isinstance(self._message, str) else self._message(name)


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
        if self.port == SMTPS_PORT:  # every attempt would wait for a greeting that never comes
            raise SettingsError(lambda n: f"{n('port')} {SMTPS_PORT} is SMTPS (implicit TLS),"
                                " which flowplan does not speak: give port 587 with"
                                f" {n('starttls')} (or 25)")
        if self.timeout <= 0:
            raise SettingsError(f"SMTP timeout {self.timeout:g} must be positive")
        if (self.username is None) != (self.password is None):
            raise SettingsError(lambda n: "an SMTP user needs a password file, and a password"
                                f" file a user ({n('user')}, {n('password_file')})")
        # smtplib encodes AUTH as ASCII: anything else fails every attempt (UnicodeEncodeError)
        if self.username is not None and not self.username.isascii():
            raise SettingsError(lambda n: f"{n('user')} {self.username!r} has characters"
                                " other than ASCII, which smtplib cannot log in with: give"
                                " the ASCII user name of the mail account")
        if self.password is not None and not self.password.isascii():
            raise SettingsError(lambda n: f"the SMTP password in {n('password_file')} has"
                                " characters other than ASCII, which smtplib cannot log in"
                                " with: give the mail account an ASCII password")
        if self.username is not None and not self.starttls and not is_loopback(self.host):
            raise SettingsError(lambda n: (
                f"{n('user')} and {n('password_file')} without {n('starttls')} would send the"
                f" SMTP password to {self.host} in clear: turn on {n('starttls')}, or send"
                " through a mail relay on this machine (host localhost, 127.0.0.1 or ::1)"))
        check_address(self.from_address, key="from")

    @property
    def domain(self) -> str:
        """The domain of the from address (for Message-IDs)."""
        return parseaddr(self.from_address)[1].rpartition("@")[2]

    def describe(self) -> str:
        """For logs: where mail goes, without the password."""
        user = f"{self.username}@" if self.username else ""
        tls = " with STARTTLS" if self.starttls else ""
        return f"smtp://{user}{self.host}:{self.port}{tls}, from {self.from_address}"


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address: a relay on this machine, reached without a network."""
    name = host.lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_address(text: str, *, key: str) -> str:
    """`text` is one address (`a@b.c` or `Name <a@b.c>`) on one line; returns it, else
    SettingsError naming the `[smtp]` key it came from."""
    example = "flowplan@example.com or 'Flowplan <flowplan@example.com>'"
    if "\r" in text or "\n" in text:
        raise SettingsError(lambda n: f"{n(key)} {text!r} has a line break: give one address"
                            f" on one line, such as {example}")
    addresses = getaddresses([text])
    if len(addresses) > 1:
        raise SettingsError(lambda n: f"{n(key)} {text!r} is {len(addresses)} addresses:"
                            f" give one, such as {example}")
    if not is_email_address(parseaddr(text)[1], host_alone=True):
        raise SettingsError(lambda n: f"{n(key)} {text!r} is not an e-mail address such as"
                            f" {example}")
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
