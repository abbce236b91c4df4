"""The `flowplan serve` command: its settings (daemon/server/settings.py), then the daemon
(daemon/server/app.py) or, with `--print-config`, the effective settings."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from daemon.server.config import UsageError
from daemon.server.logging import setup_logging
from daemon.server.settings import add_serve_arguments, load_settings


def register_command(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the daemon: scheduler, executor and gRPC API",
        description="Run the flowplan daemon over a plan store. Settings come from flags,"
                    " FLOWPLAN_<TABLE>_<KEY> environment variables and the --settings file,"
                    " in that order. See docs/operations.md.")
    add_serve_arguments(serve)
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        loaded = load_settings(args, os.environ)
        config = loaded.config()
    except UsageError as exc:
        print(f"flowplan serve: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        sys.stdout.write(loaded.to_toml())
        return 0
    from daemon.server.app import serve  # the daemon's modules: not for --print-config
    from daemon.state.store import StateError

    setup_logging(loaded.settings.server.log_format)
    try:
        return asyncio.run(serve(config))
    except UsageError as exc:
        print(f"flowplan serve: {exc}", file=sys.stderr)
        return 2
    except StateError as exc:
        print(f"flowplan serve: {exc}", file=sys.stderr)
        return 1
