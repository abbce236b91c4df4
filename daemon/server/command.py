"""The `flowplan serve` command: its settings (daemon/server/settings.py), then the daemon
(daemon/server/app.py) or, with `--print-config`, the effective settings."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from flowplan.daemon.server.config import (
    DEFAULT_BRANCH,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_HTTP_MAX_CONNECTIONS,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_KILL_GRACE,
    DEFAULT_LISTEN,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SYNC_INTERVAL,
    SMTP_TIMEOUT,
    UsageError,
    parse_seconds,
)


def register_command(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the daemon: scheduler, executor and gRPC API",
        description="Run the flowplan daemon over a plan store. Settings come from flags,"
                    " FLOWPLAN_<TABLE>_<KEY> environment variables and the --settings file,"
                    " in that order. See docs/operations.md.")
    add_serve_arguments(serve)
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from flowplan.daemon.server.settings import load_settings  # pydantic: only when serve runs

    try:
        loaded = load_settings(args, os.environ)
    except UsageError as exc:
        print(f"flowplan serve: {exc}", file=sys.stderr)
        return 2
    if args.print_config:  # what is set, even when it is not yet enough to serve
        sys.stdout.write(loaded.to_toml())
    try:
        config = loaded.config()
    except UsageError as exc:
        what = "these settings would not serve: " if args.print_config else ""
        print(f"flowplan serve: {what}{exc}", file=sys.stderr)
        return 2
    if args.print_config:
        return 0
    import asyncio

    from flowplan.daemon.server.app import serve  # the daemon's modules: not for --print-config
    from flowplan.daemon.server.logging import setup_logging
    from flowplan.daemon.state.store import StateError

    setup_logging(loaded.settings.server.log_format)
    try:
        return asyncio.run(serve(config, reread_access=loaded.access))
    except UsageError as exc:
        print(f"flowplan serve: {exc}", file=sys.stderr)
        return 2
    except StateError as exc:
        print(f"flowplan serve: {exc}", file=sys.stderr)
        return 1


def seconds(text: str) -> float:
    """A flag's duration: seconds, or a number with s, m or h."""
    try:
        value = parse_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration like 30s or 5m") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError("the interval must be positive")
    return value


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `flowplan serve`: each one a setting of daemon/server/settings.py
    `SETTINGS` (its default, shown in the help, applies when neither the environment nor the
    settings file gives it). Unset flags are None: the variable or the file may give them."""
    parser.add_argument("--settings", type=Path, default=None, metavar="FILE",
                        help="the settings file (TOML: [server], [tls], [git], [smtp]);"
                             " environment variables FLOWPLAN_<TABLE>_<KEY> override it,"
                             " flags override both")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective settings, with where each came from, and"
                             " exit")
    parser.add_argument("--store", type=Path, metavar="DIR",
                        help="the plan store (what `flowplan publish` writes); required")
    parser.add_argument("--state", type=Path, metavar="DIR",
                        help="the state directory (SQLite database, logs, attempt folders);"
                             " required")
    parser.add_argument("--listen", metavar="HOST:PORT",
                        help=f"host:port to serve gRPC on (default {DEFAULT_LISTEN})")
    parser.add_argument("--http", metavar="HOST:PORT",
                        help="also serve HTTP here: the web console and GET /metrics"
                             " (Prometheus); the same exposure rules as --listen (default:"
                             " no HTTP listener)")
    parser.add_argument("--token-file", type=Path, metavar="FILE",
                        help="require `authorization: Bearer <token>` with this file's token"
                             " (an admin's)")
    parser.add_argument("--roles-file", type=Path, metavar="FILE",
                        help="accept the tokens of this file, each with its role: lines"
                             " `ROLE NAME TOKEN`, ROLE viewer, operator or admin")
    parser.add_argument("--tls-cert", type=Path, metavar="FILE",
                        help="serve TLS with this certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, metavar="FILE",
                        help="the certificate's private key (PEM)")
    parser.add_argument("--tls-client-ca", type=Path, metavar="FILE",
                        help="require client certificates signed by this CA (mTLS)")
    parser.add_argument("--insecure", action="store_true", default=None,
                        help="allow a non-loopback address without token or TLS")
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"),
                        help="SQLite durability: NORMAL (default) survives a crash of"
                             " flowplan; FULL also a power loss (slower commits)")
    parser.add_argument("--kill-grace", type=float, metavar="SECONDS",
                        help="after SIGTERM to a node on timeout or cancel, SIGKILL this late"
                             f" (default {DEFAULT_KILL_GRACE:g})")
    parser.add_argument("--log-format", choices=("json", "text"),
                        help="structured JSON lines (default) or text, on stderr")
    parser.add_argument("--git", dest="git_url", metavar="URL_OR_PATH",
                        help="publish this repository's branch head on an interval (the pull"
                             " alternative to git hooks)")
    parser.add_argument("--branch", help=f"the branch --git follows (default {DEFAULT_BRANCH})")
    parser.add_argument("--sync-interval", type=seconds, metavar="DURATION",
                        help="how often --git fetches (e.g. 30s, 5m; default"
                             f" {DEFAULT_SYNC_INTERVAL:g}s)")
    parser.add_argument("--max-connections", type=int, metavar="N",
                        help="API connections open at once; more are closed at once (default"
                             f" {DEFAULT_MAX_CONNECTIONS}, fewer if the open-file limit needs"
                             " it)")
    parser.add_argument("--http-max-connections", type=int, metavar="N",
                        help="--http connections open at once; more are closed at once"
                             f" (default {DEFAULT_HTTP_MAX_CONNECTIONS}; with --max-connections,"
                             " fewer if the open-file limit needs it)")
    parser.add_argument("--console-layouts", choices=("daemon", "browser"),
                        help="who lays out a web console graph of more than 200 nodes first:"
                             " the daemon, in its embedded V8, when it loads the plan version"
                             " (default), or the first browser to show it")
    parser.add_argument("--handshake-timeout", type=seconds, metavar="DURATION",
                        help="close a connection that has not begun HTTP/2 (--http: sent a"
                             " request's headers, or its body) within this time"
                             f" (default {DEFAULT_HANDSHAKE_TIMEOUT:g}s)")
    parser.add_argument("--idle-timeout", type=seconds, metavar="DURATION",
                        help="close a connection without a call (--http: a request) for this"
                             f" long; clients reconnect (default {DEFAULT_IDLE_TIMEOUT:g}s)")
    group = parser.add_argument_group(
        "notifications (SMTP)", "e-mail for on_failure, backfill failures and node notify;"
        " without a host, messages are recorded in the outbox and not sent")
    group.add_argument("--smtp-host", metavar="HOST", help="SMTP server")
    group.add_argument("--smtp-port", type=int, metavar="PORT",
                       help="default 587 with --smtp-starttls, else 25")
    group.add_argument("--smtp-from", metavar="ADDRESS",
                       help="sender address; default flowplan@<this host's name>")
    group.add_argument("--smtp-starttls", action=argparse.BooleanOptionalAction, default=None,
                       help="upgrade the connection with STARTTLS (required when on)")
    group.add_argument("--smtp-user", metavar="USER",
                       help="log in as USER (needs --smtp-password-file)")
    group.add_argument("--smtp-password-file", type=Path, metavar="FILE",
                       help="file holding the SMTP password (one line)")
    group.add_argument("--smtp-timeout", type=seconds, metavar="DURATION",
                       help=f"per connection and command (default {SMTP_TIMEOUT:g}s)")
