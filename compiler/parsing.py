"""YAML text -> plain values, keeping the line and column of every node.

libyaml (through PyYAML's C parser) composes the node tree: measured here it is 19x faster
than ruamel.yaml's composer, and it keeps a start mark on every node. Scalars are resolved
by the YAML 1.2 core schema here, not by PyYAML's 1.1 resolver: `on`, `no`, `yes` and
`02:00` stay strings, and only `true`/`false` are booleans.

libyaml's composer recurses in C and crashes the interpreter on very deep nesting (seen at
100,000 levels). A cheap, sound upper bound of the depth is computed before composing; only
when it exceeds `SAFE_COMPOSE_DEPTH` is the file's depth measured exactly on the event
stream of PyYAML's pure-Python parser, which is iterative and stops at the first event past
`MAX_DEPTH`. (libyaml's own scanner reads a run of `[` ahead and, since libyaml 0.2.5, refuses
it past its own nesting limit with a message of its own: the code and position reported must
not depend on which libyaml a PyYAML wheel bundles.) The converter reports `MAX_DEPTH`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

import yaml

from flowplan.compiler.diagnostics import Code, Diagnostic

_Parser: Any
try:  # libyaml is in every PyYAML wheel; the pure-Python parser behaves the same, slower.
    from yaml.cyaml import CParser as _Parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml.parser import Parser as _Parser

MAX_FILE_BYTES: Final = 1024 * 1024
MAX_DEPTH: Final = 64
SAFE_COMPOSE_DEPTH: Final = 1000  # the composer and the converter recurse safely this deep
MAX_ALIAS_EXPANSIONS: Final = 100
# the text aliases may repeat, in all (a merge key `<<: *defaults` of a long command in many
# nodes): each copy is in the plan, which must stay well within what a plan file may be
MAX_ALIAS_CHARS: Final = 8 * 1024 * 1024
MAX_INT_DIGITS: Final = 1000  # below Python's 4300-digit limit on int <-> str, hex included

Path = tuple[str | int, ...]

_PLAIN: Final = "?"  # our marker tags: implicit plain scalar, implicit quoted scalar
_QUOTED: Final = "!"
_IMPLICIT_COLLECTION: Final = "?c"
_STD = "tag:yaml.org,2002:"
_ALLOWED_TAGS: Final = frozenset(
    {_STD + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}
)

_NULLS: Final = {"": None, "~": None, "null": None, "Null": None, "NULL": None}
_BOOLS: Final = {"true": True, "True": True, "TRUE": True}
_BOOLS.update({"false": False, "False": False, "FALSE": False})
_INT_RE: Final = re.compile(r"[-+]?[0-9]+", re.ASCII)
_OCT_RE: Final = re.compile(r"0o[0-7]+", re.ASCII)
_HEX_RE: Final = re.compile(r"0x[0-9a-fA-F]+", re.ASCII)
_FLOAT_RE: Final = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?", re.ASCII)
_SPECIAL_FLOATS: Final = {
    **{f"{sign}{inf}": (-math.inf if sign == "-" else math.inf)
       for sign in ("", "+", "-") for inf in (".inf", ".Inf", ".INF")},
    ".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan,
}


class _Resolver(yaml.resolver.BaseResolver):
    """Marks scalars as plain or quoted and leaves typing to `_plain_scalar` (YAML 1.2)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            return _PLAIN if implicit[0] else _QUOTED
        return _IMPLICIT_COLLECTION


class _Loader(_Parser, yaml.composer.Composer, _Resolver):  # type: ignore[misc]
    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        if not hasattr(_Parser, "get_single_node"):  # pure-Python parser needs a composer
            yaml.composer.Composer.__init__(self)
        _Resolver.__init__(self)


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed YAML file: its plain value and the node tree that knows every position."""

    file: str
    value: Any
    root: yaml.Node
    text: str = ""

    def node_at(self, path: Path) -> yaml.Node | None:
        node = self.root
        for part in path:
            child = _child(node, part)
            if child is None:
                return None
            node = child[1]
        return node

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """1-based (line, column) of the node at `path`, or of its key when `key` is set.

        A path that leaves the tree (a missing key) points at the deepest node it reached.
        """
        node = self.root
        key_node: yaml.Node | None = None
        for part in path:
            child = _child(node, part)
            if child is None:
                key_node = None
                break
            key_node, node = child
        mark = (key_node if key and key_node is not None else node).start_mark
        return mark.line + 1, mark.column + 1


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == part:
                return k, v
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and (
            0 <= part < len(node.value)):
        return None, node.value[part]
    return None


class _TooManyDigitsError(ValueError):
    """An integer literal longer than `MAX_INT_DIGITS` (converting it costs quadratic time)."""

    def __init__(self, digits: int) -> None:
        super().__init__(f"integer with {digits} digits is out of range; an integer has at"
                         f" most {MAX_INT_DIGITS} digits (where text is meant, quote it)")


class _InvalidError(Exception):
    def __init__(self, node: yaml.Node | None, code: Code, message: str) -> None:
        super().__init__(message)
        self.node, self.code, self.message = node, code, message


def parse_yaml(data: bytes, file: str) -> Document | list[Diagnostic]:
    """Parse one YAML file into a `Document`, or the diagnostics that say why it cannot be."""
    if len(data) > MAX_FILE_BYTES:
        return [_diag(file, 1, 1, Code.FILE_TOO_LARGE,
                      f"file is larger than the limit of {MAX_FILE_BYTES} bytes; split it")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return [_diag(file, line, column, Code.NOT_TEXT,
                      "file is not UTF-8 text; save it as UTF-8")]
    if (odd := _ODD_BREAKS.search(text)) is not None:
        return [_odd_break(odd.start(), file, text)]
    if _depth_bound(text) > SAFE_COMPOSE_DEPTH and (deep := _exact_depth_problem(text, file)):
        return [deep]
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        return [_yaml_error(exc, file, text)]
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        # libyaml counts the bytes of the text's UTF-8, PyYAML's own reader its characters
        return [_reader_error(exc, file, text, in_bytes=_Parser is not yaml.parser.Parser)]
    except yaml.YAMLError as exc:  # any other error without a mark
        return [_diag(file, 1, 1, Code.YAML_SYNTAX,
                      "invalid YAML: " + " ".join(str(exc).split()))]
    if root is None:
        return [_diag(file, 1, 1, Code.NOT_ONE_DOCUMENT, "file has no YAML document")]
    try:
        # Without an anchor there is no alias: the plain walk skips the alias bookkeeping.
        value = _convert_plain(root) if "&" not in text else _Converter().convert(root)
    except _InvalidError as exc:
        line, column = _mark(exc.node)
        message = exc.message
        if isinstance(exc.__cause__, _TooManyDigitsError):
            where = _path_to(root, exc.node)
            message = f"{'.'.join(map(str, where)) if where else 'value'}: {message}"
        return [_diag(file, line, column, exc.code, message)]
    return Document(file=file, value=value, root=root, text=text)


def _path_to(root: yaml.Node, target: yaml.Node | None) -> Path | None:
    """The key path of `target` (by identity) below `root`; only an error message needs it."""
    stack: list[tuple[yaml.Node, Path]] = [(root, ())]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        if id(node) in seen:  # an alias: its anchor is walked once
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                label = key.value if isinstance(key, yaml.ScalarNode) else "?"
                stack.extend([(key, path), (value, (*path, label))])
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, index)) for index, item in enumerate(node.value))
    return None


def place(text: str, at: int) -> tuple[int, int]:
    """1-based (line, column) of the character at index `at` of `text`."""
    return text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1


def _reader_error(exc: yaml.reader.ReaderError, file: str, text: str, *, in_bytes: bool
                  ) -> Diagnostic:
    at = (len(text.encode("utf-8")[:exc.position].decode("utf-8", "ignore")) if in_bytes
          else exc.position)
    line, column = place(text, at)
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    escape = f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    return _diag(file, line, column, Code.YAML_SYNTAX,
                 f"invalid YAML: unacceptable character #x{code:04x} (YAML text has printable"
                 f" characters only); remove it, or write it as {escape} in a double-quoted string")


# Line breaks to YAML 1.1 (PyYAML's YAML), not to an editor: every position after one
# would be off by its lines, and a quoted string folds it into a space
_ODD_BREAKS: Final = re.compile("[\u0085\u2028\u2029]")
_ODD_NAMES: Final = {"\u0085": "a next-line character (U+0085)",
                     "\u2028": "a line separator (U+2028)",
                     "\u2029": "a paragraph separator (U+2029)"}


def _odd_break(at: int, file: str, text: str) -> Diagnostic:
    line, column = place(text, at)
    char = text[at]
    return _diag(file, line, column, Code.YAML_SYNTAX,
                 f"invalid YAML: {_ODD_NAMES[char]}, which YAML takes for a line break; remove"
                 f" it, or write it as \\u{ord(char):04x} in a double-quoted string")


def _diag(file: str, line: int, column: int, code: Code, message: str) -> Diagnostic:
    return Diagnostic(file=file, line=line, column=column, code=code, message=message)


def _mark(node: yaml.Node | yaml.Event | None) -> tuple[int, int]:
    mark = node.start_mark if node is not None else None
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _at_end(exc: yaml.MarkedYAMLError, text: str) -> bool:
    """True when the parser met the end of the file where it needed more (libyaml says so
    in several words: 'found unexpected end of stream', "did not find expected ']'")."""
    if exc.problem_mark is None:
        return False
    if text.endswith("\n"):  # the end is the line after the last newline
        return exc.problem_mark.line >= text.count("\n")
    problem = exc.problem or ""
    return "end of stream" in problem or "<stream end>" in problem


# PyYAML's names of what a file ended inside, in the words of a workflow's author
_UNCLOSED: Final = {"a quoted scalar": "a quoted string", "a flow mapping": "a '{' mapping",
                    "a flow sequence": "a '[' list"}


def _yaml_error(exc: yaml.MarkedYAMLError, file: str, text: str) -> Diagnostic:
    if exc.context_mark is not None and exc.context and _at_end(exc, text):
        # a quote or a bracket never closed: its start is where to look, not the file's end
        what = exc.context.removeprefix("while scanning ").removeprefix("while parsing ")
        what = _UNCLOSED.get(what, what)
        start = exc.context_mark
        return _diag(file, start.line + 1, start.column + 1, Code.YAML_SYNTAX,
                     f"invalid YAML: {what} starts here and is not closed before the end of"
                     " the file")
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = exc.problem or "invalid YAML"
    if mark is not None and "tab" not in problem:
        lines = text.split("\n", mark.line + 1)
        if mark.line < len(lines) and lines[mark.line][mark.column:mark.column + 1] == "\t":
            problem += ": a tab; YAML indents with spaces only"
    if exc.context and "duplicate anchor" in exc.context and mark is not None:
        lines = text.split("\n", mark.line + 1)
        rest = lines[mark.line][mark.column:] if mark.line < len(lines) else ""
        anchor = re.search(r"&[^\s,\[\]{}]+", rest)  # a tag may come first
        first = exc.context_mark
        return _diag(file, line, column, Code.YAML_SYNTAX,
                     f"invalid YAML: the anchor {anchor.group(0) if anchor else ''} is"
                     f" defined again{f' (first at line {first.line + 1})' if first else ''};"
                     " give each anchor a name of its own")
    if exc.context and "single document" in exc.context:
        return _diag(file, line, column, Code.NOT_ONE_DOCUMENT,
                     "file has more than one YAML document; keep one workflow per file")
    context = f" ({exc.context})" if exc.context else ""
    return _diag(file, line, column, Code.YAML_SYNTAX, f"invalid YAML: {problem}{context}")


def _depth_bound(text: str) -> int:
    """A sound upper bound of the nesting depth, computed with C-speed string operations.

    Block nesting on a line is at most its indentation plus its `- `/`? ` indicators; flow
    nesting is at most the number of opening brackets (closing ones are not subtracted: a
    `]` in a comment or a string must not hide real depth).
    """
    block = max((len(line) - len(line.lstrip(" -?")) for line in text.split("\n")), default=0)
    return block + text.count("[") + text.count("{") + 2


def _exact_depth_problem(text: str, file: str) -> Diagnostic | None:
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line, column = _mark(event)
                    return _diag(file, line, column, Code.TOO_DEEP,
                                 f"nesting is deeper than {MAX_DEPTH} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        return _yaml_error(exc, file, text)
    except yaml.reader.ReaderError as exc:  # PyYAML's reader: a position in characters
        return _reader_error(exc, file, text, in_bytes=False)
    return None


class _Converter:
    """Turns composed nodes into plain values; counts alias expansions and detects cycles."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._active: set[int] = set()
        self._expansions = 0
        self._repeated = 0  # characters of text repeated by aliases of scalars

    def convert(self, node: yaml.Node, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise _InvalidError(node, Code.TOO_DEEP, f"nesting is deeper than {MAX_DEPTH} levels")
        ident = id(node)
        if ident in self._active:
            raise _InvalidError(node, Code.RECURSIVE_ALIAS,
                                "an alias of the anchor here is inside the anchored node"
                                " itself; write the values out")
        if ident in self._seen and not isinstance(node, yaml.ScalarNode):
            self._expansions += 1
            if self._expansions > MAX_ALIAS_EXPANSIONS:
                raise _InvalidError(node, Code.ALIAS_BUDGET,
                               f"anchors and aliases expand more than {MAX_ALIAS_EXPANSIONS}"
                               " times; write the values out")
        elif ident in self._seen:  # an alias of a scalar: cheap, unless its text is long
            self._repeated += len(node.value)
            if self._repeated > MAX_ALIAS_CHARS:
                raise _InvalidError(node, Code.ALIAS_BUDGET,
                                    f"aliases repeat more than {MAX_ALIAS_CHARS} characters of"
                                    " text, each copy kept in the plan; repeat less of it")
        self._seen.add(ident)
        if isinstance(node, yaml.ScalarNode):
            try:
                return _scalar(node)
            except _TooManyDigitsError as exc:
                raise _InvalidError(node, Code.INVALID_VALUE, str(exc)) from exc
        self._active.add(ident)
        try:
            if isinstance(node, yaml.SequenceNode):
                _check_tag(node, _STD + "seq")
                return [self.convert(item, depth + 1) for item in node.value]
            assert isinstance(node, yaml.MappingNode)
            _check_tag(node, _STD + "map")
            return self._mapping(node, depth)
        finally:
            self._active.discard(ident)

    def _mapping(self, node: yaml.MappingNode, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        keys: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = self.convert(key_node, depth + 1)
            if not isinstance(key, str):
                raise _InvalidError(key_node, Code.NON_STRING_KEY,
                               f"mapping key {key!r} is not a string; quote it")
            if key in keys:
                first_line, _ = _mark(keys[key])
                raise _InvalidError(key_node, Code.DUPLICATE_KEY,
                               f"duplicate key '{key}' (first at line {first_line})")
            keys[key] = key_node
            result[key] = self.convert(value_node, depth + 1)
        return result


def _convert_plain(node: yaml.Node, depth: int = 0) -> Any:
    """`_Converter.convert` for a tree without aliases (every node is visited once)."""
    if type(node) is yaml.ScalarNode:
        try:
            return _plain_scalar(node.value) if node.tag == _PLAIN else _scalar(node)
        except _TooManyDigitsError as exc:
            raise _InvalidError(node, Code.INVALID_VALUE, str(exc)) from exc
    if depth >= MAX_DEPTH:
        raise _InvalidError(node, Code.TOO_DEEP, f"nesting is deeper than {MAX_DEPTH} levels")
    if type(node) is yaml.SequenceNode:
        _check_tag(node, _STD + "seq")
        return [_convert_plain(item, depth + 1) for item in node.value]
    _check_tag(node, _STD + "map")
    result: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = _convert_plain(key_node, depth + 1)
        if not isinstance(key, str):
            raise _InvalidError(key_node, Code.NON_STRING_KEY,
                                f"mapping key {key!r} is not a string; quote it")
        if key in result:
            first = next(k for k, _ in node.value if k.value == key)
            raise _InvalidError(key_node, Code.DUPLICATE_KEY,
                                f"duplicate key '{key}' (first at line {_mark(first)[0]})")
        result[key] = _convert_plain(value_node, depth + 1)
    return result


def _check_tag(node: yaml.Node, expected: str) -> None:
    if node.tag not in (_IMPLICIT_COLLECTION, expected):
        raise _InvalidError(node, Code.UNKNOWN_TAG, f"YAML tag '{node.tag}' is not allowed here")


def _scalar(node: yaml.ScalarNode) -> Any:
    tag, text = node.tag, node.value
    if tag == _PLAIN:
        return _plain_scalar(text)
    if tag == _QUOTED or tag == _STD + "str":
        return text
    if tag not in _ALLOWED_TAGS:
        raise _InvalidError(node, Code.UNKNOWN_TAG,
                            f"YAML tag '{tag}' is not allowed; only the standard !!str, !!int,"
                            " !!float, !!bool and !!null tags are")
    value = _plain_scalar(text)
    wanted: dict[str, type | tuple[type, ...]] = {
        "int": int, "float": (int, float), "bool": bool, "null": type(None)}
    kind = tag.removeprefix(_STD)
    if not isinstance(value, wanted[kind]) or (kind == "int" and isinstance(value, bool)):
        raise _InvalidError(node, Code.WRONG_TYPE, f"'{text}' is not a valid !!{kind}")
    return float(value) if kind == "float" else value  # type: ignore[arg-type]


def rewritten_integer(node: yaml.Node | None) -> str | None:
    """The decimal text an unquoted integer becomes where text is meant, when that is not
    what was written (`01234` -> `1234`, `0x1F` -> `31`, `+5` -> `5`); else None."""
    if not isinstance(node, yaml.ScalarNode) or node.tag != _PLAIN:
        return None
    try:
        value = _plain_scalar(node.value)
    except _TooManyDigitsError:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or str(value) == node.value:
        return None
    return str(value)


def _plain_scalar(text: str) -> Any:
    """Resolve a plain scalar by the YAML 1.2 core schema."""
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    first = text[0]
    if first.isdigit() or first in "+-.":
        if len(text) > MAX_INT_DIGITS and (
                _INT_RE.fullmatch(text) or _OCT_RE.fullmatch(text) or _HEX_RE.fullmatch(text)):
            digits = len(text.lstrip("+-").removeprefix("0o").removeprefix("0x"))
            if digits > MAX_INT_DIGITS:
                raise _TooManyDigitsError(digits)
        if _INT_RE.fullmatch(text):
            return int(text)
        if _OCT_RE.fullmatch(text):
            return int(text[2:], 8)
        if _HEX_RE.fullmatch(text):
            return int(text[2:], 16)
        if _FLOAT_RE.fullmatch(text):
            return float(text)
        if text in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[text]
    return text

