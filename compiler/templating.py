"""The `${ ... }` template language of `args`, `command`, `env` values and `.sql` sources.

Each `${ expr }` is one Jinja2 expression, evaluated in an immutable sandbox with strict
undefined names. `$${` writes a literal `${`. This module is part of the plan contract: the
compiler checks templates with `check`, the engine renders them with `render`.

What a render may build is bounded (the `MAX_*` limits): the operations that can grow a
value measure their result before building it and raise `LimitError` past a limit. `check`
refuses what would fail whatever the values: private attributes, mutating methods, literal
parts over a limit.

In a shell command or a SQL source (the `language`), every value is quoted for the place it
sits (see `flowplan.compiler.quoting`): one shell word, one SQL literal. `${ x | raw }`
pastes the text as it is; `check` warns when such a value reads `params`.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sized
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.parser import Parser
from jinja2.runtime import Context as JinjaContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, modifies_known_mutable

from flowplan.compiler.diagnostics import Code, Severity, did_you_mean
from flowplan.compiler.quoting import (
    Context,
    Language,
    QuotingError,
    contexts,
    shell_quote,
    sql_quote,
)

VARIABLES: Final = frozenset({
    "ds", "ds_nodash", "ts", "data_interval_start", "data_interval_end", "logical_time",
    "run_id", "workflow", "node", "attempt", "params",
})

# Limits of one render, so that no expression can take the daemon's memory or CPU.
MAX_VALUE_CHARS: Final = 1024 * 1024  # any one value an expression builds, and its output
MAX_RENDERED_CHARS: Final = 2 * 1024 * 1024  # a whole rendered field or `.sql` source
MAX_WORK_CHARS: Final = 16 * 1024 * 1024  # all that one render builds by the bounded operations
MAX_INT_DIGITS: Final = 4000  # an integer built by `*` or `**`
MAX_ITEMS: Final = 100_000  # lists made by `batch` and `slice`
_MAX_INT_BITS: Final = math.ceil(MAX_INT_DIGITS * math.log2(10))


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


class LimitError(TemplateError):
    """A template would exceed one of the render limits; rendering it again cannot help."""


_MUTABLES: Final[tuple[object, ...]] = ([], {}, set(), deque())
_MUTATING: Final = frozenset(
    attr for obj in _MUTABLES for attr in dir(obj) if modifies_known_mutable(obj, attr))
_work: ContextVar[list[int]] = ContextVar("flowplan_template_work")
_PRINTF_SPEC: Final = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _size(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """About how many characters `value` prints as; counting stops past `limit`."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes | bytearray):
            total += len(item)
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() * 3 // 10 + 1
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            stack.extend(item)
        else:
            total += 24
    return total


def _charge(chars: int, what: str) -> None:
    """Refuse `what` when it would build more than a value may hold or a render may build."""
    if chars > MAX_VALUE_CHARS:
        raise LimitError(f"{what} would build about {chars:,} characters; a template value"
                         f" is limited to {MAX_VALUE_CHARS:,}")
    work = _work.get(None)
    if work is not None:
        work[0] += chars
        if work[0] > MAX_WORK_CHARS:
            raise LimitError(f"{what}: the template builds more than {MAX_WORK_CHARS:,}"
                             " characters in all")


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _printf_size(fmt: str, args: Any, what: str) -> int:
    """The size of `fmt % args`; refuses a `*` width and widths beyond the value limit."""
    size = len(fmt) + _size(args)
    for match in _PRINTF_SPEC.finditer(fmt):
        for number in match.groups():
            if number == "*":
                raise LimitError(f"{what}: a '*' width or precision is not allowed in"
                                 " templates; write the number")
            size += int(number or 0)
    return size


def _format_size(fmt: str, args: Any, what: str) -> int:
    """The size of `fmt.format(...)`; refuses nested fields in a format spec."""
    size = len(fmt) + _size(args)
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise TemplateError(f"{what}: {exc}") from exc
    for _, _, spec, _ in fields:
        if spec and "{" in spec:
            raise LimitError(f"{what}: a field inside a format spec is not allowed in"
                             " templates; write the number")
        size += sum(int(n) for n in re.findall(r"\d+", spec or "")[:2])
    return size


def _binop(operator: str, left: Any, right: Any) -> Any:
    """`left operator right`, refused when the result would be too large to build."""
    what = f"'{operator}'"
    if operator == "**" and isinstance(left, int) and isinstance(right, int):
        if right > 0 and abs(left) > 1 and right * math.log2(abs(left)) > _MAX_INT_BITS:
            raise LimitError(f"{left!r:.20} ** {right!r:.20} has more than {MAX_INT_DIGITS:,}"
                             " digits, the limit of a template integer")
    elif operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > _MAX_INT_BITS:
                raise LimitError(f"'*' would make an integer of more than {MAX_INT_DIGITS:,}"
                                 " digits, the limit of a template integer")
        elif isinstance(right, int) and not isinstance(left, int | float):
            _charge(_size(left) * max(right, 0), f"repeating a value {right:,} times with '*'")
        elif isinstance(left, int) and not isinstance(right, float):
            _charge(_size(right) * max(left, 0), f"repeating a value {left:,} times with '*'")
    elif operator == "+" and not isinstance(left, int | float):
        _charge(_size(left) + _size(right), what)
    elif operator == "%" and isinstance(left, str):
        _charge(_printf_size(left, right, what), what)
    return ImmutableSandboxedEnvironment.default_binop_table[operator](left, right)


def _method_size(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    """The size of a call of a str or bytes method that can grow its text, else None."""
    inner = getattr(method, "__wrapped__", method)  # the sandbox wraps str.format
    owner, name = getattr(inner, "__self__", None), getattr(inner, "__name__", "")
    if not isinstance(owner, str | bytes):
        return None
    what = f"'.{name}()'"
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill"):
        return max(len(owner), _number(first))
    if name == "expandtabs":
        tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
        return len(owner) + tabs * max(_number(first if args else kwargs.get("tabsize", 8)), 0)
    if name == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        return len(owner) + (len(owner) + 1 if not old else owner.count(old)) * len(new)
    if name == "join" and isinstance(first, Sized):
        return _size(first) + len(owner) * len(first)
    if name == "translate" and isinstance(first, dict):
        return len(owner) * max([1, *(_size(v) for v in first.values())])
    if name in ("format", "format_map") and isinstance(owner, str):
        return _format_size(owner, (args, kwargs), what)
    return None


class _BoundedCodeGenerator(CodeGenerator):
    """Routes `~` through the environment, where its size is checked."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802
        self.write("environment.concat_bounded((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with bounds on what one expression can build.

    `*`, `**`, `+`, `%`, `~`, the filters and the str methods that can grow a value
    (`center`, `replace`, `join`, `format`...) check the size of their result before
    building it, so that no single operation can hold the interpreter (a big-int power runs
    in C without releasing the GIL: a time limit alone could not stop it).
    """

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False)
        self.globals.clear()  # only the template variables exist
        self.filters = {name: _bounded_filter(name, function)
                        for name, function in self.filters.items()}

    def call_binop(self, context: JinjaContext, operator: str, left: Any, right: Any) -> Any:
        return _binop(operator, left, right)

    def call(__self, __context: JinjaContext, __obj: Any,  # noqa: N805 -- as jinja2 names them
             *args: Any, **kwargs: Any) -> Any:
        if args and getattr(__obj, "__name__", "") == "join":
            args = (_listed(args[0]), *args[1:])  # measured before it is joined
        size = _method_size(__obj, args, kwargs)
        if size is not None:
            _charge(size, f"'.{getattr(__obj, '__name__', 'call')}()'")
        result = super().call(__context, __obj, *args, **kwargs)
        _charge_result(result, "a method call")
        return result

    def concat_bounded(self, values: tuple[Any, ...]) -> str:
        texts = [str(value) for value in values]
        _charge(sum(map(len, texts)), "'~'")
        return "".join(texts)


def _charge_result(result: Any, what: str) -> None:
    if isinstance(result, str | bytes | list | tuple | dict | set | frozenset):
        _charge(_size(result), what)


def _listed(value: Any) -> Any:
    """An iterator made a list (its items are bounded), so that it can be measured."""
    return value if isinstance(value, str | bytes | list | tuple | dict | set) else list(value)


def _filter_size(name: str, args: list[Any], kwargs: dict[str, Any]) -> int | None:
    """The size a filter that can grow its input would build; None for the others."""
    def arg(index: int, key: str, default: Any) -> Any:
        return args[index] if len(args) > index else kwargs.get(key, default)

    value = args[0] if args else ""
    if name == "center":
        return max(_size(value), _number(arg(1, "width", 80)))
    if name == "indent":
        width = arg(1, "width", 4)
        pad = len(width) if isinstance(width, str) else max(_number(width), 0)
        return _size(value) + (str(value).count("\n") + 1) * pad
    if name == "format":
        return _printf_size(str(value), (args[1:], kwargs), f"'{name}'")
    if name == "replace":
        text, old, new = str(value), str(arg(1, "old", "")), str(arg(2, "new", ""))
        return len(text) + (len(text) + 1 if not old else text.count(old)) * len(new)
    if name == "wordwrap":
        text, width = str(value), max(_number(arg(1, "width", 79)), 1)
        wrap = arg(3, "wrapstring", None)
        return len(text) + (len(text) // width + 1) * len(str(wrap or "\n"))
    if name == "join":
        return _size(value) + len(value) * len(str(arg(1, "d", "")))
    if name in ("batch", "slice"):
        count = _number(arg(1, "linecount" if name == "batch" else "slices", 1))
        if count > MAX_ITEMS:
            raise LimitError(f"'{name}' with {count:,}; the limit is {MAX_ITEMS:,}")
        return _size(value) + count * _size(arg(2, "fill_with", None))
    if name == "sum":
        start = arg(2, "start", 0)
        if not isinstance(start, int | float):  # concatenation copies the total each time
            return (_size(start) + _size(value)) * max(len(value), 1)
        return None
    if name == "tojson":
        return _size(value) * (1 + max(_number(arg(1, "indent", 0)), 0))
    return None


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    passes = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        user = list(args[passes:])
        if user and name in ("join", "sum", "batch", "slice"):
            user[0] = _listed(user[0])
        size = _filter_size(name, user, kwargs)
        if size is not None:
            _charge(size, f"the '{name}' filter")
        result = function(*args[:passes], *user, **kwargs)
        _charge_result(result, f"the '{name}' filter")
        return result

    return bounded


_ENV: Final = BoundedSandbox()


class Raw(str):
    """A value written `${ x | raw }`: pasted into a command or SQL text without quoting."""

    __slots__ = ()


def _raw(value: Any) -> Raw:
    if isinstance(value, Undefined):
        str(value)  # a strict undefined value raises here, naming itself
    return Raw(value)


_ENV.filters["raw"] = _raw


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
    what the sandbox would refuse whatever the values, and in a shell command or SQL source,
    expressions whose place cannot be quoted and raw values read from params (warnings).

    `params` are the workflow's parameter names; None means they are unknown (the params
    are invalid) and `params.*` names are not checked.
    """
    if "${" not in template:
        return ()
    return _check_cached(template, params, language)


def params_read(template: str) -> frozenset[str]:
    """The `params.*` names a template's expressions read (none when it does not parse)."""
    if "${" not in template:
        return frozenset()
    try:
        pieces = list(split(template))
    except TemplateError:
        return frozenset()
    analyses = (_analyse(piece.source) for piece in pieces if isinstance(piece, Expression))
    return frozenset(name for analysis in analyses if not isinstance(analysis, str)
                     for name in analysis.param_refs)


# `{{ ds }}`, `{{ params.region }}`: Airflow's and dbt's Jinja, which flowplan leaves as text
_BRACES: Final = re.compile(r"\{\{-?\s*(" + "|".join(sorted(VARIABLES)) + r")\b[^{}]*?-?\}\}")


def braces(template: str) -> tuple[TemplateProblem, ...]:
    """Warnings for `{{ VARIABLE ... }}`: a template written in Jinja's own delimiters,
    which flowplan passes through as text (its templates are `${...}`)."""
    if "{{" not in template:
        return ()
    return tuple(TemplateProblem(
        found.start(), Code.JINJA_BRACES,
        f"'{found.group(0)}' is passed through as text: flowplan's templates are"
        f" ${{{found.group(0)[2:-2].strip(' -')}}}, not Jinja's {{{{ }}}}", Severity.WARNING)
        for found in _BRACES.finditer(template))


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
    problems += [TemplateProblem(expr.offset, code, message)
                 for code, message in analysis.refused]
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


_Refusal = tuple[Code, str]


@dataclass(frozen=True, slots=True)
class _Analysis:
    names: frozenset[str]  # variables read
    param_refs: frozenset[str]  # params.* read
    unknown_filters: frozenset[str]  # unknown filters and tests
    refused: tuple[_Refusal, ...]  # what the sandbox would refuse whatever the values
    raw: bool  # the last filter is `raw`
    raw_misplaced: bool  # `raw` somewhere else, where it does nothing


@lru_cache(maxsize=16384)
def _analyse(source: str) -> _Analysis | str:
    """What an expression reads, which filters it uses and what the sandbox would refuse,
    or its error."""
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
    try:
        refused = [*_refused_access(every), *_literal_limits(tree)]
    except RecursionError:
        return "template expression is nested too deeply"
    raws = [n for n in every if isinstance(n, nodes.Filter) and n.name == "raw"]
    last = bool(raws) and raws[0] is tree
    return _Analysis(frozenset(names), frozenset(param_refs), frozenset(unknown),
                     tuple(refused), raw=last, raw_misplaced=len(raws) > last)


def _refused_access(every: list[nodes.Node]) -> Iterator[_Refusal]:
    """What the sandbox refuses whatever the values: private attributes, mutating methods."""
    for node in every:
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) \
                and isinstance(node.arg.value, str):
            name = node.arg.value
        else:
            continue
        on_params = isinstance(node.node, nodes.Name) and node.node.name == "params"
        if on_params and isinstance(node, nodes.Getitem):
            continue  # a parameter's name; checked against the declared params
        if name.startswith("_") and not on_params:
            yield (Code.TEMPLATE_UNSAFE, f"'{name}' starts with '_': the sandbox refuses"
                   " private attributes")
        elif on_params and hasattr(dict, name):
            # Jinja2 reads an attribute before a key: `params.keys` is the method itself
            yield (Code.TEMPLATE_UNSAFE,
                   f"'params.{name}' is the mapping's '{name}' method, not a parameter:"
                   f" write params['{name}'] for a parameter of that name")
        elif name in _MUTATING:
            yield (Code.TEMPLATE_UNSAFE, f"'.{name}' would change a value; template values are"
                   " read-only (the sandbox refuses it)")


_NOT_LITERAL: Final = object()


def _literal_limits(tree: nodes.Node) -> list[_Refusal]:
    """The limit exceeded by a part of the expression made only of literals, if any."""
    found: list[_Refusal] = []
    token = _work.set([0])
    try:
        _fold(tree, found)
    finally:
        _work.reset(token)
    return found[:1]


def _fold(node: nodes.Node, found: list[_Refusal]) -> Any:
    """The value of `node` when it is made of literals and operators, else _NOT_LITERAL."""
    values = [_fold(child, found) for child in node.iter_child_nodes()]
    if isinstance(node, nodes.Const):
        return node.value
    if found or any(value is _NOT_LITERAL for value in values):
        return _NOT_LITERAL
    try:
        if isinstance(node, nodes.BinExpr) and len(values) == 2:
            return _binop(node.operator, values[0], values[1])
        if isinstance(node, nodes.Neg | nodes.Pos) and len(values) == 1:
            return -values[0] if isinstance(node, nodes.Neg) else +values[0]
        if isinstance(node, nodes.List):
            return values
        if isinstance(node, nodes.Tuple):
            return tuple(values)
    except LimitError as exc:
        found.append((Code.TEMPLATE_LIMIT, str(exc)))
    except Exception:  # e.g. 1/0: a run-time error, not a limit
        pass
    return _NOT_LITERAL


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

    In a shell command or a SQL source each value is quoted for its place
    (`flowplan.compiler.quoting`); a `Raw` value, and every value of plain text (`args`,
    `env`), is pasted as its `str()`.
    The limits above bound what it builds: past one, it raises `LimitError`.
    """
    if "$" not in template:
        return template
    token = _work.set([0])
    try:
        return _render(template, context, language)
    finally:
        _work.reset(token)


def _render(template: str, context: Mapping[str, Any], language: Language) -> str:
    out: list[str] = []
    total = 0
    places = iter(_contexts(template, language))
    for piece in split(template):
        if isinstance(piece, str):
            out.append(piece)
            total += len(piece)
            continue
        place = next(places)
        try:
            value = _compiled(piece.source)(**context)
            if isinstance(value, Undefined):
                str(value)  # a strict undefined value raises only when it is printed
            _charge(_size(value), "its value")
        except LimitError as exc:
            raise LimitError(f"cannot render '${{{_short(piece.source)}}}': {exc}") from exc
        except Exception as exc:  # jinja2 raises many types; each means "cannot render"
            raise TemplateError(f"cannot render '${{{piece.source}}}': {exc}") from exc
        out.append(_quote(piece, value, place, language))
        total += len(out[-1])
    if total > MAX_RENDERED_CHARS:
        raise LimitError(f"the rendered text would have {total:,} characters; the limit is"
                         f" {MAX_RENDERED_CHARS:,}")
    return "".join(out)


def _short(source: str) -> str:
    return source if len(source) <= 200 else f"{source[:200]}..."


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
