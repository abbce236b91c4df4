"""Golden cases: small repositories under `tests/cases/` and what the compiler must say.

A case is a folder `tests/cases/<valid|invalid>/<name>/` holding a repository
(`workflows/`, optionally `flowplan.yaml` and job sources) and its expectation:

    expected.txt        every diagnostic, `str(diagnostic)` one per line, in the order
                        `compile_repo` returns them, a warning followed by ` [warning]`
                        (absent: no diagnostics at all)
    failed.txt          `result.failed`, one workflow name per line (absent: none failed)
    expected/<w>.json   `plan.to_json()` of every plan produced (absent: no plans)

and, when needed:

    setup.json          what git cannot hold, made in a temporary copy of the case:
                        {"symlinks": {"jobs/x.py": "../../secret.py"},  # path -> target
                         "outside": {"secret.py": "text"},  # files next to the repo root
                         "generate": {"workflows/big.yaml": {"head": "...", "line": "...",
                                                            "size": 1048577}}}
    xfail.txt           the case shows a compiler bug: the expectation is the correct
                        output, the test is a strict xfail with this file's text as reason

`tests/bless.py CASE_DIR` rewrites a case's expectation from the compiler's output.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from flowplan.compiler.compile import CompileResult, compile_repo
from flowplan.compiler.diagnostics import Severity
from flowplan.compiler.repo import read_repo

CASES = Path(__file__).resolve().parent / "cases"
KINDS = ("valid", "invalid")
DIAGNOSTICS = "expected.txt"
FAILED = "failed.txt"
PLANS = "expected"
SETUP = "setup.json"
XFAIL = "xfail.txt"
_NOT_REPO = {DIAGNOSTICS, FAILED, PLANS, SETUP, XFAIL}


def case_dirs(kind: str) -> list[Path]:
    return sorted(p for p in (CASES / kind).iterdir() if p.is_dir())


def materialize(case: Path, workdir: Path) -> Path:
    """Copy the repository of `case` to `workdir/repo`, apply `setup.json`, return the root."""
    root = workdir / "repo"
    root.mkdir(parents=True)
    for entry in case.iterdir():
        if entry.name in _NOT_REPO:
            continue
        if entry.is_dir():
            shutil.copytree(entry, root / entry.name, symlinks=True)
        else:
            shutil.copy2(entry, root / entry.name, follow_symlinks=False)
    setup_file = case / SETUP
    setup = json.loads(setup_file.read_text(encoding="utf-8")) if setup_file.exists() else {}
    for relative, text in setup.get("outside", {}).items():
        (workdir / relative).parent.mkdir(parents=True, exist_ok=True)
        (workdir / relative).write_text(text, encoding="utf-8")
    for relative, target in setup.get("symlinks", {}).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).symlink_to(target)
    for relative, spec in setup.get("generate", {}).items():
        head, line, size = spec["head"].encode(), spec["line"].encode(), spec["size"]
        body = head + line * (max(0, size - len(head)) // len(line) + 1)
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(body[:size])
    return root


def outcome_files(result: CompileResult) -> dict[str, str]:
    """The expectation files, by path relative to the case folder, that `result` makes."""
    files: dict[str, str] = {}
    if result.diagnostics:
        files[DIAGNOSTICS] = "".join(
            f"{d}{' [warning]' if d.severity is Severity.WARNING else ''}\n"
            for d in result.diagnostics)
    if result.failed:
        files[FAILED] = "".join(f"{name}\n" for name in result.failed)
    for plan in result.plans:
        files[f"{PLANS}/{plan.workflow}.json"] = plan.to_json()
    return files


def compile_case(case: Path, workdir: Path) -> CompileResult:
    return compile_repo(read_repo(materialize(case, workdir)))


def expected_files(case: Path) -> dict[str, str]:
    """The expectation files that the case folder holds."""
    files: dict[str, str] = {}
    for name in (DIAGNOSTICS, FAILED):
        if (case / name).is_file():
            files[name] = (case / name).read_text(encoding="utf-8")
    if (case / PLANS).is_dir():
        for path in sorted((case / PLANS).glob("*.json")):
            files[f"{PLANS}/{path.name}"] = path.read_text(encoding="utf-8")
    return files


def xfail_reason(case: Path) -> str | None:
    path = case / XFAIL
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None
