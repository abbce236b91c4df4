"""The layering a reader relies on: the compiler never imports the daemon, and the daemon
uses only the compiler's public contract (see compiler/__init__.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PUBLIC = {"compiler", "compiler.plan", "compiler.store", "compiler.templating",
          "compiler.compile", "compiler.repo", "compiler.cli", "compiler.git",
          "compiler.console", "compiler.report"}


def _imports(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
        found[str(path.relative_to(ROOT))] = names
    return found


def test_compiler_never_imports_daemon_or_generated_code():
    for file, names in _imports(ROOT / "compiler").items():
        bad = {n for n in names if n.split(".")[0] in ("daemon", "flowplan", "grpc")}
        assert not bad, f"{file} imports {bad}"


def test_daemon_uses_only_the_compiler_contract():
    for file, names in _imports(ROOT / "daemon").items():
        used = {n for n in names if n.startswith("compiler.") and n.count(".") == 1}
        assert used <= PUBLIC | {f"compiler.{m}" for m in ("__version__", "cli")}, (
            f"{file} imports compiler internals {used - PUBLIC}")


def test_commands_are_not_a_printing_library():
    """compiler/cli.py is the compiler's commands, not what others print with: no compiler
    module imports it (the hooks did, a cycle), and the daemon only adds its commands."""
    for file, names in _imports(ROOT / "compiler").items():
        assert file == "compiler/cli.py" or "compiler.cli" not in names, file
    users = {file for file, names in _imports(ROOT / "daemon").items()
             if {"compiler.cli", "compiler.cli.register"} & names}
    assert users <= {"daemon/cli.py", "daemon/debug.py"}, users


def test_terminal_output_goes_through_the_console_module():
    """One palette and one terminal check: only compiler/console.py writes escape codes or
    asks whether a stream is a terminal."""
    for folder in ("compiler", "daemon"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "compiler" / "console.py":
                continue
            text = path.read_text(encoding="utf-8")
            for needle in ("\\033[", "\\x1b[", "isatty(", "get_terminal_size("):
                assert needle not in text, f"{path.relative_to(ROOT)} uses {needle}"
