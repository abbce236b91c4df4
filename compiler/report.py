"""What the compiler's commands report: diagnostics for people (text, coloured on a
terminal), programs (json) and GitHub Actions, and what a publish changed. `flowplan up`,
`flowplan debug` and the git hooks print them the same way."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from flowplan.compiler.compile import CompileResult
from flowplan.compiler.console import (
    BOLD,
    DIM,
    ERROR,
    OK,
    WARNING,
    Paint,
    printable,
    use_color,
)
from flowplan.compiler.diagnostics import Diagnostic, Severity
from flowplan.compiler.plan import Plan
from flowplan.compiler.store import Change, PublishReport


def text_report(diagnostics: Sequence[Diagnostic], workflows: int, *, color: bool) -> str:
    """One line per diagnostic, `file:line:col: severity CODE message`, then a summary."""
    paint = Paint(color)
    lines = []
    for d in diagnostics:
        level = paint(ERROR if d.severity is Severity.ERROR else WARNING, d.severity.value)
        # a file name or a value quoted in the message may hold control characters
        place = paint(BOLD, f"{printable(d.file, colors=False)}:{d.line}:{d.column}:")
        message = printable(d.message, colors=False)
        lines.append(f"{place} {level} {paint(DIM, d.code.value)} {message}")
    errors = sum(d.severity is Severity.ERROR for d in diagnostics)
    warnings = len(diagnostics) - errors
    files = len({d.file for d in diagnostics if d.severity is Severity.ERROR})
    noun = "workflow" if workflows == 1 else "workflows"
    if errors:
        summary = paint(ERROR, f"{errors} error{'s' if errors != 1 else ''}"
                        f" in {files} file{'s' if files != 1 else ''}")
    else:
        summary = paint(OK, f"{workflows} {noun} valid")
    if warnings:
        summary += f", {warnings} warning{'s' if warnings != 1 else ''}"
    lines.append(summary)
    return "\n".join(lines) + "\n"


def json_report(diagnostics: Sequence[Diagnostic], workflows: int, *, ok: bool) -> str:
    return json.dumps({"ok": ok, "workflows": workflows,
                       "diagnostics": [d.to_json() for d in diagnostics]}, indent=2) + "\n"


def github_report(diagnostics: Sequence[Diagnostic]) -> str:
    """GitHub Actions workflow commands, escaped as the Actions toolkit does."""
    lines = []
    for d in diagnostics:
        command = "error" if d.severity is Severity.ERROR else "warning"
        props = ",".join(f"{k}={_escape_property(str(v))}" for k, v in (
            ("file", d.file), ("line", d.line), ("col", d.column), ("title", d.code.value)))
        lines.append(f"::{command} {props}::"
                     f"{_escape_data(printable(d.message, colors=False))}")
    return "\n".join(lines) + ("\n" if lines else "")


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def print_diagnostics(result: CompileResult) -> None:
    """Diagnostics for people, on stderr (coloured on a terminal)."""
    if result.diagnostics:
        sys.stderr.write(text_report(result.diagnostics, result.workflow_files,
                                     color=use_color(sys.stderr)))


def print_publish_report(report: PublishReport) -> None:
    """What a publish changed, one line per workflow, on stdout."""
    for item in report.published:
        if item.change is Change.UNCHANGED:
            print(f"{item.workflow}: unchanged (version {item.version})")
        else:
            print(f"{item.workflow}: version {item.version} ({item.change.value})")
    for kept in report.kept:
        active = (f"it stays removed (version {kept.version})" if kept.removed
                  else f"version {kept.version} stays active" if kept.version
                  else "nothing published yet")
        print(f"{kept.workflow}: not published, invalid; {active}")


def plan_or_report(result: CompileResult, workflow: str, *, command: str) -> Plan | None:
    """The plan of `workflow`, or None after telling why not (invalid, or no such name)."""
    try:
        return result.plan(workflow)
    except KeyError:
        print_diagnostics(result)
        known = ", ".join(p.workflow for p in result.plans) or "none"
        state = "is invalid" if workflow in result.failed else "does not exist"
        print(f"flowplan {command}: workflow '{workflow}' {state} (valid: {known})",
              file=sys.stderr)
        return None
