"""Where each `${ ... }` of a shell command or SQL source sits, and how its value is quoted there.

A template's literal text is scanned once, as `/bin/sh` or the SQL dialect would lex it, to
find the quoting context of each expression (a bare word, inside '...', inside "...", in a
comment, ...). A value is then escaped for its context, so it stays one shell word or one SQL
literal whatever it holds. Contexts where no escaping is reliable (backticks, here-documents,
`$((...))`, a backslash right before the expression...) are refused with a reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Final, Literal

Language = Literal["text", "shell", "sqlite", "spark_sql"]

_MARK: Final = "x"  # stands for an expression in the scanned text: a plain word character


class Context(StrEnum):
    """The quoting state of the text just before an expression."""

    TEXT = "text"  # args and env: no quoting
    SHELL_WORD = "shell word"  # outside quotes: the value becomes '...'
    SHELL_SINGLE = "shell single"  # inside '...'
    SHELL_DOUBLE = "shell double"  # inside "..."
    SHELL_COMMENT = "shell comment"  # after # to the end of the line
    SQL_VALUE = "sql value"  # outside literals: the value becomes a literal
    SQL_VALUE_AFTER_WORD = "sql value after a word"  # x${v}: a space keeps x'..' no prefix
    SQL_SINGLE = "sql single"  # inside a '...' string literal
    SQL_DOUBLE = "sql double"  # inside "..." (SQLite: an identifier or a string)
    SQL_BACKTICK = "sql backtick"  # inside a `...` identifier
    SQL_LINE_COMMENT = "sql line comment"  # after -- to the end of the line
    SQL_BLOCK_COMMENT = "sql block comment"  # inside /* ... */


class QuotingError(ValueError):
    """A value has no form in its context (a NUL byte in a shell word, a nested list...)."""


def contexts(literals: Sequence[str], language: Language) -> list[Context | str]:
    """The context of each expression between `literals` (one more literal than expressions),
    or the reason (a message for people) why no value can be quoted there."""
    count = len(literals) - 1
    if language == "text":
        return [Context.TEXT] * count
    text, marks, position = [], [], 0
    for index, literal in enumerate(literals):
        text.append(literal)
        position += len(literal)
        if index < count:
            marks.append(position)
            text.append(_MARK)
            position += 1
    joined = "".join(text)
    found = (_ShellScanner(joined, frozenset(marks)).run() if language == "shell"
             else _SqlScanner(joined, frozenset(marks), language).run())
    return [found.get(mark, "its quoting context could not be determined") for mark in marks]


# -- the shell -------------------------------------------------------------------------------

_SHELL_BREAK: Final = frozenset(" \t\n;&|()<>")
_SHELL_REFUSED: Final = {
    "backtick": "it is inside `...`, whose text the shell reads twice; use $(...) instead",
    "param": "it is inside a shell ${...} expansion",
    "arith": "it is inside a shell $((...)) arithmetic expansion",
    "ansi": "it is inside a $'...' string",
}
_SHELL_CONTEXT: Final = {"word": Context.SHELL_WORD, "sub": Context.SHELL_WORD,
                         "single": Context.SHELL_SINGLE, "double": Context.SHELL_DOUBLE,
                         "comment": Context.SHELL_COMMENT}


class _ShellScanner:
    """A POSIX `sh` lexer reduced to what decides quoting: quotes, escapes, comments,
    substitutions and here-documents, as a stack of frames [kind, depth]."""

    def __init__(self, text: str, marks: frozenset[int]) -> None:
        self.text, self.marks = text, marks
        self.found: dict[int, Context | str] = {}
        self.stack: list[list[str | int]] = [["word", 0]]
        self.heredocs: list[tuple[str, bool, bool]] = []  # (delimiter, <<-, quoted)
        self.case_in_sub = False  # a `case` inside $(...): its `a)` patterns look like ends
        self.escaped: set[int] = set()  # positions of characters escaped by a backslash
        self.closers: set[int] = set()  # the `)` ending a $(...) or $((...)): not operators

    def run(self) -> dict[int, Context | str]:
        text, i = self.text, 0
        while i < len(text):
            i = self._step(i)
        return self.found

    def _at_mark(self, i: int) -> None:
        refused = [_SHELL_REFUSED[str(f[0])] for f in self.stack if f[0] in _SHELL_REFUSED]
        if self.case_in_sub:
            refused.append("it follows a 'case' inside $(...), whose 'pattern)' cannot be told"
                           " from the end of the $(...)")
        self.found[i] = refused[-1] if refused else _SHELL_CONTEXT[str(self.stack[-1][0])]

    def _escape(self, i: int) -> int:
        """A backslash at `i` escapes the next character: skip both."""
        if i + 1 in self.marks:
            self.found[i + 1] = "it follows a backslash, which would escape its quoting"
        self.escaped.add(i + 1)
        return i + 2

    def _word_start(self, i: int) -> bool:
        """Whether a word starts at `i`: after an unescaped blank or operator, looking
        through backslash-newline line continuations (which the shell removes)."""
        j = i - 1
        while j >= 0 and j in self.escaped and self.text[j] == "\n":
            j -= 2
        return j < 0 or (self.text[j] in _SHELL_BREAK and j not in self.escaped
                         and j not in self.closers)

    def _step(self, i: int) -> int:
        text, frame = self.text, self.stack[-1]
        kind, char = frame[0], text[i]
        if i in self.marks:
            self._at_mark(i)
            return i + 1
        if kind == "single":
            if char == "'":
                self.stack.pop()
        elif kind == "ansi":
            if char == "\\":
                return self._escape(i)
            if char == "'":
                self.stack.pop()
        elif kind == "comment":
            if char == "\n":
                self.stack.pop()
                return i  # the newline ends the comment and may start here-documents
        elif kind == "backtick":
            if char == "\\":
                return self._escape(i)
            if char == "`":
                self.stack.pop()
        elif kind == "arith":
            if text.startswith("))", i) and frame[1] == 0:
                self.stack.pop()
                self.closers.add(i + 1)
                return i + 2
            if char in "()":
                frame[1] = int(frame[1]) + (1 if char == "(" else -1)
        elif kind == "double":
            if char == "\\":
                return self._escape(i)
            if char == '"':
                self.stack.pop()
            else:
                return self._substitution(i)
        elif kind == "param":
            if char == "\\":
                return self._escape(i)
            if char in "'\"":
                self.stack.append(["single" if char == "'" else "double", 0])
            elif char == "{":
                frame[1] = int(frame[1]) + 1
            elif char == "}":
                if frame[1] == 0:
                    self.stack.pop()
                else:
                    frame[1] = int(frame[1]) - 1
        else:
            return self._word(i, frame)
        return i + 1

    def _substitution(self, i: int) -> int:
        """`$((`, `$(`, `${` or a backtick at `i` opens a frame; else one character."""
        text = self.text
        if text.startswith("$$", i):  # the shell's process id: the second $ opens nothing
            return i + 2
        for opener, kind in (("$((", "arith"), ("$(", "sub"), ("${", "param"), ("`", "backtick")):
            if text.startswith(opener, i) and not (set(range(i, i + len(opener))) & self.marks):
                self.stack.append([kind, 0])
                return i + len(opener)
        return i + 1

    def _word(self, i: int, frame: list[str | int]) -> int:
        text, char = self.text, self.text[i]
        if char == "\\":
            return self._escape(i)
        if char in "'\"":
            self.stack.append(["single" if char == "'" else "double", 0])
        elif char == "#" and self._word_start(i):
            self.stack.append(["comment", 0])
        elif text.startswith("$'", i):
            self.stack.append(["ansi", 0])
            return i + 2
        elif char in "$`":
            return self._substitution(i)
        elif (frame[0] == "sub" and text.startswith("case", i) and text[i + 4:i + 5].isspace()
              and self._word_start(i)):
            self.case_in_sub = True
        elif frame[0] == "sub" and char in "()":
            if char == "(":
                frame[1] = int(frame[1]) + 1
            elif frame[1] == 0:
                self.stack.pop()
                self.closers.add(i)
            else:
                frame[1] = int(frame[1]) - 1
        elif text.startswith("<<<", i):
            return i + 3
        elif text.startswith("<<", i):
            return self._heredoc_delimiter(i + 2)
        elif char == "\n" and self.heredocs:
            return self._heredoc_bodies(i + 1)
        return i + 1

    def _heredoc_delimiter(self, i: int) -> int:
        text = self.text
        strip = text.startswith("-", i)
        i += strip
        while i < len(text) and text[i] in " \t":
            i += 1
        delimiter: list[str] = []
        quoted = False
        while i < len(text) and text[i] not in _SHELL_BREAK:
            if i in self.marks:
                self.found[i] = "it is in a here-document's delimiter"
            if text[i] in "'\"":
                end = text.find(text[i], i + 1)
                end = len(text) if end == -1 else end
                for mark in self.marks & set(range(i, end)):
                    self.found[mark] = "it is in a here-document's delimiter"
                delimiter.append(text[i + 1:end])
                quoted, i = True, end + 1
            elif text[i] == "\\":
                delimiter.append(text[i + 1:i + 2])
                quoted, i = True, i + 2
            else:
                delimiter.append(text[i])
                i += 1
        if delimiter:
            self.heredocs.append(("".join(delimiter), strip, quoted))
        return i

    def _heredoc_bodies(self, i: int) -> int:
        """Skip the bodies of the pending here-documents, which start at `i`; in the body of
        an unquoted delimiter a line ending in an unescaped backslash goes on on the next."""
        text = self.text
        for delimiter, strip, quoted in self.heredocs:
            line = ""
            while i < len(text):
                end = text.find("\n", i)
                end = len(text) if end == -1 else end
                for mark in self.marks & set(range(i, end)):
                    self.found[mark] = ("it is inside a here-document, where a value could end"
                                        " the document or be expanded")
                part = text[i:end].lstrip("\t") if strip else text[i:end]
                i = end + 1
                if not quoted and (len(part) - len(part.rstrip("\\"))) % 2 == 1:
                    line += part[:-1]
                    continue
                line += part
                if line == delimiter:
                    break
                line = ""
        self.heredocs.clear()
        return i


def shell_quote(value: str, context: Context) -> str:
    """`value` as text that the shell reads back as exactly `value`, in `context`."""
    if "\0" in value:
        raise QuotingError("a shell command cannot hold a NUL character")
    if context is Context.SHELL_WORD:
        return "'" + value.replace("'", "'\\''") + "'"
    if context is Context.SHELL_SINGLE:
        return value.replace("'", "'\\''")
    if context is Context.SHELL_DOUBLE:
        return re.sub(r'([$`"\\])', r"\\\1", value)
    if context is Context.SHELL_COMMENT:
        return _one_line(value)
    raise AssertionError(context)  # pragma: no cover - contexts() gives only shell contexts


# -- SQL -------------------------------------------------------------------------------------

_SQL_CONTEXT: Final = {"value": Context.SQL_VALUE, "'": Context.SQL_SINGLE,
                       '"': Context.SQL_DOUBLE, "`": Context.SQL_BACKTICK,
                       "line": Context.SQL_LINE_COMMENT, "block": Context.SQL_BLOCK_COMMENT}


class _SqlScanner:
    """The SQL lexer of SQLite or Spark SQL reduced to literals, quoted names and comments."""

    def __init__(self, text: str, marks: frozenset[int], language: Language) -> None:
        self.text, self.marks, self.spark = text, marks, language == "spark_sql"
        self.found: dict[int, Context | str] = {}

    def run(self) -> dict[int, Context | str]:
        text, marks, spark = self.text, self.marks, self.spark
        kind, depth, i = "value", 0, 0
        while i < len(text):
            char = text[i]
            if i in marks:
                self.found[i] = self._context(kind)
                if (self.found[i] is Context.SQL_VALUE and i and i - 1 not in marks
                        and (text[i - 1].isalnum() or text[i - 1] == "_")):
                    self.found[i] = Context.SQL_VALUE_AFTER_WORD
            elif kind == "value":
                if char in "'\"`":
                    kind = char
                elif char == "[" and not spark:
                    kind = "["
                elif text.startswith("--", i) and i + 1 not in marks:
                    kind, i = "line", i + 1
                elif text.startswith("/*", i) and i + 1 not in marks:
                    kind, depth, i = "block", 1, i + 1
                elif (spark and char in "rR" and text[i + 1:i + 2] in ("'", '"')
                      and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_"))
                      and i - 1 not in marks and i + 1 not in marks):
                    kind, i = "raw" + text[i + 1], i + 1
            elif kind == "line":
                if char == "\n":
                    kind = "value"
            elif kind == "block":
                if text.startswith("*/", i) and i + 1 not in marks:
                    depth, i = depth - 1, i + 1
                    kind = "value" if depth == 0 else kind
                elif spark and text.startswith("/*", i) and i + 1 not in marks:
                    depth, i = depth + 1, i + 1
            elif kind.startswith("raw"):
                if char == kind[3]:
                    kind = "value"
            elif kind == "[":
                if char == "]":
                    kind = "value"
            elif char == "\\" and spark and kind != "`":
                if i + 1 in marks:
                    self.found[i + 1] = "it follows a backslash, which would escape its quoting"
                i += 1
            elif char == kind:
                kind = "value"
            i += 1
        return self.found

    def _context(self, kind: str) -> Context | str:
        if kind == "[":
            return "it is inside a [...] name, which cannot escape ']'; write \"...\" instead"
        if kind.startswith("raw"):
            return "it is inside a raw r'...' string, which cannot escape its quote"
        if kind == '"' and self.spark:
            return ("it is inside \"...\", which Spark reads as a string or, with"
                    " spark.sql.ansi.doubleQuotedIdentifiers, a name; write '...' for a string")
        return _SQL_CONTEXT[kind]


def sql_quote(value: object, context: Context, language: Language) -> str:
    """`value` as SQL text in `context`: a literal of its own outside quotes (numbers stay
    numbers, None is NULL, a bool TRUE/FALSE, a list its items separated by commas), its text
    escaped inside a literal or a quoted name, and inert inside a comment."""
    spark = language == "spark_sql"
    if context in (Context.SQL_VALUE, Context.SQL_VALUE_AFTER_WORD):
        sql = _sql_value(value, spark, nested=False)
        # glued to a word, a string would take it as a prefix: r'..' raw, x'..' hex
        return " " + sql if context is Context.SQL_VALUE_AFTER_WORD and "'" in sql else sql
    text = str(value)
    if context is Context.SQL_SINGLE:
        return _spark_escape(text, "'") if spark else text.replace("'", "''")
    if context is Context.SQL_DOUBLE:
        return text.replace('"', '""')
    if context is Context.SQL_BACKTICK:
        return text.replace("`", "``")
    if context is Context.SQL_LINE_COMMENT:
        return _one_line(text)
    if context is Context.SQL_BLOCK_COMMENT:  # padded: '*' + a literal '/' cannot close it
        return " " + re.sub(r"\*(?=/)|/(?=\*)", lambda m: m.group() + " ", text) + " "
    raise AssertionError(context)  # pragma: no cover - contexts() gives only sql contexts


def _sql_value(value: object, spark: bool, *, nested: bool) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        text = repr(value)
        return f"({text})" if text.startswith("-") else text  # never `--`, a comment
    if isinstance(value, list | tuple):
        if nested:
            raise QuotingError("a list inside a list has no SQL form")
        if not value:
            raise QuotingError("an empty list has no SQL form")
        return ", ".join(_sql_value(item, spark, nested=True) for item in value)
    text = str(value)
    return "'" + (_spark_escape(text, "'") if spark else text.replace("'", "''")) + "'"


def _spark_escape(text: str, quote: str) -> str:
    return text.replace("\\", "\\\\").replace(quote, "\\" + quote)


def _one_line(text: str) -> str:
    """A comment's text: a line break would end the comment."""
    return re.sub(r"[\r\n\v\f\x85\u2028\u2029]", " ", text)
