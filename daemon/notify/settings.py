"""SMTP settings of the daemon: from command-line flags, a TOML settings file, or both (a
flag wins over the file). No SMTP host at all means notifications are recorded in the
outbox and not sent.

The settings file is TOML (read with the standard library's `tomllib`); its `[smtp]` table:

    [smtp]
    host = "smtp.example.com"
    port = 587
    from = "flowplan <flowplan@example.com>"
    starttls = true
    user = "flowplan"
    password_file = "/etc/flowplan/smtp-password"   # relative: to the settings file

Other tables of the file belong to other parts of the daemon and are not read here.
"""

from __future__ import annotations

import argparse
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Final

from compiler.values import is_email_address

SMTP_TABLE: Final = "smtp"
FILE_KEYS: Final = frozenset({"host", "port", "from", "starttls", "user", "password_file",
                              "timeout"})
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
    if not is_email_address(address):
        raise SettingsError(f"{what} {text!r} is not an e-mail address such as"
                            " flowplan@example.com or 'Flowplan <flowplan@example.com>'")
    return text


def add_smtp_arguments(parser: argparse.ArgumentParser, *, settings_flag: bool = True) -> None:
    """The SMTP flags of `flowplan serve` (and `--settings FILE` unless the caller adds it)."""
    group = parser.add_argument_group(
        "notifications (SMTP)", "e-mail for on_failure, backfill failures and node notify;"
        " without a host, messages are recorded in the outbox and not sent")
    if settings_flag:
        parser.add_argument("--settings", type=Path, default=None, metavar="FILE",
                            help="daemon settings file (TOML); flags override its values")
    group.add_argument("--smtp-host", default=None, metavar="HOST", help="SMTP server")
    group.add_argument("--smtp-port", type=int, default=None, metavar="PORT",
                       help="default 587 with --smtp-starttls, else 25")
    group.add_argument("--smtp-from", default=None, metavar="ADDRESS",
                       help="sender address; default flowplan@<this host's name>")
    group.add_argument("--smtp-starttls", action=argparse.BooleanOptionalAction, default=None,
                       help="upgrade the connection with STARTTLS (required when on)")
    group.add_argument("--smtp-user", default=None, metavar="USER",
                       help="log in as USER (needs --smtp-password-file)")
    group.add_argument("--smtp-password-file", type=Path, default=None, metavar="FILE",
                       help="file holding the SMTP password (one line)")


def smtp_settings_from_args(args: argparse.Namespace) -> SmtpSettings | None:
    """The settings named by `add_smtp_arguments` flags over the `--settings` file, or None
    when no SMTP host is configured."""
    path: Path | None = getattr(args, "settings", None)
    values: dict[str, Any] = dict(load_settings_file(path)) if path is not None else {}
    base = path.parent if path is not None else Path.cwd()
    for key, flag in (("host", "smtp_host"), ("port", "smtp_port"), ("from", "smtp_from"),
                      ("starttls", "smtp_starttls"), ("user", "smtp_user")):
        value = getattr(args, flag, None)
        if value is not None:
            values[key] = value
    password_file = getattr(args, "smtp_password_file", None)
    if password_file is not None:
        values["password_file"] = password_file
        base = Path.cwd()
    return smtp_settings(values, base=base)


def load_settings_file(path: Path) -> Mapping[str, Any]:
    """The `[smtp]` table of a TOML settings file (empty when the file has none)."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the settings file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not a TOML file: {exc}") from exc
    table = data.get(SMTP_TABLE, {})
    if not isinstance(table, dict):
        raise SettingsError(f"{path}: `{SMTP_TABLE}` must be a table ([{SMTP_TABLE}])")
    unknown = sorted(set(table) - FILE_KEYS)
    if unknown:
        raise SettingsError(f"{path}: unknown key(s) in [{SMTP_TABLE}]: {', '.join(unknown)};"
                            f" known: {', '.join(sorted(FILE_KEYS))}")
    return table


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
