"""`flowplan`: one command for people and CI. The compiler's commands come from
`compiler.cli`; the daemon's commands are added here as they are built."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from compiler import __version__
from compiler import cli as compiler_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowplan", description="Declarative GitOps workflows: compile, publish, run.")
    parser.add_argument("--version", action="version", version=f"flowplan {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    compiler_cli.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `flowplan check | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
