"""The compiler's commands: check, compile, publish, schema, graph, hooks install.

Each command returns its exit code: 0 success, 1 invalid input, 2 usage error. Results go
to stdout (JSON when asked), human notes and logs to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from flowplan.compiler import graph, schema
from flowplan.compiler.compile import CompileResult, compile_repo
from flowplan.compiler.console import use_color
from flowplan.compiler.git import GitError, GitPublishReport, publish_from_git
from flowplan.compiler.hooks import HookError, NotBareError, install_hooks
from flowplan.compiler.repo import RepoError, find_root, read_repo
from flowplan.compiler.report import (
    github_report,
    json_report,
    plan_or_report,
    print_diagnostics,
    print_publish_report,
    text_report,
)
from flowplan.compiler.store import PlanStore

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2

Command = Callable[[argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the compiler's commands to the `flowplan` parser."""
    check = subparsers.add_parser("check", help="validate a workflow repository")
    _repo_argument(check)
    check.add_argument("--format", choices=("text", "json", "github"), default="text",
                       help="text for people, json for programs, github for Actions annotations")
    check.set_defaults(handler=cmd_check)

    compile_ = subparsers.add_parser("compile", help="write plans for inspection, no publish")
    _repo_argument(compile_)
    compile_.add_argument("--out", type=Path, required=True, help="folder for <workflow>.json")
    compile_.set_defaults(handler=cmd_compile)

    publish = subparsers.add_parser("publish", help="compile and publish new plan versions")
    _repo_argument(publish)
    publish.add_argument("--store", type=Path, required=True, help="plan store folder")
    publish.add_argument("--remarks", default="", help="why this version (a commit subject)")
    publish.add_argument("--commit", default=None, help="git sha the plans come from")
    publish.add_argument("--git", metavar="URL_OR_PATH", default=None,
                         help="publish a git branch's head instead of REPO (fetched into"
                              " <store>/.git-cache; remarks and commit come from git)")
    publish.add_argument("--branch", default=None, help="branch to publish with --git (main)")
    publish.set_defaults(handler=cmd_publish)

    schema_ = subparsers.add_parser("schema", help="JSON Schema of the workflow file")
    schema_.add_argument("kind", nargs="?", choices=sorted(schema.SCHEMAS), default="workflow")
    schema_.set_defaults(handler=cmd_schema)

    graph_ = subparsers.add_parser("graph", help="a workflow's DAG as Mermaid or dot")
    add_repo_and_workflow(graph_)
    graph_.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    graph_.set_defaults(handler=cmd_graph)

    hooks = subparsers.add_parser("hooks", help="git server hooks: publish on push")
    hooks_commands = hooks.add_subparsers(dest="hooks_command", metavar="COMMAND",
                                          required=True)
    install = hooks_commands.add_parser(
        "install", help="pre-receive rejects invalid pushes, post-receive publishes")
    install.add_argument("git_dir", type=Path, metavar="GIT_DIR", help="a bare repository")
    install.add_argument("--store", type=Path, required=True, help="plan store folder")
    install.add_argument("--branch", default="main", help="the published branch (main)")
    install.add_argument("--force", action="store_true",
                         help="replace existing hooks not written by flowplan")
    install.set_defaults(handler=cmd_hooks_install)


def add_repo_and_workflow(parser: argparse.ArgumentParser) -> None:
    """`[REPO] WORKFLOW`: one workflow, after an optional repository (argparse gives a lone
    name to WORKFLOW, and refuses a third name with the command's usage)."""
    parser.add_argument("repo", nargs="?", type=Path, default=Path("."), metavar="REPO",
                        help="repository root or its workflows/ folder (default: .)")
    parser.add_argument("workflow", metavar="WORKFLOW", help="the workflow's name")


def _repo_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repo", nargs="?", type=Path, default=Path("."),
                        help="repository root or its workflows/ folder (default: .)")


def _compile(repo: Path, *, plans: bool = True) -> CompileResult | int:
    try:
        root = find_root(repo)
    except RepoError as exc:
        print(f"flowplan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # a one-shot command is single-threaded: it may fork workers for a large check
    return compile_repo(read_repo(root), plans=plans, workers=os.cpu_count() or 1)


def cmd_check(args: argparse.Namespace) -> int:
    result = _compile(args.repo, plans=False)
    if isinstance(result, int):
        return result
    if args.format == "json":
        sys.stdout.write(json_report(result.diagnostics, result.workflow_files, ok=result.ok))
    elif args.format == "github":
        sys.stdout.write(github_report(result.diagnostics))
    else:
        sys.stdout.write(text_report(result.diagnostics, result.workflow_files,
                                     color=use_color(sys.stdout)))
    return EXIT_OK if result.ok else EXIT_INVALID


def cmd_compile(args: argparse.Namespace) -> int:
    result = _compile(args.repo)
    if isinstance(result, int):
        return result
    print_diagnostics(result)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for plan in result.plans:
        (out / f"{plan.workflow}.json").write_text(plan.to_json(), encoding="utf-8")
        print(f"{out / (plan.workflow + '.json')}  {plan.digest[:12]}")
    return EXIT_OK if result.ok else EXIT_INVALID


def cmd_publish(args: argparse.Namespace) -> int:
    if args.git is not None or args.branch is not None:
        return _publish_git(args)
    result = _compile(args.repo)
    if isinstance(result, int):
        return result
    print_diagnostics(result)
    try:
        report = PlanStore(args.store).publish(
            result.plans, keep=result.failed, remove_missing=not result.uncertain_files,
            remarks=args.remarks, commit=args.commit)
    except OSError as exc:  # a FIFO as the store's .lock, a store it may not write
        print(f"flowplan publish: cannot publish to {args.store}: {exc.filename}:"
              f" {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    print_publish_report(report)
    return EXIT_OK if result.ok else EXIT_INVALID


def _publish_git(args: argparse.Namespace) -> int:
    if args.git is None:
        print("flowplan publish: --branch goes with --git", file=sys.stderr)
        return EXIT_USAGE
    if args.repo != Path(".") or args.remarks or args.commit:
        print("flowplan publish: with --git, the content, remarks and commit come from git;"
              " drop REPO, --remarks and --commit", file=sys.stderr)
        return EXIT_USAGE
    try:
        report: GitPublishReport = publish_from_git(args.git, args.branch or "main", args.store)
    except GitError as exc:
        print(f"flowplan publish: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except OSError as exc:  # a FIFO as the store's .lock, a store it may not write
        print(f"flowplan publish: cannot publish to {args.store}: {exc.filename}:"
              f" {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"{report.branch} at {report.commit[:12]} {report.subject!r}")
    print_diagnostics(report.compiled)
    print_publish_report(report)
    return EXIT_OK if report.compiled.ok else EXIT_INVALID


def cmd_hooks_install(args: argparse.Namespace) -> int:
    try:
        installed = install_hooks(args.git_dir, args.store, branch=args.branch,
                                  force=args.force)
    except HookError as exc:
        print(f"flowplan hooks install: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, NotBareError) else EXIT_INVALID
    for item in installed:
        print(f"{item.path}: {item.action.value}")
    print(f"pushes to {args.branch} are checked, then published to {args.store.absolute()}")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema.schema_text(args.kind))
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    if not args.repo.exists():  # `graph a b`: two workflows, not REPO then WORKFLOW
        print(f"flowplan: {args.repo}: no such directory (graph draws one workflow:"
              f" flowplan graph [REPO] WORKFLOW)", file=sys.stderr)
        return EXIT_USAGE
    result = _compile(args.repo)
    if isinstance(result, int):
        return result
    plan = plan_or_report(result, args.workflow, command="graph")
    if plan is None or plan.content is None:
        return EXIT_INVALID
    render = graph.dot if args.format == "dot" else graph.mermaid
    sys.stdout.write(render(plan.content))
    return EXIT_OK
