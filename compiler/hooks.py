"""Server-side git hooks: `flowplan hooks install` writes them, git runs them on every push.

- `pre-receive` compiles the commit pushed to the published branch, read from the pushed
  (still quarantined) objects, and rejects the push with the diagnostics of `flowplan
  check` when a workflow is invalid. Deleting the branch is refused. Other refs pass.
- `post-receive` publishes the branch's head to the plan store, remarks = commit subject,
  commit = sha, and prints what changed as `flowplan publish` does.

A hook file is a small shell script that runs this module with the Python interpreter that
installed it, by absolute path, so that it works in the bare environment git gives hooks:

    exec /usr/bin/python3 -P -m flowplan.compiler.hooks post-receive --branch main \
        --store /srv/plans
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Final

from flowplan.compiler.git import (
    DEFAULT_PATH,
    Git,
    GitError,
    check_branch_name,
    compile_commit,
    is_zero,
    publish_branch,
)
from flowplan.compiler.plan import PlanError
from flowplan.compiler.report import print_diagnostics, print_publish_report, text_report

HOOKS: Final = ("pre-receive", "post-receive")
MARKER: Final = "# flowplan hook, written by `flowplan hooks install`."
BACKUP_SUFFIX: Final = ".before-flowplan"
_PURPOSE: Final = {
    "pre-receive": "Rejects a push whose workflows are invalid, with their errors.",
    "post-receive": "Publishes the branch's head to the plan store.",
}


class HookError(Exception):
    """Hooks cannot be installed as asked."""


class NotBareError(HookError):
    """GIT_DIR is not a bare repository."""


class Action(StrEnum):
    INSTALLED = "installed"
    UNCHANGED = "unchanged"  # same content: installing again changes nothing
    UPDATED = "updated"  # an older flowplan hook (other store, branch or Python) rewritten
    REPLACED = "replaced"  # a foreign hook, with --force; kept as <hook>.before-flowplan


@dataclass(frozen=True, slots=True)
class Installed:
    path: Path
    action: Action


@dataclass(frozen=True, slots=True)
class Update:
    """One line of a hook's stdin: `<old-sha> <new-sha> <ref-name>`."""

    old: str
    new: str
    ref: str


def parse_updates(text: str) -> list[Update]:
    updates = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:
            updates.append(Update(*parts))
    return updates


def hook_script(hook: str, *, branch: str, store: Path, python: str) -> str:
    """The file git runs: exec this module with absolute paths, nothing taken from PATH."""
    args = [python, "-P", "-m", "flowplan.compiler.hooks", hook, "--branch", branch]
    if hook == "post-receive":
        args += ["--store", str(store)]
    return f"#!/bin/sh\n{MARKER}\n# {_PURPOSE[hook]}\nexec {shlex.join(args)}\n"


def install_hooks(git_dir: Path, store: Path, *, branch: str = "main", force: bool = False,
                  python: str | None = None) -> tuple[Installed, ...]:
    """Write `pre-receive` and `post-receive` into a bare repository's hooks folder.

    Idempotent. A hook not written by flowplan is left alone (`HookError`) unless `force`,
    which keeps it as `<hook>.before-flowplan`. Nothing is written unless both can be.
    """
    git = Git.open(git_dir)
    if (git_dir / ".git").exists():
        raise NotBareError(f"{git_dir}: a working copy, not a bare repository; hooks go into"
                           " the repository people push to (create one with `git init --bare`)")
    try:
        bare = git.is_bare()
    except GitError as exc:
        raise NotBareError(f"{git_dir}: not a git repository ({exc})") from None
    if not bare:
        raise NotBareError(f"{git_dir}: not a bare repository; hooks go into the repository"
                           " people push to (create one with `git init --bare`)")
    try:
        check_branch_name(git, branch)
    except GitError as exc:
        raise HookError(str(exc)) from None
    python = python or os.path.abspath(sys.executable)
    _check_importable(python)
    store = Path(os.path.abspath(store))
    hooks_dir = git.hooks_dir()
    plan: list[tuple[Path, str, Action]] = []
    foreign = []
    for hook in HOOKS:
        path = hooks_dir / hook
        content = hook_script(hook, branch=branch, store=store, python=python)
        if not (path.exists() or path.is_symlink()):
            plan.append((path, content, Action.INSTALLED))
            continue
        current = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
        if current == content and os.access(path, os.X_OK):
            plan.append((path, content, Action.UNCHANGED))
        elif MARKER in current:
            plan.append((path, content, Action.UPDATED))
        elif force:
            plan.append((path, content, Action.REPLACED))
        else:
            foreign.append(path)
    if foreign:
        names = ", ".join(str(p) for p in foreign)
        raise HookError(f"{names}: exists and was not written by flowplan; merge it by hand, or"
                        f" pass --force to replace it (it is kept as <hook>{BACKUP_SUFFIX})")
    hooks_dir.mkdir(parents=True, exist_ok=True)
    for path, content, action in plan:
        if action is Action.REPLACED:
            os.replace(path, path.with_name(path.name + BACKUP_SUFFIX))
        if action is not Action.UNCHANGED:
            _write_executable(path, content)
    return tuple(Installed(path, action) for path, content, action in plan)


def _check_importable(python: str) -> None:
    """The hooks run `python -m flowplan.compiler.hooks` with git's bare environment: try it now."""
    try:
        done = subprocess.run([python, "-P", "-c", "import flowplan.compiler.hooks"],
                              env={"PATH": DEFAULT_PATH}, cwd="/", capture_output=True,
                              text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HookError(f"cannot run {python}: {exc}") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise HookError(f"{python} cannot import flowplan without your shell's environment"
                        f" ({why}); install flowplan into that Python, or run `flowplan hooks"
                        " install` with a Python that has it installed")


def _write_executable(path: Path, content: str) -> None:
    tmp = path.with_name(f".{path.name}.flowplan.tmp")
    tmp.write_text(content, encoding="utf-8")
    tmp.chmod(0o755)
    os.replace(tmp, path)


def pre_receive(updates: Sequence[Update], git: Git, branch: str) -> int:
    """1 (reject the whole push) when the branch is deleted or its new commit is invalid."""
    ref = f"refs/heads/{branch}"
    code = 0
    for update in updates:
        if update.ref != ref:
            continue
        if is_zero(update.new):
            _say(f"flowplan: deleting {branch} is refused: the plan store follows it; remove"
                 " the flowplan hooks first if you really mean to delete it")
            code = 1
            continue
        commit = git.resolve_commit(update.new)
        if commit is None:
            _say(f"flowplan: {update.new} is not a commit that can be read; {branch} must"
                 " point to one")
            code = 1
            continue
        result = compile_commit(git, commit, plans=False, workers=os.cpu_count() or 1)
        sys.stderr.write(text_report(result.diagnostics, result.workflow_files, color=False))
        if not result.ok:
            _say(f"flowplan: push to {branch} rejected: {commit[:12]} has invalid workflows"
                 " (errors above; `flowplan check` shows the same in your clone)")
            code = 1
    return code


def post_receive(updates: Sequence[Update], git: Git, branch: str, store: Path, *,
                 now: datetime | None = None) -> int:
    """Publish the branch's head when the push touched the branch."""
    ref = f"refs/heads/{branch}"
    pushed = [update for update in updates if update.ref == ref]
    if not pushed:
        return 0
    if is_zero(pushed[-1].new):
        _say(f"flowplan: {branch} was deleted; the plan store keeps its versions")
        return 0
    report = publish_branch(git, branch, store, now=now)
    if report is None:
        _say(f"flowplan: {branch} no longer exists; nothing published")
        return 0
    if report.commit != pushed[-1].new:
        _say(f"flowplan: {branch} moved on to {report.commit[:12]} since this push;"
             " published that")
    print(f"flowplan: {branch} at {report.commit[:12]} {report.subject!r} -> {store}")
    print_diagnostics(report.compiled)
    print_publish_report(report)
    return 0 if report.compiled.ok else 1


def _say(message: str) -> None:
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """What the hook files run; git's stdin lines in, `remote:` lines out."""
    parser = argparse.ArgumentParser(prog="flowplan-hook", description="flowplan git hook")
    parser.add_argument("hook", choices=HOOKS)
    parser.add_argument("--branch", required=True)
    parser.add_argument("--store", type=Path)
    args = parser.parse_args(argv)
    if args.hook == "post-receive" and args.store is None:
        parser.error("post-receive needs --store")
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # stdout and stderr share git's sideband
    git_dir = Path(os.environ.get("GIT_DIR") or ".")
    updates = parse_updates(sys.stdin.read())
    try:
        if args.hook == "pre-receive":
            return pre_receive(updates, Git.open(git_dir, quarantine=True), args.branch)
        return post_receive(updates, Git.open(git_dir), args.branch, args.store)
    except (GitError, PlanError, OSError) as exc:
        _say(f"flowplan {args.hook}: {exc}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
