"""Rewrite the expectation of one golden case from what the compiler says now.

    python tests/bless.py tests/cases/invalid/cycle_three_nodes

For humans, used deliberately: read the diff (`git diff tests/cases`) before committing, and
check every line and column against the YAML by hand. A case with `xfail.txt` records a
compiler bug and its expectation is the correct output: it is not rewritten unless --force
is given (do that after the bug is fixed, then delete `xfail.txt`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from golden import (
    DIAGNOSTICS,
    FAILED,
    PLANS,
    compile_case,
    expected_files,
    outcome_files,
    xfail_reason,
)


def bless(case: Path, *, force: bool = False) -> int:
    if not (case / "workflows").is_dir():
        print(f"{case}: not a golden case (no workflows/ folder)", file=sys.stderr)
        return 2
    if xfail_reason(case) is not None and not force:
        print(f"{case}: has xfail.txt (a known compiler bug); not rewritten without --force",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as workdir:
        files = outcome_files(compile_case(case, Path(workdir)))
    before = expected_files(case)
    for name in (DIAGNOSTICS, FAILED):
        (case / name).unlink(missing_ok=True)
    shutil.rmtree(case / PLANS, ignore_errors=True)
    for relative, text in files.items():
        (case / relative).parent.mkdir(parents=True, exist_ok=True)
        (case / relative).write_text(text, encoding="utf-8")
    changed = sorted(k for k in before.keys() | files.keys() if before.get(k) != files.get(k))
    print(f"{case}: " + (f"rewrote {', '.join(changed)}" if changed else "unchanged"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", type=Path, help="a folder under tests/cases/valid|invalid")
    parser.add_argument("--force", action="store_true", help="rewrite an xfail case too")
    args = parser.parse_args(argv)
    return bless(args.case.resolve(), force=args.force)


if __name__ == "__main__":
    raise SystemExit(main())
