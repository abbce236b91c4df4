"""compiler/parsing.py: YAML 1.2 scalars, positions, and hostile input that must neither crash
nor hang."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.diagnostics import Code, Diagnostic
from flowplan.compiler.parsing import (
    MAX_ALIAS_CHARS,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    Document,
    parse_yaml,
)
from flowplan.compiler.repo import MemorySources, RepoSnapshot, read_repo

WORKFLOW_TAIL = "nodes:\n  - name: a\n    command: echo a\n"


def parse(text: str | bytes) -> Document:
    result = parse_yaml(text.encode() if isinstance(text, str) else text, "x.yaml")
    assert isinstance(result, Document), result
    return result


def problems(text: str | bytes) -> list[Diagnostic]:
    result = parse_yaml(text.encode() if isinstance(text, str) else text, "x.yaml")
    assert isinstance(result, list), f"expected diagnostics, got {result!r}"
    return result


def scalar(text: str) -> Any:
    return parse(f"v: {text}\n").value["v"]


@contextmanager
def under(seconds: float) -> Iterator[None]:
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"took {elapsed:.2f} s"


# --- YAML 1.2 core schema ---------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    # YAML 1.1 booleans are strings in YAML 1.2
    ("on", "on"), ("off", "off"), ("yes", "yes"), ("no", "no"), ("y", "y"), ("n", "n"),
    ("Yes", "Yes"), ("NO", "NO"),
    # only true/false (three spellings) are booleans
    ("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False),
    ("FALSE", False), ("tRUE", "tRUE"),
    # sexagesimal numbers and timestamps of YAML 1.1 are strings
    ("02:00", "02:00"), ("1:20", "1:20"), ("2026-01-01", "2026-01-01"),
    ("2026-01-01T00:00:00", "2026-01-01T00:00:00"),
    # integers: decimal (a leading 0 is not octal), 0o octal, 0x hexadecimal
    ("0o17", 15), ("0x1F", 31), ("0x1f", 31), ("017", 17), ("+12", 12), ("-0", 0),
    ("123456789012345678901234567890", 123456789012345678901234567890),
    ("0X1F", "0X1F"), ("0o8", "0o8"), ("0x", "0x"), ("0xG", "0xG"), ("-0x1F", "-0x1F"),
    ("0b101", "0b101"), ("1_000", "1_000"), ("0o1_7", "0o1_7"),
    # floats
    ("1e3", 1000.0), ("1E3", 1000.0), ("1e+3", 1000.0), ("-1.5e-3", -0.0015), ("1.", 1.0),
    (".5", 0.5), ("1e", "1e"), (".e3", ".e3"), (".", "."),
    (".inf", math.inf), (".Inf", math.inf), (".INF", math.inf), ("+.inf", math.inf),
    ("-.inf", -math.inf), ("NaN", "NaN"), ("inf", "inf"),
    # nulls
    ("~", None), ("null", None), ("Null", None), ("NULL", None), ("", None), ("nULL", "nULL"),
    # quoting and explicit standard tags
    ('"true"', "true"), ("'123'", "123"), ('"~"', "~"), ("!!str 123", "123"),
    ("!!str true", "true"), ("!!float 1", 1.0), ("!!int 0x1F", 31), ("!!bool false", False),
    ("!!null ~", None),
    # YAML 1.2 core knows only .inf/.Inf/.INF and .nan/.NaN/.NAN, and ASCII hex digits
    (".iNf", ".iNf"), (".nAn", ".nAn"), ("0x\u0661", "0x\u0661"),
])
def test_yaml_1_2_scalars(text: str, expected: Any) -> None:
    value = scalar(text)
    assert type(value) is type(expected)
    assert value == expected


def test_nan_is_a_float() -> None:
    for text in (".nan", ".NaN", ".NAN"):
        value = scalar(text)
        assert isinstance(value, float) and math.isnan(value)


@pytest.mark.parametrize(("text", "code"), [
    ("!!int three", Code.WRONG_TYPE), ("!!int true", Code.WRONG_TYPE),
    ("!!bool yes", Code.WRONG_TYPE), ("!!null 0", Code.WRONG_TYPE),
    ("!!float abc", Code.WRONG_TYPE), ("!!python/none ''", Code.UNKNOWN_TAG),
    ("!!binary aGVsbG8=", Code.UNKNOWN_TAG), ("!!timestamp 2026-01-01", Code.UNKNOWN_TAG),
    ("!local x", Code.UNKNOWN_TAG), ("!!set {a}", Code.UNKNOWN_TAG),
    ("!!omap [a: 1]", Code.UNKNOWN_TAG),
])
def test_explicit_tags_are_checked(text: str, code: Code) -> None:
    [diagnostic] = problems(f"v: {text}\n")
    assert (diagnostic.line, diagnostic.column, diagnostic.code) == (1, 4, code)


def test_keys_that_yaml_1_1_would_turn_into_booleans_are_strings() -> None:
    doc = parse("on: 1\noff: 2\nyes: 3\nno: 4\ny: 5\n")
    assert doc.value == {"on": 1, "off": 2, "yes": 3, "no": 4, "y": 5}


@pytest.mark.parametrize(("text", "shown"), [
    ("1", "1"), ("true", "True"), ("null", "None"), ("1.5", "1.5"), ("[a]", "['a']"),
    ("{a: b}", "{'a': 'b'}"),
])
def test_non_string_keys(text: str, shown: str) -> None:
    source = f"{text}: x\n" if not text.startswith(("[", "{")) else f"? {text}\n: x\n"
    [diagnostic] = problems("a: 1\n" + source)
    assert diagnostic.code is Code.NON_STRING_KEY
    assert (diagnostic.line, diagnostic.column) == (2, 1 if "?" not in source else 3)
    assert diagnostic.message == f"mapping key {shown} is not a string; quote it"


# --- positions ------------------------------------------------------------------------

POSITIONS = """\
name: demo
schedule:
  every: day
  at: "02:00"
nodes:
  - name: first
    command: echo first
    upstream: [x, "y",  z]
  -   name: second
      args:
        - --one
        -   "two"
      env: {A: 1, B: two}
"""


@pytest.mark.parametrize(("path", "key", "position"), [
    ((), False, (1, 1)),
    (("name",), False, (1, 7)), (("name",), True, (1, 1)),
    (("schedule",), False, (3, 3)), (("schedule",), True, (2, 1)),
    (("schedule", "every"), False, (3, 10)), (("schedule", "every"), True, (3, 3)),
    (("schedule", "at"), False, (4, 7)),  # a quoted scalar starts at its quote
    (("nodes",), False, (6, 3)),  # a block sequence starts at its first `-`
    (("nodes", 0), False, (6, 5)), (("nodes", 0, "name"), True, (6, 5)),
    (("nodes", 0, "command"), False, (7, 14)),
    (("nodes", 0, "upstream"), False, (8, 15)),
    (("nodes", 0, "upstream", 0), False, (8, 16)),
    (("nodes", 0, "upstream", 1), False, (8, 19)),
    (("nodes", 0, "upstream", 2), False, (8, 25)),
    (("nodes", 1), False, (9, 7)), (("nodes", 1, "name"), False, (9, 13)),
    (("nodes", 1, "args", 0), False, (11, 11)), (("nodes", 1, "args", 1), False, (12, 13)),
    (("nodes", 1, "env", "A"), False, (13, 16)), (("nodes", 1, "env", "B"), True, (13, 19)),
    (("nodes", 1, "env", "B"), False, (13, 22)),
    # a path that leaves the tree points at the deepest node it reached
    (("nodes", 1, "missing"), False, (9, 7)), (("nodes", 7), False, (6, 3)),
    (("nodes", 0, "upstream", 3), False, (8, 15)), (("nodes", "x"), False, (6, 3)),
    (("nodes", 1, "missing"), True, (9, 7)),
])
def test_positions(path: tuple[str | int, ...], key: bool, position: tuple[int, int]) -> None:
    assert parse(POSITIONS).position(path, key=key) == position


def test_positions_with_crlf_bom_and_non_ascii() -> None:
    text = "\ufeffname: caf\u00e9\r\nnodes: [\u00e9\u00e9\u00e9, b]\r\n"
    doc = parse(text.encode("utf-8"))
    assert doc.value == {"name": "caf\u00e9", "nodes": ["\u00e9\u00e9\u00e9", "b"]}
    assert doc.position(("name",)) == (1, 7)  # the BOM is not a column
    assert doc.position(("nodes", 1)) == (2, 14)  # columns count characters, not bytes


# --- file-level problems ----------------------------------------------------------------

def test_duplicate_key_points_at_the_second_and_names_the_first() -> None:
    [diagnostic] = problems("a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n")
    assert str(diagnostic) == "x.yaml:5:3: FP007 duplicate key 'c' (first at line 3)"


@pytest.mark.parametrize("text", ["name: a\nnodes:\n\t- name: x\n",  # libyaml: "any token"
                                  "a:\n  b: 1\n\tc: 2\n"])
def test_a_tab_that_breaks_the_yaml_is_named(text: str) -> None:
    [diagnostic] = problems(text)
    assert diagnostic.code is Code.YAML_SYNTAX
    assert "tab" in diagnostic.message, diagnostic.message
    assert diagnostic.message.count("tab") <= 2  # said once, libyaml's own words or ours


def test_quoted_and_plain_spellings_of_a_key_are_the_same_key() -> None:
    [diagnostic] = problems("a: 1\n'a': 2\n")
    assert diagnostic.code is Code.DUPLICATE_KEY and diagnostic.line == 2


@pytest.mark.parametrize(("text", "line"), [
    ("", 1), ("# only a comment\n", 1), ("a: 1\n---\nb: 2\n", 2), ("---\na: 1\n...\n---\n", 4),
])
def test_not_one_document(text: str, line: int) -> None:
    [diagnostic] = problems(text)
    assert (diagnostic.code, diagnostic.line) == (Code.NOT_ONE_DOCUMENT, line)


def test_utf8_bom_accepted_and_utf16_refused() -> None:
    assert parse("\ufeffa: 1\n".encode()).value == {"a": 1}
    [diagnostic] = problems("a: 1\n".encode("utf-16"))
    assert (diagnostic.code, diagnostic.line, diagnostic.column) == (Code.NOT_TEXT, 1, 1)


def test_not_text_position_is_the_first_bad_byte() -> None:
    [diagnostic] = problems(b"a: 1\nb: ok\xff\n")
    assert (diagnostic.code, diagnostic.line, diagnostic.column) == (Code.NOT_TEXT, 2, 6)


def test_an_anchor_defined_twice_is_named_with_its_first_line() -> None:
    for text in ("a: &x 1\nb: [1, &x 2]\n", "a: &x 1\nb: [1, !!str &x 2]\n"):
        [diagnostic] = problems(text)
        assert (diagnostic.code, diagnostic.line, diagnostic.column) == (Code.YAML_SYNTAX, 2, 8)
        assert diagnostic.message == ("invalid YAML: the anchor &x is defined again (first at"
                                      " line 1); give each anchor a name of its own")


def test_recursive_alias_is_refused() -> None:
    for text in ("a: &x [1, *x]\n", "a: &x {b: *x}\n", "a: &x [[[*x]]]\n"):
        [diagnostic] = problems(text)
        assert diagnostic.code is Code.RECURSIVE_ALIAS


def test_many_aliases_of_a_scalar_are_fine_but_collections_have_a_budget() -> None:
    scalars = "s: &s x\nl: [" + ", ".join(["*s"] * 5000) + "]\n"
    assert len(parse(scalars).value["l"]) == 5000
    # the text aliases repeat has a budget too: 111 kB of YAML made a 100 MB plan; a merge
    # key of a long command in many nodes stays within it
    assert MAX_ALIAS_CHARS == 8 * 1024 * 1024
    long = "s: &s " + "x" * 100_000 + "\nl: [" + ", ".join(["*s"] * 83) + "]\n"
    assert len(parse(long).value["l"]) == 83
    [diagnostic] = problems(long.replace("]\n", ", *s]\n"))
    assert (diagnostic.code, diagnostic.line, diagnostic.column) == (Code.ALIAS_BUDGET, 1, 4)
    assert diagnostic.message == (f"aliases repeat more than {MAX_ALIAS_CHARS} characters of"
                                  " text, each copy kept in the plan; repeat less of it")
    merged = "d: &d {command: " + "y" * 20_000 + "}\nnodes:\n" + "".join(
        f"  - {{<<: *d, name: n{i}}}\n" for i in range(60))
    assert len(parse(merged).value["nodes"]) == 60
    lists = "s: &s [x]\nl: [" + ", ".join(["*s"] * 101) + "]\n"
    [diagnostic] = problems(lists)
    assert (diagnostic.code, diagnostic.line, diagnostic.column) == (Code.ALIAS_BUDGET, 1, 4)
    assert len(parse("s: &s [x]\nl: [" + ", ".join(["*s"] * 100) + "]\n").value["l"]) == 100


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH])
def test_nesting_up_to_the_limit_is_fine(depth: int) -> None:
    # the root mapping is the first level
    parse("a: " + "[" * (depth - 1) + "]" * (depth - 1) + "\n")


def test_nesting_one_past_the_limit_is_refused() -> None:
    [diagnostic] = problems("a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n")
    assert (diagnostic.code, diagnostic.line, diagnostic.column) == (
        Code.TOO_DEEP, 1, 3 + MAX_DEPTH)


# --- hostile input: never crash, never hang (each < 2 s) --------------------------------

BILLION_LAUGHS = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 10))


def test_billion_laughs() -> None:
    with under(2):
        [diagnostic] = problems(BILLION_LAUGHS)
    assert diagnostic.code is Code.ALIAS_BUDGET


def test_billion_laughs_through_compile_repo() -> None:
    repo = RepoSnapshot(settings=BILLION_LAUGHS.encode(),
                        workflows={"workflows/w.yaml": (BILLION_LAUGHS + WORKFLOW_TAIL).encode()},
                        sources=MemorySources({}))
    with under(2):
        result = compile_repo(repo)
    assert [d.code for d in result.diagnostics] == [Code.ALIAS_BUDGET, Code.ALIAS_BUDGET]


@pytest.mark.parametrize("text", [
    "[" * 100_000,
    "[" * 100_000 + "]" * 100_000,
    "a: " + "{a: " * 100_000 + "}" * 100_000,
    "- " * 100_000 + "x",
    "".join(" " * i + f"k{i}:\n" for i in range(1_000)),
    '"' + "[" * 100_000 + '"',  # brackets in a quoted string are not nesting
], ids=["flow-unclosed", "flow", "flow-mapping", "block-sequence", "block-mapping", "quoted"])
def test_deep_nesting(text: str) -> None:
    with under(2):
        result = parse_yaml(text.encode(), "x.yaml")
    if text.startswith('"'):
        assert isinstance(result, Document)
    else:
        assert isinstance(result, list)
        assert [d.code for d in result] in ([Code.TOO_DEEP], [Code.YAML_SYNTAX])


@pytest.mark.parametrize(("text", "at"), [
    ('a: "\u00e9\u00e9\u00e9\u00e9"\nb: "x\x01"\n', (2, 6)),  # after non-ASCII text
    ("# " + "[" * 1_200 + '\nname: w\nb: "x\x01"\n', (3, 6)),  # and exact depth measured
], ids=["after-non-ascii", "with-many-brackets"])
def test_a_character_yaml_does_not_allow_is_placed_where_it_is(
        text: str, at: tuple[int, int]) -> None:
    """libyaml counts the UTF-8 bytes before it, PyYAML's reader (that measures a file's
    depth when its brackets are many) raised its own error type: no traceback, one place."""
    with under(2):
        [diagnostic] = problems(text)
    assert (diagnostic.code, diagnostic.line, diagnostic.column) == (Code.YAML_SYNTAX, *at)
    assert diagnostic.message == (
        "invalid YAML: unacceptable character #x0001 (YAML text has printable characters only);"
        " remove it, or write it as \\x01 in a double-quoted string")


@pytest.mark.parametrize(("char", "named"), [
    ("\u0085", "a next-line character (U+0085)"), ("\u2028", "a line separator (U+2028)"),
    ("\u2029", "a paragraph separator (U+2029)")])
def test_a_character_yaml_takes_for_a_line_break_is_refused_where_it_is(
        char: str, named: str) -> None:
    """YAML 1.1 breaks lines there and an editor does not: every position after it was off
    (an unknown key on line 6 reported at 8:5), and U+0085 in a quoted string became a space.
    Written as an escape, it is the character."""
    for text, at in ((f'name: w\ndescription: "\u00e9{char}x"\n', (2, 16)),
                     (f"# a comment{char}\nname: w\n", (1, 12))):
        [diagnostic] = problems(text)
        assert (diagnostic.code, diagnostic.line, diagnostic.column) == (Code.YAML_SYNTAX, *at)
        assert diagnostic.message == (
            f"invalid YAML: {named}, which YAML takes for a line break; remove it, or write"
            f" it as \\u{ord(char):04x} in a double-quoted string")
    escaped = f'name: w\ndescription: "a\\u{ord(char):04x}b"\n'
    assert parse(escaped).value["description"] == f"a{char}b"


def test_ten_megabyte_file() -> None:
    data = b"name: big\n" + b"# " + b"x" * (10 * 1024 * 1024) + b"\n"
    with under(2):
        [diagnostic] = problems(data)
    assert (diagnostic.code, diagnostic.line, diagnostic.column) == (Code.FILE_TOO_LARGE, 1, 1)


def test_ten_megabyte_file_on_disk(tmp_path: Path) -> None:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "big.yaml").write_bytes(b"a" * (10 * 1024 * 1024))
    with under(2):
        snapshot = read_repo(tmp_path)
        result = compile_repo(snapshot)
    assert len(snapshot.workflows["workflows/big.yaml"]) == MAX_FILE_BYTES + 1
    assert [str(d) for d in result.diagnostics] == [
        "workflows/big.yaml:1:1: FP002 file is larger than the limit of 1048576 bytes; split it"]


@pytest.mark.parametrize("seed", range(8))
def test_random_binary(seed: int) -> None:
    data = random.Random(seed).randbytes(1024 * 1024)
    with under(2):
        result = parse_yaml(data, "x.yaml")
    assert isinstance(result, list) and len(result) == 1


@pytest.mark.parametrize("seed", range(8))
def test_random_text(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab :-[]{}&*!|>'\"#%@`,?\n\t\\~.0123456789\u00e9\u4e2d\U0001f600"
    text = "".join(rng.choice(alphabet) for _ in range(200_000))
    with under(2):
        result = parse_yaml(text.encode(), "x.yaml")
    assert isinstance(result, list | Document)


# --- bugs: closing brackets in comments/strings hide real nesting --------------------------

def _hidden(depth: int) -> str:
    deep = "[" * depth + "]" * depth
    return "# " + "]" * depth + "\nname: hidden\nparams:\n  deep: " + deep + "\n"


def test_closing_brackets_in_a_comment_do_not_hide_deep_nesting() -> None:
    [diagnostic] = problems(_hidden(1_000))
    assert (diagnostic.code, diagnostic.line, diagnostic.column) == (Code.TOO_DEEP, 4, 71)


def test_closing_brackets_in_a_comment_do_not_crash_the_process(tmp_path: Path) -> None:
    (tmp_path / "hidden.yaml").write_text(_hidden(100_000), encoding="utf-8")
    program = ("import sys; from flowplan.compiler.parsing import parse_yaml; "
               "r = parse_yaml(open(sys.argv[1], 'rb').read(), 'x.yaml'); "
               "print([str(d) for d in r] if isinstance(r, list) else 'document')")
    run = subprocess.run([sys.executable, "-c", program, str(tmp_path / "hidden.yaml")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, f"exit status {run.returncode}: {run.stderr[-500:]}"
    assert "FP006" in run.stdout
