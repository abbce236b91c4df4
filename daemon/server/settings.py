"""The settings of `flowplan serve`: where each comes from, and which wins.

Every setting has a flag (daemon/server/command.py), an environment variable and a key of
the TOML settings file (`--settings FILE`); `SETTINGS` lists them (docs/operations.md has the
table). A flag wins
over the environment, the environment over the file, the file over the default. The values
are validated by one pydantic-settings model, `ServeSettings`; a value it refuses is named
where it was given: the flag, the variable, or the file and its `[table] key`, e.g.

    /etc/flowplan/flowplan.toml: [server] kill_grace: must be the seconds between SIGTERM
    and SIGKILL as a number >= 0, got "x"

A relative path in the file is relative to the file's folder; from a flag or a variable, to
the working directory. `Loaded.config()` then reads the token, roles and TLS files into
the `ServeConfig` the daemon runs with (`Loaded.access()` reads the token and roles files
again, on SIGHUP); `Loaded.to_toml()` is `--print-config`: the effective
settings, each with where it came from. Settings hold file paths, never the secrets in
those files, so nothing secret can be printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator as After
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from flowplan.daemon.notify.settings import SettingsError, SmtpSettings, smtp_settings
from flowplan.daemon.server.config import (
    DEFAULT_BRANCH,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_HTTP_MAX_CONNECTIONS,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_KILL_GRACE,
    DEFAULT_LISTEN,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SYNC_INTERVAL,
    HTTP_WANTED,
    LISTEN_WANTED,
    SMTP_TIMEOUT,
    ServeConfig,
    UsageError,
    listen_problem,
    parse_seconds,
)
from flowplan.daemon.server.roles import Grant, RolesFileError, merge_token, parse_roles
from flowplan.daemon.server.tls import TlsFileError, check_tls_files

ENV_PREFIX: Final = "FLOWPLAN_"
Origin = Literal["default", "file", "env", "flag"]


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: `[table] key` in the file, `flag` (argparse `dest`), FLOWPLAN_TABLE_KEY in
    the environment; `wanted` says what a right value is ("give ..." / "must be ...")."""

    table: str
    key: str
    flag: str
    dest: str
    wanted: str
    path: bool = False  # a file or folder

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.table}_{self.key}".upper()


_SECONDS = "the seconds as a number > 0, or a duration like 30s, 5m, 1h"
SETTINGS: Final = (
    Setting("server", "store", "--store", "store", "the plan store's folder", path=True),
    Setting("server", "state", "--state", "state", "the state directory", path=True),
    Setting("server", "listen", "--listen", "listen", LISTEN_WANTED),
    Setting("server", "http", "--http", "http", HTTP_WANTED),
    Setting("server", "token_file", "--token-file", "token_file", "a file path", path=True),
    Setting("server", "roles_file", "--roles-file", "roles_file", "a file path", path=True),
    Setting("server", "insecure", "--insecure", "insecure", "true or false"),
    Setting("server", "synchronous", "--synchronous", "synchronous", "NORMAL or FULL"),
    Setting("server", "kill_grace", "--kill-grace", "kill_grace",
            "the seconds between SIGTERM and SIGKILL as a number >= 0"),
    Setting("server", "log_format", "--log-format", "log_format", "json or text"),
    Setting("server", "max_connections", "--max-connections", "max_connections",
            "a whole number >= 1"),
    Setting("server", "http_max_connections", "--http-max-connections", "http_max_connections",
            "a whole number >= 1"),
    Setting("server", "handshake_timeout", "--handshake-timeout", "handshake_timeout",
            _SECONDS),
    Setting("server", "idle_timeout", "--idle-timeout", "idle_timeout", _SECONDS),
    Setting("server", "console_layouts", "--console-layouts", "console_layouts",
            "daemon or browser"),
    Setting("tls", "cert", "--tls-cert", "tls_cert", "a file path", path=True),
    Setting("tls", "key", "--tls-key", "tls_key", "a file path", path=True),
    Setting("tls", "client_ca", "--tls-client-ca", "tls_client_ca", "a file path", path=True),
    Setting("git", "url", "--git", "git_url", "a git URL or path"),
    Setting("git", "branch", "--branch", "branch", "a branch name"),
    Setting("git", "sync_interval", "--sync-interval", "sync_interval", _SECONDS),
    Setting("smtp", "host", "--smtp-host", "smtp_host", "a host name"),
    Setting("smtp", "port", "--smtp-port", "smtp_port", "a port from 1 to 65535"),
    Setting("smtp", "from", "--smtp-from", "smtp_from", "an e-mail address"),
    Setting("smtp", "starttls", "--smtp-starttls", "smtp_starttls", "true or false"),
    Setting("smtp", "user", "--smtp-user", "smtp_user", "a user name"),
    Setting("smtp", "password_file", "--smtp-password-file", "smtp_password_file",
            "a file path", path=True),
    Setting("smtp", "timeout", "--smtp-timeout", "smtp_timeout", _SECONDS),
)
TABLES: Final = tuple(dict.fromkeys(s.table for s in SETTINGS))
BY_PLACE: Final = {(s.table, s.key): s for s in SETTINGS}


# ---- the model --------------------------------------------------------------------------

def _duration(value: Any) -> Any:
    """"30s", "5m", "1h" or "30" as seconds; anything else as it is (for the type check)."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return parse_seconds(value)
    return value


def _listen(value: str) -> str:
    if listen_problem(value):
        raise ValueError(LISTEN_WANTED)
    return value


def _http(value: str) -> str:
    if listen_problem(value):
        raise ValueError(HTTP_WANTED)
    return value


Seconds = Annotated[float, BeforeValidator(_duration), Field(gt=0, allow_inf_nan=False)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ServerTable(_Table):
    store: Path | None = None
    state: Path | None = None
    listen: Annotated[str, After(_listen)] = DEFAULT_LISTEN
    http: Annotated[str, After(_http)] | None = None
    token_file: Path | None = None
    roles_file: Path | None = None
    insecure: bool = False
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    kill_grace: Annotated[float, Field(ge=0, allow_inf_nan=False)] = DEFAULT_KILL_GRACE
    log_format: Literal["json", "text"] = "json"
    max_connections: Annotated[int, Field(ge=1)] = DEFAULT_MAX_CONNECTIONS
    http_max_connections: Annotated[int, Field(ge=1)] = DEFAULT_HTTP_MAX_CONNECTIONS
    handshake_timeout: Seconds = DEFAULT_HANDSHAKE_TIMEOUT
    idle_timeout: Seconds = DEFAULT_IDLE_TIMEOUT
    console_layouts: Literal["daemon", "browser"] = "daemon"


class TlsTable(_Table):
    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None


class GitTable(_Table):
    url: Annotated[str, Field(min_length=1)] | None = None
    branch: Annotated[str, Field(min_length=1)] = DEFAULT_BRANCH
    sync_interval: Seconds = DEFAULT_SYNC_INTERVAL


class SmtpTable(_Table):
    host: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None  # None: 587 with STARTTLS, else 25
    from_address: str | None = Field(default=None, alias="from")
    starttls: bool = False
    user: str | None = None
    password_file: Path | None = None
    timeout: Seconds = SMTP_TIMEOUT


class ServeSettings(BaseSettings):
    """All settings of `flowplan serve`, one table each for the server, TLS, git and SMTP."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    server: ServerTable = ServerTable()
    tls: TlsTable = TlsTable()
    git: GitTable = GitTable()
    smtp: SmtpTable = SmtpTable()

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The layers (flags, environment, file) are merged by `load_settings`, which keeps
        # where each value came from for messages and --print-config; they arrive as init
        # values. No other source is read.
        return (init_settings,)

    def value(self, setting: Setting) -> Any:
        table = getattr(self, setting.table)
        return getattr(table, "from_address" if setting.key == "from" else setting.key)


# ---- the sources ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Layer:
    """The settings one source gives, by (table, key); `file` for the file's layer."""

    origin: Origin
    values: Mapping[tuple[str, str], Any]
    file: Path | None = None


def flag_layer(args: argparse.Namespace) -> Layer:
    """The flags given (argparse leaves the others None)."""
    return Layer("flag", {(s.table, s.key): getattr(args, s.dest) for s in SETTINGS
                          if getattr(args, s.dest, None) is not None})


def env_layer(environ: Mapping[str, str]) -> Layer:
    """FLOWPLAN_<TABLE>_<KEY> variables that are set and not empty. An unknown one with the
    prefix of a table (FLOWPLAN_SERVER_..., FLOWPLAN_TLS_, ...) is refused: a misspelt name
    must not be ignored."""
    known = {s.env: s for s in SETTINGS}
    prefixes = tuple(f"{ENV_PREFIX}{table.upper()}_" for table in TABLES)
    for name in sorted(environ):
        if name.startswith(prefixes) and name not in known:
            table = name[len(ENV_PREFIX):].split("_", 1)[0].lower()
            names = ", ".join(s.env for s in SETTINGS if s.table == table)
            raise UsageError(f"{name}: not a setting of flowplan serve; the [{table}] ones:"
                             f" {names}")
    return Layer("env", {(s.table, s.key): environ[s.env] for s in SETTINGS
                         if environ.get(s.env)})


def file_layer(path: Path) -> Layer:
    """The tables of the TOML settings file; relative paths taken from its folder."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the settings file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not a TOML file: {exc}") from exc
    known_tables = ", ".join(f"[{t}]" for t in TABLES)
    values: dict[tuple[str, str], Any] = {}
    for table, content in data.items():
        if table not in TABLES:
            raise UsageError(f"{path}: unknown table [{table}]; known: {known_tables}")
        if not isinstance(content, dict):
            raise UsageError(f"{path}: `{table}` must be a table ([{table}])")
        keys = [s.key for s in SETTINGS if s.table == table]
        unknown = sorted(set(content) - set(keys))
        if unknown:
            raise UsageError(f"{path}: unknown key(s) in [{table}]: {', '.join(unknown)};"
                             f" known: {', '.join(sorted(keys))}")
        for key, given in content.items():
            relative = BY_PLACE[table, key].path and isinstance(given, str) and given
            # from the file's folder; an absolute path stays as it is
            values[table, key] = path.parent / given if relative else given
    return Layer("file", values, file=path)


# ---- merged and checked -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Loaded:
    """The validated settings and the layer each value came from (absent: the default)."""

    settings: ServeSettings
    origins: Mapping[Setting, Layer]
    file: Path | None

    def origin(self, setting: Setting) -> Origin:
        layer = self.origins.get(setting)
        return layer.origin if layer else "default"

    def where(self, setting: Setting) -> str:
        """The setting as given, to begin a message: `--flag`, `FLOWPLAN_...`, `FILE: [t] k`."""
        layer = self.origins.get(setting)
        if layer is None or layer.origin == "flag":
            return setting.flag
        if layer.origin == "env":
            return setting.env
        return f"{layer.file}: [{setting.table}] {setting.key}"

    def name(self, setting: Setting) -> str:
        """The setting as given, inside a sentence."""
        layer = self.origins.get(setting)
        if layer is not None and layer.origin == "file":
            return f"[{setting.table}] {setting.key} of {layer.file}"
        return self.where(setting)

    def config(self) -> ServeConfig:
        """The `ServeConfig` to serve with: paths absolute, the token and TLS files read and
        checked. UsageError naming the setting at fault."""
        server, tls = self.settings.server, self.settings.tls
        folders = {}
        for folder in ("store", "state"):
            setting = BY_PLACE["server", folder]
            path = self.settings.value(setting)
            if path is None:
                raise UsageError(f"give {setting.wanted}: {setting.flag} DIR, {setting.env}"
                                 f" or [server] {folder} in the --settings file")
            if path.exists() and not path.is_dir():
                raise UsageError(f"{self.where(setting)} {path} is a file: give a folder"
                                 " (created if missing)")
            folders[folder] = path.resolve()
        token_text, grants = self._token(), self.grants()
        self._merge(grants, token_text)
        cert, key, client_ca = (BY_PLACE["tls", k] for k in ("cert", "key", "client_ca"))
        if (tls.cert is None) != (tls.key is None):
            raise UsageError(f"{self.name(cert)} and {self.name(key)} go together")
        if tls.client_ca is not None and tls.cert is None:
            raise UsageError(f"{self.name(client_ca)} needs {self.name(cert)} and"
                             f" {self.name(key)}")
        tls_files = self._read(cert), self._read(key), self._read(client_ca)
        try:
            check_tls_files(tls.cert, tls.key, tls.client_ca,
                            names=(self.name(cert), self.name(key), self.name(client_ca)))
        except TlsFileError as exc:
            raise UsageError(str(exc)) from exc
        git = self.settings.git
        config = ServeConfig(
            store=folders["store"], state=folders["state"], listen=server.listen,
            token=token_text, grants=grants, tls_cert=tls_files[0], tls_key=tls_files[1],
            tls_client_ca=tls_files[2], insecure=server.insecure,
            synchronous=server.synchronous, kill_grace_seconds=server.kill_grace,
            smtp=self.smtp(), git_url=git.url, git_branch=git.branch,
            sync_interval_seconds=git.sync_interval, max_connections=server.max_connections,
            handshake_timeout_seconds=server.handshake_timeout,
            idle_timeout_seconds=server.idle_timeout, http=server.http,
            http_max_connections=server.http_max_connections,
            console_layouts=server.console_layouts)
        config.check()  # what is left: an address that is not loopback without authentication
        return config

    def access(self) -> tuple[Grant, ...]:
        """Every token the daemon accepts, with its role, read from the files now: the
        roles file's and the --token-file token (an admin's). What SIGHUP reloads;
        UsageError naming the file (and line), never a token."""
        return self._merge(self.grants(), self._token())

    def _token(self) -> str | None:
        """The --token-file token (the file's content without surrounding white space)."""
        setting = BY_PLACE["server", "token_file"]
        token = self._read(setting)
        token_text = token.decode(errors="replace").strip() if token is not None else None
        if token is not None and not token_text:
            raise UsageError(f"{self.settings.value(setting)} is empty ({self.name(setting)}):"
                             " put the token in it")
        return token_text

    def _merge(self, grants: tuple[Grant, ...], token: str | None) -> tuple[Grant, ...]:
        try:  # the --token-file token joins them as an admin's
            return merge_token(grants, token, self.name(BY_PLACE["server", "token_file"]))
        except RolesFileError as exc:
            raise UsageError(str(exc)) from None

    def grants(self) -> tuple[Grant, ...]:
        """The roles file's tokens; UsageError naming the file and line (never a token)."""
        setting = BY_PLACE["server", "roles_file"]
        data = self._read(setting)
        if data is None:
            return ()
        path = self.settings.value(setting)
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            raise UsageError(f"{path}:{line}: not UTF-8 text ({self.name(setting)})") from None
        try:
            return parse_roles(text, path)
        except RolesFileError as exc:
            raise UsageError(f"{exc} ({self.name(setting)})") from None

    def _read(self, setting: Setting) -> bytes | None:
        path: Path | None = self.settings.value(setting)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {path} ({self.name(setting)}):"
                             f" {exc.strerror}") from exc

    def smtp(self) -> SmtpSettings | None:
        """The SMTP settings, or None without a host (messages recorded, not sent)."""
        smtp = self.settings.smtp
        values = {"host": smtp.host, "port": smtp.port, "from": smtp.from_address,
                  "starttls": smtp.starttls, "user": smtp.user,
                  "password_file": smtp.password_file, "timeout": smtp.timeout}
        try:
            return smtp_settings({k: v for k, v in values.items() if v is not None},
                                 base=Path.cwd())
        except SettingsError as exc:  # named as given: a flag, a variable or a file key
            raise UsageError(exc.named(lambda key: self.name(BY_PLACE["smtp", key]))) from exc

    def to_toml(self) -> str:
        """`--print-config`: the effective settings as TOML, each line saying where its value
        came from (default, file, env NAME, flag --NAME)."""
        lines = ["# flowplan serve: the effective settings (flags over environment over"
                 " file over defaults)",
                 f"# settings file: {self.file if self.file else '(none: --settings not given)'}"]
        for table in TABLES:
            lines += ["", f"[{table}]"]
            settings = [s for s in SETTINGS if s.table == table]
            width = max(len(s.key) for s in settings)
            for setting in settings:
                value = self.settings.value(setting)
                if isinstance(value, Path):
                    value = value.resolve()
                origin = {"default": "default", "file": "file",
                          "env": f"env {setting.env}",
                          "flag": f"flag {setting.flag}"}[self.origin(setting)]
                if value is None:
                    lines.append(f"# {setting.key:<{width}} = (not set)  # {origin}")
                else:
                    lines.append(f"{setting.key:<{width}} = {toml_value(value)}  # {origin}")
        return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """`value` as a TOML literal (a string, a boolean, an integer, a float or a path)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if math.isfinite(value) else str(value)
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def load_settings(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Loaded:
    """The settings of `flowplan serve` from its flags (`args`), `environ` and the
    `--settings` file, validated. UsageError naming the flag, variable or file key."""
    file: Path | None = getattr(args, "settings", None)
    layers = [flag_layer(args), env_layer(environ)]
    if file is not None:
        layers.append(file_layer(file))
    origins: dict[Setting, Layer] = {}
    nested: dict[str, Any] = {}
    for setting in SETTINGS:
        for layer in layers:  # the first layer that has it wins
            place = (setting.table, setting.key)
            if place in layer.values:
                origins[setting] = layer
                nested.setdefault(setting.table, {})[setting.key] = layer.values[place]
                break
    try:
        settings = ServeSettings(**nested)
    except ValidationError as exc:
        error = exc.errors()[0]
        setting = BY_PLACE[str(error["loc"][0]), str(error["loc"][1])]
        layer = origins[setting]
        value = layer.values[setting.table, setting.key]
        if layer.origin == "flag":
            raise UsageError(f"{setting.flag} {value}: give {setting.wanted}") from None
        shown = json.dumps(value) if layer.origin == "env" else toml_value(value)
        where = (setting.env if layer.origin == "env"
                 else f"{layer.file}: [{setting.table}] {setting.key}")
        raise UsageError(f"{where}: must be {setting.wanted}, got {shown}") from None
    return Loaded(settings, origins, file)
