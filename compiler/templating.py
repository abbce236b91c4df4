"""The `${ ... }` template language of `args`, `command`, `env` values and `.sql` sources.

Each `${ expr }` is one Jinja2 expression, evaluated in an immutable sandbox with strict
undefined names. `$${` writes a literal `${`. This module is part of the plan contract: the
compiler checks templates with `check`, the engine renders them with `render`.

In a shell command or a SQL source (the `language`), every value is quoted for the place it
sits (see `compiler.quoting`): one shell word, one SQL literal. `${ x | raw }` pastes the text
as it is; `check` warns when such a value reads `params`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from compiler.diagnostics import Code, Severity, did_you_mean
from compiler.quoting import Context, Language, QuotingError, contexts, shell_quote, sql_quote

VARIABLES: Final = frozenset({
    "ds", "ds_nodash", "ts", "data_interval_start", "data_interval_end", "logical_time",
    "run_id", "workflow", "node", "attempt", "params",
})

_ENV: Final = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class Raw(str):
    """A value written `${ x | raw }`: pasted into a command or SQL text without quoting."""

    __slots__ = ()


def _raw(value: Any) -> Raw:
    if isinstance(value, Undefined):
        str(value)  # a strict undefined value raises here, naming itself
    return Raw(value)


_ENV.filters["raw"] = _raw


@dataclass(frozen=True, slots=True)
class Expression:
    """One `${ ... }`: its source text and the offset of its `$` in the template."""

    source: str
    offset: int


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """A template error at `offset` characters into the template text."""

    offset: int
    code: Code
    message: str
    severity: Severity = Severity.ERROR


class TemplateError(ValueError):
    """A template could not be rendered (an error in the expression or its data)."""


def split(template: str) -> Iterator[str | Expression]:
    """The literal pieces and expressions of a template, in order.

    Raises `TemplateError` with the offset in its args for an unclosed `${`.
    """
    position, literal = 0, []
    while (dollar := template.find("$", position)) != -1:
        if template.startswith("$${", dollar):
            literal.append(template[position:dollar] + "${")
            position = dollar + 3
            continue
        if not template.startswith("${", dollar):
            literal.append(template[position:dollar + 1])
            position = dollar + 1
            continue
        end = _closing_brace(template, dollar + 2)
        if end == -1:
            raise TemplateError("'${' is not closed by '}'; write $${ for a literal ${", dollar)
        literal.append(template[position:dollar])
        if any(literal):
            yield "".join(literal)
        literal = []
        yield Expression(template[dollar + 2:end], dollar)
        position = end + 1
    literal.append(template[position:])
    if any(literal):
        yield "".join(literal)


def _closing_brace(text: str, start: int) -> int:
    depth, quote, index = 0, "", start
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return index
            depth -= 1
        index += 1
    return -1


def check(template: str, params: frozenset[str] | None, language: Language = "text"
          ) -> tuple[TemplateProblem, ...]:
    """Every problem of a template: syntax, unknown variables, unknown `params.*`, filters,
    and in a shell command or SQL source, expressions whose place cannot be quoted and raw
    values read from params (warnings).

    `params` are the workflow's parameter names; None means they are unknown (the params
    are invalid) and `params.*` names are not checked.
    """
    if "${" not in template:
        return ()
    return _check_cached(template, params, language)


@lru_cache(maxsize=65536)
def _check_cached(template: str, params: frozenset[str] | None, language: Language
                  ) -> tuple[TemplateProblem, ...]:
    problems: list[TemplateProblem] = []
    try:
        pieces = list(split(template))
    except TemplateError as exc:
        return (TemplateProblem(exc.args[1], Code.TEMPLATE_SYNTAX, exc.args[0]),)
    places = iter(_contexts(template, language))
    for piece in pieces:
        if isinstance(piece, Expression):
            problems.extend(_check_expression(piece, params, language, next(places)))
    return tuple(problems)


def _check_expression(expr: Expression, params: frozenset[str] | None, language: Language,
                      place: Context | str) -> list[TemplateProblem]:
    analysis = _analyse(expr.source)
    if isinstance(analysis, str):
        return [TemplateProblem(expr.offset, Code.TEMPLATE_SYNTAX, analysis)]
    problems = [
        TemplateProblem(expr.offset, Code.UNKNOWN_VARIABLE,
                        f"'{name}' is not a template variable{did_you_mean(name, VARIABLES)}")
        for name in sorted(analysis.names - VARIABLES)
    ]
    problems += [
        TemplateProblem(expr.offset, Code.UNKNOWN_FILTER, f"'{name}' is not a Jinja2 filter"
                        f" or test{did_you_mean(name, [*_ENV.filters, *_ENV.tests])}")
        for name in sorted(analysis.unknown_filters)
    ]
    if params is not None:
        problems += [
            TemplateProblem(expr.offset, Code.UNKNOWN_PARAM,
                            f"'params.{name}' is not declared in the workflow's params"
                            f"{did_you_mean(name, params)}")
            for name in sorted(analysis.param_refs - params)
        ]
    if language == "text":
        return problems
    what = "shell command" if language == "shell" else "SQL"
    if analysis.raw_misplaced:
        problems.append(TemplateProblem(
            expr.offset, Code.RAW_MISPLACED,
            f"'| raw' in '${{{expr.source}}}' has no effect: it must be the expression's last"
            " filter, e.g. '${ x | trim | raw }'"))
    if analysis.raw:
        if "params" in analysis.names:
            problems.append(TemplateProblem(
                expr.offset, Code.RAW_PARAM,
                f"'${{{expr.source}}}' pastes a run parameter into the {what} unquoted: whoever"
                " starts a run can inject code; drop '| raw' unless the text must be"
                f" {what} syntax", Severity.WARNING))
    elif not isinstance(place, Context):
        problems.append(TemplateProblem(
            expr.offset, Code.TEMPLATE_UNQUOTABLE,
            f"'${{{expr.source}}}' cannot be quoted in this {what}: {place}"
            f"{_UNQUOTABLE_HINT[language]}"))
    return problems


_UNQUOTABLE_HINT: Final[dict[str, str]] = {
    "shell": "; pass the value through env: and read it as \"$NAME\", or write '| raw' to"
             " paste it unquoted",
    "sqlite": "; or write '| raw' to paste it unquoted",
    "spark_sql": "; or write '| raw' to paste it unquoted",
}


@lru_cache(maxsize=16384)
def _contexts(template: str, language: Language) -> tuple[Context | str, ...]:
    """The quoting context of each expression of a valid template, in order."""
    literals = [""]
    for piece in split(template):
        if isinstance(piece, Expression):
            literals.append("")
        else:
            literals[-1] += piece
    return tuple(contexts(literals, language))


@dataclass(frozen=True, slots=True)
class _Analysis:
    names: frozenset[str]  # variables read
    param_refs: frozenset[str]  # params.* read
    unknown_filters: frozenset[str]  # unknown filters and tests
    raw: bool  # the last filter is `raw`
    raw_misplaced: bool  # `raw` somewhere else, where it does nothing


@lru_cache(maxsize=16384)
def _analyse(source: str) -> _Analysis | str:
    """What an expression reads and which filters it uses, or its error."""
    if not source.strip():
        return "empty expression '${}'"
    try:
        tree = _parse_expression(source)
    except TemplateSyntaxError as exc:
        return f"template syntax error in '${{{source}}}': {exc.message}"
    except RecursionError:  # jinja2's parser is recursive
        return "template expression is nested too deeply"
    try:
        every = [tree, *tree.find_all(nodes.Node)]  # find_all alone skips the root itself
    except RecursionError:
        return "template expression is nested too deeply"
    names = {n.name for n in every if isinstance(n, nodes.Name) and n.ctx == "load"}
    param_refs: set[str] = set()
    for getter in every:
        if not isinstance(getter, nodes.Getattr | nodes.Getitem):
            continue
        target = getter.node
        if not (isinstance(target, nodes.Name) and target.name == "params"):
            continue
        if isinstance(getter, nodes.Getattr):
            param_refs.add(getter.attr)
        elif isinstance(getter, nodes.Getitem) and isinstance(getter.arg, nodes.Const):
            param_refs.add(str(getter.arg.value))
    unknown = {n.name for n in every
               if isinstance(n, nodes.Filter) and n.name not in _ENV.filters}
    unknown |= {n.name for n in every if isinstance(n, nodes.Test) and n.name not in _ENV.tests}
    raws = [n for n in every if isinstance(n, nodes.Filter) and n.name == "raw"]
    last = bool(raws) and raws[0] is tree
    return _Analysis(frozenset(names), frozenset(param_refs), frozenset(unknown),
                     raw=last, raw_misplaced=len(raws) > last)


def _parse_expression(source: str) -> nodes.Expr:
    parser = Parser(_ENV, source, state="variable")
    tree = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateSyntaxError(
            f"unexpected '{parser.stream.current.value}' after the expression", 1)
    return tree


@lru_cache(maxsize=4096)
def _compiled(source: str) -> Any:
    return _ENV.compile_expression(source, undefined_to_none=False)


def render(template: str, context: Mapping[str, Any], language: Language = "text") -> str:
    """Render a template with the run's variables; raises `TemplateError` with the reason.

    In a shell command or a SQL source each value is quoted for its place (`compiler.quoting`);
    a `Raw` value, and every value of plain text (`args`, `env`), is pasted as its `str()`.
    """
    if "$" not in template:
        return template
    out: list[str] = []
    places = iter(_contexts(template, language))
    for piece in split(template):
        if isinstance(piece, str):
            out.append(piece)
            continue
        place = next(places)
        try:
            value = _compiled(piece.source)(**context)
            if isinstance(value, Undefined):
                str(value)  # a strict undefined value raises only when it is printed
        except Exception as exc:  # jinja2 raises many types; each means "cannot render"
            raise TemplateError(f"cannot render '${{{piece.source}}}': {exc}") from exc
        out.append(_quote(piece, value, place, language))
    return "".join(out)


def _quote(expr: Expression, value: Any, place: Context | str, language: Language) -> str:
    if isinstance(value, Raw) or place is Context.TEXT:
        return str(value)
    if not isinstance(place, Context):
        raise TemplateError(f"cannot render '${{{expr.source}}}': it cannot be quoted here:"
                            f" {place}{_UNQUOTABLE_HINT[language]}")
    try:
        if language == "shell":
            return shell_quote(str(value), place)
        return sql_quote(value, place, language)
    except QuotingError as exc:
        raise TemplateError(f"cannot render '${{{expr.source}}}': {exc}") from exc
