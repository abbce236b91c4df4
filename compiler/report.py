"""Diagnostics for people (text, coloured on a terminal), programs (json) and GitHub Actions."""

from __future__ import annotations

import json
from collections.abc import Sequence

from compiler.diagnostics import Diagnostic, Severity

_RED, _YELLOW, _GREEN, _BOLD, _DIM, _RESET = (
    "\033[31m", "\033[33m", "\033[32m", "\033[1m", "\033[2m", "\033[0m")


def text_report(diagnostics: Sequence[Diagnostic], workflows: int, *, color: bool) -> str:
    """One line per diagnostic, `file:line:col: severity CODE message`, then a summary."""

    def paint(code: str, value: str) -> str:
        return f"{code}{value}{_RESET}" if color else value

    lines = []
    for d in diagnostics:
        level = paint(_RED if d.severity is Severity.ERROR else _YELLOW, d.severity.value)
        place = paint(_BOLD, f"{d.file}:{d.line}:{d.column}:")
        lines.append(f"{place} {level} {paint(_DIM, d.code.value)} {d.message}")
    errors = sum(d.severity is Severity.ERROR for d in diagnostics)
    warnings = len(diagnostics) - errors
    files = len({d.file for d in diagnostics if d.severity is Severity.ERROR})
    noun = "workflow" if workflows == 1 else "workflows"
    if errors:
        summary = paint(_RED, f"{errors} error{'s' if errors != 1 else ''}"
                        f" in {files} file{'s' if files != 1 else ''}")
    else:
        summary = paint(_GREEN, f"{workflows} {noun} valid")
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
        lines.append(f"::{command} {props}::{_escape_data(d.message)}")
    return "\n".join(lines) + ("\n" if lines else "")


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")
