"""What a daemon runs with: `ServeConfig`, resolved and checked (paths absolute, the token
and TLS files read). `daemon/server/settings.py` builds it from the settings file, the
environment and the flags; `flowplan up` builds one directly."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flowplan.compiler.grammars import parse_duration
from flowplan.daemon.server.roles import Grant, RolesFileError, merge_token

if TYPE_CHECKING:  # the notify package is the daemon's: not for `flowplan --help`
    from flowplan.daemon.notify.settings import SmtpSettings

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_KILL_GRACE = 10.0  # seconds between SIGTERM and SIGKILL of a node's process group
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_HTTP_MAX_CONNECTIONS = 100  # of the HTTP listener (--http), beside the gRPC ones
DEFAULT_HANDSHAKE_TIMEOUT = 10.0  # seconds for a new connection to send its HTTP/2 preface
DEFAULT_IDLE_TIMEOUT = 300.0  # seconds a connection may stay open without a call
DEFAULT_SYNC_INTERVAL = 60.0  # seconds between two `--git` fetches
DEFAULT_BRANCH = "main"
SMTP_TIMEOUT = 30.0  # seconds per SMTP connection and command (SmtpSettings.timeout)


class UsageError(ValueError):
    """A setting the daemon refuses to start with."""


@dataclass(frozen=True, slots=True)
class ServeConfig:
    store: Path
    state: Path
    listen: str = DEFAULT_LISTEN
    token: str | None = None  # --token-file's: an admin's
    grants: tuple[Grant, ...] = ()  # --roles-file's tokens and their roles
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    tls_client_ca: bytes | None = None
    insecure: bool = False
    synchronous: str = "NORMAL"
    kill_grace_seconds: float = DEFAULT_KILL_GRACE
    smtp: SmtpSettings | None = None
    git_url: str | None = None
    git_branch: str = DEFAULT_BRANCH
    sync_interval_seconds: float = DEFAULT_SYNC_INTERVAL
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    handshake_timeout_seconds: float = DEFAULT_HANDSHAKE_TIMEOUT
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT
    http: str | None = None  # host:port of the HTTP listener (/metrics); None: none
    http_max_connections: int = DEFAULT_HTTP_MAX_CONNECTIONS
    # who lays out the console's large graphs first: the daemon (embedded V8) or a browser
    console_layouts: str = "daemon"
    http_required: bool = True  # False (`flowplan up`): a busy address is logged, not fatal

    def access(self) -> tuple[Grant, ...]:
        """Every token the daemon accepts with its role (none: no authentication)."""
        return merge_token(self.grants, self.token, "--token-file")

    def check(self) -> None:
        """UsageError, naming the flag, for a value the daemon cannot serve with. (Settings
        from a file or the environment are checked, by their names, before this.)"""
        if listen_problem(self.listen):
            raise UsageError(f"--listen {self.listen}: give {LISTEN_WANTED}")
        if self.http is not None and listen_problem(self.http):
            raise UsageError(f"--http {self.http}: give {HTTP_WANTED}")
        if not math.isfinite(self.kill_grace_seconds) or self.kill_grace_seconds < 0:
            raise UsageError(f"--kill-grace {self.kill_grace_seconds}: give the seconds between"
                             " SIGTERM and SIGKILL as a number >= 0")
        for flag, count in (("--max-connections", self.max_connections),
                            ("--http-max-connections", self.http_max_connections)):
            if count < 1:
                raise UsageError(f"{flag} {count}: give a whole number >= 1")
        for flag, seconds in (("--handshake-timeout", self.handshake_timeout_seconds),
                              ("--idle-timeout", self.idle_timeout_seconds)):
            if not math.isfinite(seconds) or seconds <= 0:
                raise UsageError(f"{flag} {seconds}: give the seconds as a number > 0")
        for flag, path in (("--store", self.store), ("--state", self.state)):
            if path.exists() and not path.is_dir():
                raise UsageError(f"{flag} {path} is a file: give a folder (created if missing)")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise UsageError("--tls-cert and --tls-key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise UsageError("--tls-client-ca needs --tls-cert and --tls-key")
        try:
            self.access()
        except RolesFileError as exc:
            raise UsageError(str(exc)) from None
        for flag, address in (("--listen", self.listen), ("--http", self.http)):
            if address is not None and not is_loopback(address) and not (
                    self.token or self.grants or self.tls_cert or self.insecure):
                raise UsageError(
                    f"refusing to listen on {address} ({flag}) without authentication: give"
                    " --token-file, --roles-file or --tls-cert/--tls-key, or --insecure to"
                    " accept the risk")


def open_to_all(config: ServeConfig) -> list[str]:
    """The flags of the addresses off loopback where any client acts as an admin: no token,
    and no client certificate asked for (`--tls-cert` alone, or `--insecure`)."""
    if config.token or config.grants or config.tls_client_ca:
        return []
    return [f"{flag} {address}" for flag, address in (("--listen", config.listen),
                                                      ("--http", config.http))
            if address is not None and not is_loopback(address)]


LISTEN_WANTED = ("host:port with a port from 0 to 65535 (e.g. 127.0.0.1:50051; 0 takes a free"
                 " port)")


HTTP_WANTED = "host:port with a port from 0 to 65535 (e.g. 127.0.0.1:8080; 0 takes a free port)"


def parse_seconds(text: str) -> float:
    """A duration in flowplan's one grammar (`flowplan.compiler.grammars`, as in workflow
    files): seconds ("90", "1.5") or "30s", "5m", "1h30m", "500ms". ValueError if it is
    neither (the sign and size are for the caller to check)."""
    return parse_duration(text)


def listen_problem(listen: str) -> bool:
    """True when `listen` is not host:port with a port from 0 to 65535."""
    host, sep, port = listen.rpartition(":")
    return not sep or not host or not port.isdigit() or int(port) > 65535


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
