"""Golden cases (see golden.py): each repository under tests/cases/ compiles to exactly its
expectation. To rewrite one expectation on purpose: `python tests/bless.py CASE_DIR`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from golden import (
    DIAGNOSTICS,
    PLANS,
    case_dirs,
    compile_case,
    expected_files,
    outcome_files,
    xfail_reason,
)

from flowplan.compiler.compile import CompileResult, compile_repo
from flowplan.compiler.diagnostics import Code
from flowplan.compiler.repo import MemorySources, RepoSnapshot, read_repo


def _params(kind: str) -> list[object]:
    params = []
    for case in case_dirs(kind):
        reason = xfail_reason(case)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


@pytest.mark.parametrize("case", _params("invalid"))
def test_invalid_case(case: Path, tmp_path: Path) -> None:
    expected = expected_files(case)
    assert expected.get(DIAGNOSTICS), f"{case.name}: an invalid case needs {DIAGNOSTICS}"
    result = compile_case(case, tmp_path)
    assert not result.ok
    assert outcome_files(result) == expected


@pytest.mark.parametrize("case", _params("valid"))
def test_valid_case(case: Path, tmp_path: Path) -> None:
    expected = expected_files(case)
    assert DIAGNOSTICS not in expected, f"{case.name}: a valid case has no diagnostics"
    assert any(name.startswith(PLANS + "/") for name in expected)
    result = compile_case(case, tmp_path)
    assert result.diagnostics == ()
    assert outcome_files(result) == expected


def test_every_code_has_an_invalid_case() -> None:
    """Each code of the Code enum appears in some invalid case's expectation."""
    seen = set()
    for case in case_dirs("invalid"):
        for line in (case / DIAGNOSTICS).read_text(encoding="utf-8").splitlines():
            seen.add(line.split(": ", 1)[1].split(" ", 1)[0])
    assert {c.value for c in Code} - seen == set()


# --- compiler bugs found while writing the cases (input that makes compile_repo raise) ----

def _compile_text(workflow: str, sources: dict[str, bytes] | None = None) -> CompileResult:
    return compile_repo(RepoSnapshot(settings=None,
                                     workflows={"workflows/w.yaml": workflow.encode()},
                                     sources=MemorySources(sources or {})))


def test_dangling_workflow_symlink_does_not_stop_the_others(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "good.yaml").write_text(
        "name: good\nnodes:\n  - name: a\n    command: echo a\n", encoding="utf-8")
    (tmp_path / "workflows" / "broken.yaml").symlink_to("nowhere.yaml")
    result = compile_repo(read_repo(tmp_path))
    assert [p.workflow for p in result.plans] == ["good"]


def test_nul_in_a_source_path_is_a_diagnostic(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "w.yaml").write_text(
        'name: w\nnodes:\n  - name: a\n    source: "jobs/x\\0.py"\n', encoding="utf-8")
    result = compile_repo(read_repo(tmp_path))
    assert [(d.line, d.column, d.code) for d in result.diagnostics] == [
        (4, 13, Code.SOURCE_MISSING)]


@pytest.mark.parametrize(("command", "column"), [
    ('"echo ${ nope } ${ ds }"', 20),  # the `${` itself
    ('"echo \\u0024{ nope } ${ ds }"', 14),  # an escape made a `${`: the scalar's start
])
def test_a_template_diagnostic_points_at_its_expression_or_else_its_scalar(
        command: str, column: int) -> None:
    result = _compile_text(f"name: w\nnodes:\n  - name: a\n    command: {command}\n")
    assert [(d.line, d.column, d.code) for d in result.diagnostics] == [
        (4, column, Code.UNKNOWN_VARIABLE)]


DEEP_EXPRESSION = "${" + "(" * 300 + "ds" + ")" * 300 + "}"


@pytest.mark.parametrize("where", ["command", "sql"])
def test_deeply_nested_template_expression_is_a_diagnostic(where: str) -> None:
    if where == "command":
        result = _compile_text(f'name: w\nnodes:\n  - name: a\n    command: "{DEEP_EXPRESSION}"\n')
        expected = ("workflows/w.yaml", 4, 15, Code.TEMPLATE_SYNTAX)
    else:
        result = _compile_text("name: w\nnodes:\n  - source: jobs/q.sql\n",
                               {"jobs/q.sql": f"select {DEEP_EXPRESSION}\n".encode()})
        expected = ("jobs/q.sql", 1, 8, Code.TEMPLATE_SYNTAX)
    assert [(d.file, d.line, d.column, d.code) for d in result.diagnostics] == [expected]


def _strict_json(text: str) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_plan_files_are_strict_json_or_the_workflow_is_refused() -> None:
    result = _compile_text("name: w\nparams: {x: .nan, y: .inf}\n"
                           "nodes:\n  - name: a\n    command: echo a\n")
    if result.ok:
        _strict_json(result.plan("w").to_json())
