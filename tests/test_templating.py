"""The `${ ... }` language: splitting, checking and rendering."""

from __future__ import annotations

import pytest

from flowplan.compiler.diagnostics import Code
from flowplan.compiler.templating import Expression, LimitError, TemplateError, check, render, split

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


BIG = {**CONTEXT, "params": {"s": "ab", "n": 10**9, "e": 3 * 10**7, "w": 10**9,
                             "xs": ["x"] * 1000}}


@pytest.mark.parametrize(("template", "fragment"), [
    ("${ 7 ** params.e }", "more than 4,000 digits"),
    ("${ (10 ** 3000) * (10 ** 3000) }", "more than 4,000 digits"),
    ("${ params.s * params.n }", "limited to 1,048,576"),
    ("${ [params.s] * params.n }", "limited to 1,048,576"),
    ("${ [[1] * 1000] * 1000 }", "limited to 1,048,576"),  # shared items count each time
    ("${ (params.s * 400000) ~ (params.s * 400000) }", "'~'"),
    ("${ (params.s * 400000) + (params.s * 400000) }", "'+'"),
    ("${ '%0*d' % (params.w, 1) }", "'*' width"),
    ("${ '%0999999999d' % 1 }", "limited to 1,048,576"),
    ("${ '{:>999999999}'.format(1) }", "limited to 1,048,576"),
    ("${ '{:>{w}}'.format(1, w=params.w) }", "field inside a format spec"),
    ("${ ds.center(params.w) }", "'.center()'"),
    ("${ ds.ljust(params.w) }", "'.ljust()'"),
    ("${ (params.s * 1000).replace('', ds * 100) }", "'.replace()'"),
    ("${ (ds * 1000).join(params.xs) }", "'.join()'"),
    ("${ ds | center(params.w) }", "the 'center' filter"),
    ("${ ds | indent(params.w) }", "the 'indent' filter"),
    ("${ '%0999999999d' | format(1) }", "the 'format' filter"),
    ("${ (params.s * 1000) | replace('a', ds * 1000) }", "the 'replace' filter"),
    ("${ (params.s * 1000) | wordwrap(1, wrapstring=ds * 100) }", "the 'wordwrap' filter"),
    ("${ params.xs | join(ds * 1000) }", "the 'join' filter"),
    ("${ params.xs | map('center', 100000) | join }", "in all"),
    ("${ params.xs | batch(params.w) | list }", "'batch' with"),
    ("${ params.xs | slice(params.w) | list }", "'slice' with"),
    ("${ params.xs | tojson(indent=10000) }", "the 'tojson' filter"),
    ("${ params.xs | map('list') | sum(start=[]) }", "the 'sum' filter"),
])
def test_render_refuses_what_would_exceed_a_limit_before_building_it(template, fragment):
    with pytest.raises(LimitError, match="cannot render") as caught:
        render(template, BIG)
    assert fragment in str(caught.value)


def test_the_whole_rendered_text_is_limited():
    template = "${ params.s * 500000 }" * 3  # each value is allowed; together 3 MB
    with pytest.raises(LimitError, match="the limit is 2,097,152"):
        render(template, BIG)


@pytest.mark.parametrize(("template", "expected"), [
    ("${ 2 ** 100 }", str(2**100)),
    ("${ '%05d' % 42 }-${ '{:>4}'.format(7) }-${ '%s/%s' % (ds, params.n) }",
     "00042-   7-2026-03-29/3"),
    ("${ params.region * 3 }${ [1, 2] * 2 }", "eueueu[1, 2, 1, 2]"),
    ("${ ds | replace('-', '') | center(12) }", "  20260329  "),
    ("${ ['a', 'b'] | join(',') }${ ds.split('-') | join('/') }", "a,b2026/03/29"),
    ("${ [[1], [2]] | sum(start=[]) }${ [1, 2] | sum }", "[1, 2]3"),
    ("${ ds ~ '_' ~ run_id }", "2026-03-29_wr_1"),
])
def test_ordinary_templates_render_as_before(template, expected):
    assert render(template, CONTEXT) == expected


@pytest.mark.parametrize(("template", "code", "fragment"), [
    ("${ ''.__class__ }", Code.TEMPLATE_UNSAFE, "starts with '_'"),
    ("${ ds['__class__'] }", Code.TEMPLATE_UNSAFE, "starts with '_'"),
    ("${ [].append(1) }", Code.TEMPLATE_UNSAFE, "'.append' would change a value"),
    ("${ params.region.pop() }", Code.TEMPLATE_UNSAFE, "'.pop' would change a value"),
    ("${ params.update }", Code.TEMPLATE_UNSAFE, "write params['update']"),
    # read-only methods too: Jinja2 would render the bound method, not the parameter
    ("${ params.keys }", Code.TEMPLATE_UNSAFE, "'keys' method, not a parameter"),
    ("${ params.get }", Code.TEMPLATE_UNSAFE, "write params['get']"),
    ("${ 7 ** (3 * 10 ** 7) }", Code.TEMPLATE_LIMIT, "more than 4,000 digits"),
    ("${ ds ~ ('x' * 10 ** 9) }", Code.TEMPLATE_LIMIT, "limited to 1,048,576"),
    ("${ [0] * -(-10 ** 9) }", Code.TEMPLATE_LIMIT, "limited to 1,048,576"),
])
def test_check_refuses_what_the_sandbox_or_a_limit_refuses_whatever_the_values(
        template, code, fragment):
    problems = check(template, frozenset({"region", "update", "keys", "get"}))
    assert [p.code for p in problems] == [code]
    assert fragment in problems[0].message


@pytest.mark.parametrize("template", [
    "${ params['update'] }", "${ params['keys'] }", "${ params.region.upper() }",
    "${ 2 ** 100 }", "${ 1 / 0 }",
    "${ 'ab' * 3 }", "${ params.region * 10 ** 9 }",  # a param: only the run knows its size
])
def test_check_passes_what_may_render(template):
    assert check(template, frozenset({"region", "update", "keys"})) == ()
