"""The `${ ... }` language: splitting, checking and rendering."""

from __future__ import annotations

import pytest

from compiler.diagnostics import Code
from compiler.templating import Expression, TemplateError, check, render, split

CONTEXT = {"ds": "2026-03-29", "ds_nodash": "20260329", "params": {"region": "eu", "n": 3},
           "run_id": "wr_1", "attempt": 2}


def test_split_literals_expressions_and_escape():
    assert list(split("a ${ds} b $${x} ${ {'k': 1}['k'] } $HOME")) == [
        "a ", Expression("ds", 2), " b ${x} ", Expression(" {'k': 1}['k'] ", 16), " $HOME"]


def test_unclosed_expression_is_a_syntax_problem_at_its_offset():
    problems = check("ok ${ds", frozenset())
    assert [(p.offset, p.code) for p in problems] == [(3, Code.TEMPLATE_SYNTAX)]


@pytest.mark.parametrize(("template", "code", "fragment"), [
    ("${dss}", Code.UNKNOWN_VARIABLE, "did you mean 'ds'"),
    ("${ds | uper}", Code.UNKNOWN_FILTER, "did you mean 'upper'"),
    ("${params.regoin}", Code.UNKNOWN_PARAM, "did you mean 'region'"),
    ("${params['nope']}", Code.UNKNOWN_PARAM, "'params.nope'"),
    ("${ds +}", Code.TEMPLATE_SYNTAX, "syntax error"),
    ("${ds ds}", Code.TEMPLATE_SYNTAX, "after the expression"),
    ("${}", Code.TEMPLATE_SYNTAX, "empty expression"),
])
def test_check_reports(template, code, fragment):
    problems = check(template, frozenset({"region"}))
    assert [p.code for p in problems] == [code]
    assert fragment in problems[0].message


def test_unknown_params_are_not_checked_when_params_are_unknown():
    assert check("${params.anything}", None) == ()


def test_render_values_filters_and_escape():
    assert render("--day ${ds_nodash} ${params.region | upper} n=${params.n * 2} $${x}",
                  CONTEXT) == "--day 20260329 EU n=6 ${x}"


def test_render_undefined_is_an_error_not_empty():
    with pytest.raises(TemplateError, match="cannot render"):
        render("${params.missing}", CONTEXT)


def test_render_is_sandboxed():
    with pytest.raises(TemplateError):
        render("${ ds.__class__.__mro__ }", CONTEXT)
    with pytest.raises(TemplateError):
        render("${ params.update({'x': 1}) }", CONTEXT)  # immutable sandbox
