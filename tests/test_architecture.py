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
