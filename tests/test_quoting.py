"""Template values in `command:` and `.sql` sources are data: one shell word, one SQL literal.

The properties run the real `/bin/sh` and the real SQLite runner on rendered templates; the
end-to-end test starts runs with injection payloads through the CLI against a real daemon.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import FLOWPLAN, ROOT, MakeRepo
from daemon_harness import publish, running_daemon
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowplan.compiler.diagnostics import Code, Severity
from flowplan.compiler.templating import TemplateError, check, render
from flowplan.daemon.engine import spark_sql
from flowplan.daemon.engine import sql as sql_runner

PAYLOADS = [
    "$(touch {f})", "`touch {f}`", "a; touch {f}", "a' ; touch {f} ; echo '",
    'a" ; touch {f} ; echo "', "a\\", "\\'", "'", '"', "$HOME", "*", "~", "-n", "", " a  b ",
    "line1\nline2", "x # y", "it''s", "a\\'; touch {f}; echo '", "--", "*/", "1; DROP TABLE t",
    "'; CREATE TABLE pwned(x); SELECT '", "é漢字🙂", "\t\r\v",
]
VALUES = st.one_of(
    st.sampled_from([p.format(f="/nonexistent/pwned") for p in PAYLOADS]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")),
)
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# the value bare, inside '...', inside "...", glued to words, then in a comment (whose line
# break must not end it early); `printf '\000'` separates the outputs
SHELL = ("printf %s ${ params.x }; printf '\\000'; printf %s '${ params.x }'; printf '\\000';"
         " printf %s \"${ params.x }\"; printf '\\000';"
         " printf %s a${ params.x }b'c'; # ${ params.x }"
         "\nprintf '\\000'; printf %s \"$(printf %s ${ params.x })\"x")


def sh(command: str) -> bytes:
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True, check=True,
                          timeout=30).stdout


@PROPERTY
@given(value=VALUES)
def test_sh_reads_back_exactly_the_value_in_every_context(value: str) -> None:
    out = sh(render(SHELL, {"params": {"x": value}}, "shell")).split(b"\0")
    expected = value.encode()
    # $(...) drops trailing newlines, as the shell always does: the 'x' after it keeps them
    assert out == [expected, expected, expected, b"a" + expected + b"bc",
                   expected.rstrip(b"\n") + b"x"]


SQLITE = ("SELECT ${ params.x } AS bare, '${ params.x }' AS quoted, -- ${ params.x }\n"
          "  '<' || '${ params.x }' || '>' /* ${ params.x } */ AS glued, ${ params.n } AS n;")


@PROPERTY
@given(value=VALUES, number=st.integers(-10**12, 10**12))
def test_sqlite_reads_back_exactly_the_value(value: str, number: int) -> None:
    script = render(SQLITE, {"params": {"x": value, "n": number}}, "sqlite")
    rows = sql_runner.run(script, ":memory:")
    assert rows == [("bare", "quoted", "glued", "n"), (value, value, f"<{value}>", number)]


@pytest.mark.parametrize("value", ['a"b', "a`b", "x\" ); DROP TABLE t; --", "é漢"])
def test_sqlite_quoted_names_hold_the_value(value: str) -> None:
    for template in ('CREATE TABLE t ("${ params.x }" TEXT);\nPRAGMA table_info(t);',
                     "CREATE TABLE t (`${ params.x }` TEXT);\nPRAGMA table_info(t);"):
        rows = sql_runner.run(render(template, {"params": {"x": value}}, "sqlite"), ":memory:")
        assert rows is not None and rows[1][1] == value


@PROPERTY
@given(value=VALUES)
def test_spark_sql_keeps_the_value_inside_its_literal(value: str) -> None:
    """Spark's own splitter (the lexer of the runner) sees the literal end where it should."""
    script = render("SELECT ${ params.x }, '${ params.x }' -- ${ params.x }\n"
                    "  /* ${ params.x } */, `${ params.x }`;\nSELECT 2",
                    {"params": {"x": value}}, "spark_sql")
    assert [text for _, text in spark_sql.statements(script)][1:] == ["SELECT 2"]
    first = script.split(";\nSELECT 2")[0]
    literal = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    assert first.startswith(f"SELECT {literal}, {literal} -- ")


@pytest.mark.parametrize(("value", "sql"), [
    (None, "NULL"), (True, "TRUE"), (False, "FALSE"), (3, "3"), (-3, "(-3)"), (1.5, "1.5"),
    (-0.5, "(-0.5)"), (float("inf"), "'inf'"), ([1, "a'b", None], "1, 'a''b', NULL"),
    ({"k": 1}, "'{''k'': 1}'"), ("it's", "'it''s'"),
])
def test_non_string_values_in_sql(value: object, sql: str) -> None:
    assert render("${ params.v }", {"params": {"v": value}}, "sqlite") == sql
    # inside a literal and in a shell command, every value is its str()
    assert render("'${ params.v }'", {"params": {"v": value}}, "sqlite") == (
        "'" + str(value).replace("'", "''") + "'")
    assert sh(render("printf %s ${ params.v }", {"params": {"v": value}}, "shell")) == (
        str(value).encode())


def test_minus_a_negative_number_is_not_a_comment() -> None:
    assert sql_runner.run(render("SELECT 5 -${ params.n }", {"params": {"n": -3}}, "sqlite"),
                          ":memory:") == [("5 -(-3)",), (8,)]


@pytest.mark.parametrize("value", [[], [[1]]])
def test_lists_without_a_sql_form_fail_to_render(value: object) -> None:
    with pytest.raises(TemplateError, match="list"):
        render("x IN (${ params.v })", {"params": {"v": value}}, "sqlite")


def test_a_nul_character_cannot_reach_the_shell() -> None:
    with pytest.raises(TemplateError, match="NUL"):
        render("echo ${ params.v }", {"params": {"v": "a\0b"}}, "shell")


def test_args_and_env_stay_as_they_are() -> None:
    value = "a' ; $(touch x) \"b\""
    assert render("--x=${ params.v }", {"params": {"v": value}}) == f"--x={value}"


def test_raw_pastes_the_text_and_check_warns_when_it_reads_params() -> None:
    context = {"params": {"cols": "a, b"}, "ds": "2026-01-02"}
    assert render("SELECT ${ params.cols | raw } FROM t WHERE d = ${ ds }", context,
                  "sqlite") == "SELECT a, b FROM t WHERE d = '2026-01-02'"
    assert render("ls ${ params.cols | raw }", context, "shell") == "ls a, b"
    [warning] = check("ls ${ params.cols | raw }", frozenset({"cols"}), "shell")
    assert (warning.code, warning.severity, warning.offset) == (
        Code.RAW_PARAM, Severity.WARNING, 3)
    assert check("ls ${ ds | raw }", frozenset(), "shell") == ()  # built-ins: no warning
    assert check("--x ${ params.cols | raw }", frozenset({"cols"})) == ()  # args: inert
    [misplaced] = check("ls ${ params.cols | raw | upper }", frozenset({"cols"}), "shell")
    assert misplaced.code is Code.RAW_MISPLACED
    assert render("ls ${ params.cols | raw | upper }", context, "shell") == "ls 'A, B'"


@pytest.mark.parametrize(("template", "language", "reason"), [
    ("echo `cat ${ params.v }`", "shell", "$(...) instead"),
    ("echo \"`cat ${ params.v }`\"", "shell", "$(...) instead"),
    ("cat <<EOF\n${ params.v }\nEOF", "shell", "here-document"),
    ("cat <<-'EOF'\n\tx ${ params.v }\n\tEOF", "shell", "here-document"),
    ("cat <<${ params.v }\nx\n", "shell", "delimiter"),
    ("cat <<a\nx\\\na\n${ params.v }\na", "shell", "here-document"),  # x\<newline>a: no end
    ("echo $${HOME:-${ params.v }}", "shell", "${...} expansion"),
    ("echo \"$${HOME:-'${ params.v }'}\"", "shell", "${...} expansion"),
    ("echo $(( ${ params.v } + 1 ))", "shell", "arithmetic"),
    ("echo $'${ params.v }'", "shell", "$'...'"),
    ("echo \\${ params.v }", "shell", "backslash"),
    ("echo \"$(case a in a) echo ${ params.v };; esac)\"", "shell", "'case'"),
    ("echo \"\\${ params.v }\"", "shell", "backslash"),
    ("SELECT [${ params.v }]", "sqlite", "[...]"),
    ("SELECT \"${ params.v }\"", "spark_sql", "doubleQuotedIdentifiers"),
    ("SELECT r'${ params.v }'", "spark_sql", "raw r'...'"),
    ("SELECT '\\${ params.v }'", "spark_sql", "backslash"),
])
def test_places_where_no_quoting_is_safe_are_refused(template: str, language: str,
                                                     reason: str) -> None:
    [problem] = check(template, frozenset({"v"}), language)  # type: ignore[arg-type]
    assert problem.code is Code.TEMPLATE_UNQUOTABLE and reason in problem.message
    with pytest.raises(TemplateError, match="cannot be quoted"):  # an older plan: no run
        render(template, {"params": {"v": "x"}}, language)  # type: ignore[arg-type]
    assert check(template.replace("params.v", "params.v | raw"), frozenset({"v"}),
                 language)[0].code is Code.RAW_PARAM  # type: ignore[arg-type]


@pytest.mark.parametrize("template", [
    "echo a#${ params.v }", "echo \"$(echo ${ params.v })\"", "echo '#' ${ params.v }",
    "cat <<EOF\nhi\nEOF\necho ${ params.v }", "echo $# ${ params.v }",
    "echo 'it''s ${ params.v }'", "x=$(( 1 + 2 )); echo $x ${ params.v }",
    "echo \\;#${ params.v }", "echo a\\\n#${ params.v }",  # an escaped ; or newline: no comment
    "echo a \\\n# ${ params.v }\necho ${ params.v }",  # a comment after a line continuation
    "echo $$${x ${ params.v }",  # $$ is the process id, not the start of a ${...}
    "echo $(echo a)#${ params.v }", "echo $((1))#${ params.v }",  # no comment: one word
    "cat <<'a'\nx\\\na\necho ${ params.v }",  # a quoted delimiter: no line continuation
])
def test_ordinary_shell_places_are_quoted(template: str) -> None:
    assert check(template, frozenset({"v"}), "shell") == ()
    value = "a'; touch /nonexistent/pwned; echo \"$(id)\"`id`\nid"
    out = sh(render(template, {"params": {"v": value}}, "shell")).decode()
    assert value in out or value.replace("\n", " ") in out


def test_check_prints_the_raw_warning_with_its_place_and_exits_0(make_repo: MakeRepo) -> None:
    repo = make_repo({"workflows/w.yaml": """
        name: w
        params: {flags: "-l"}
        nodes:
          - name: a
            command: ls ${ params.flags | raw } ${ ds }
        """})
    done = subprocess.run([*FLOWPLAN, "check", str(repo)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "workflows/w.yaml:5:17: warning FP508 '${ params.flags | raw }'" in done.stdout
    assert "1 workflow valid, 1 warning" in done.stdout


WORKFLOW = """
    name: inj
    params: {%(params)s}
    nodes:
      - name: bare
        command: printf '%%s\\n' %(bare)s
      - name: single
        command: printf '%%s\\n' %(single)s
      - name: double
        command: printf '%%s\\n' %(double)s
      - name: query
        source: jobs/query.sql
    """


def test_run_params_never_run_as_shell_or_sql(make_repo: MakeRepo, tmp_path: Path) -> None:
    """`flowplan run inj --param 'x=$(touch FILE)'` and friends against a real daemon."""
    pwned = tmp_path / "pwned"
    payloads = [p.format(f=pwned) for p in PAYLOADS if "{f}" in p]
    payloads.append("'; CREATE TABLE pwned(x); SELECT '")
    names = [f"p{i}" for i in range(len(payloads))]
    repo = make_repo({
        "workflows/inj.yaml": WORKFLOW % {
            "params": ", ".join(f"{n}: ''" for n in names),
            "bare": " ".join(f"${{ params.{n} }}" for n in names),
            "single": " ".join(f"'${{ params.{n} }}'" for n in names),
            "double": " ".join(f'"${{ params.{n} }}"' for n in names),
        },
        "jobs/query.sql": "SELECT " + ", ".join(
            f"${{ params.{n} }}, '${{ params.{n} }}'" for n in names) + ";\n",
    })
    store, state = tmp_path / "store", tmp_path / "state"
    publish(repo, store)
    with running_daemon(store, state) as daemon:
        run = subprocess.run(
            [*FLOWPLAN, "run", "inj", "--wait",
             "--address", daemon.address,
             *[arg for n, p in zip(names, payloads, strict=True)
               for arg in ("--param", f"{n}={p}")]],
            capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr + daemon.output()
        run_id = run.stdout.split("started run ", 1)[1].split()[0]

        def log(node: str) -> str:
            done = subprocess.run([*FLOWPLAN, "logs", run_id, node,
                                   "--address", daemon.address],
                                  capture_output=True, text=True, cwd=ROOT, timeout=60)
            assert done.returncode == 0, done.stderr
            return done.stdout

        for node in ("bare", "single", "double"):
            assert log(node) == "".join(f"{p}\n" for p in payloads), node
        rows = list(csv.reader(io.StringIO(log("query"))))
        assert rows[1] == [p for p in payloads for _ in (0, 1)]
    assert not pwned.exists()
    with sqlite3.connect(state / "sqlite" / "inj.sqlite3") as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []


def _template(literal: str) -> str:
    """`literal` as template text (a `${` in it is written `$${`)."""
    return literal.replace("${", "$${")


SHELL_TEXT = st.text(st.sampled_from(list("'\"\\`$(){}#\n< ;|a-=")), max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=SHELL_TEXT, after=SHELL_TEXT)
def test_no_command_text_around_a_value_lets_it_run(before: str, after: str,
                                                    tmp_path_factory) -> None:
    """Whatever shell text surrounds `${ params.x }`, either check refuses the place or no
    quoting of an injection payload runs it (the text itself may well be a syntax error)."""
    folder = tmp_path_factory.mktemp("sh")
    template = _template(before + (" " if before.endswith("$") else "")) + "${ params.x }"
    template += _template(after)
    if check(template, frozenset({"x"}), "shell"):
        return
    touch = f"touch {folder}/pwned"
    value = (f"$({touch})'$({touch})\"$({touch})`{touch}`\n{touch}\n"
             f"'\"; {touch}; echo \"'; {touch}; #\\")
    subprocess.run(["/bin/sh", "-c", render(template, {"params": {"x": value}}, "shell")],
                   cwd=folder, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert not (folder / "pwned").exists(), template


SQL_TEXT = st.text(st.sampled_from(list("'\"`[]-/*\n; a")), max_size=12)


@PROPERTY
@given(before=SQL_TEXT, after=SQL_TEXT)
def test_no_sql_text_around_a_value_lets_it_run(before: str, after: str) -> None:
    template = _template(before) + "${ params.x }" + _template(after)
    if check(template, frozenset({"x"}), "sqlite"):
        return
    value = "'\"`]*/\n; CREATE TABLE pwned(a); -- \n; CREATE TABLE pwned(a); /*"
    with sqlite3.connect(":memory:", isolation_level=None) as db:
        # the text around may be no SQL at all; statements before an error ran and count
        with contextlib.suppress(sqlite3.Error):
            db.executescript(render(template, {"params": {"x": value}}, "sqlite"))
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [], template


def test_spark_runner_splits_raw_strings_as_spark_lexes_them() -> None:
    """A raw r'...' ends at its first quote: a backslash before it escapes nothing, so the
    value after it is in a literal of its own, not spliced into the raw string."""
    script = render("SELECT r'a\\', '${ params.x }' AS v;\nSELECT 2",
                    {"params": {"x": "'; CREATE TABLE pwned(a); --"}}, "spark_sql")
    assert [text for _, text in spark_sql.statements(script)] == [
        "SELECT r'a\\', '\\'; CREATE TABLE pwned(a); --' AS v", "SELECT 2"]
    assert [text for _, text in spark_sql.statements("SELECT bar'x;'; SELECT R\"\\\";")] == [
        "SELECT bar'x;'", "SELECT R\"\\\""]


@pytest.mark.parametrize("language", ["sqlite", "spark_sql"])
def test_a_string_glued_to_a_word_does_not_take_it_as_a_prefix(language: str) -> None:
    """`r${ v }` must not become Spark's raw string r'...', nor `x${ v }` a hex literal."""
    value = "\\'; CREATE TABLE pwned(a); --"
    script = render("SELECT r${ params.v }, x${ params.v }, t_${ params.n };\nSELECT 2",
                    {"params": {"v": value, "n": 3}}, language)  # type: ignore[arg-type]
    assert "SELECT r '" in script and ", x '" in script and "t_3;" in script
    if language == "spark_sql":
        assert [text for _, text in spark_sql.statements(script)][1:] == ["SELECT 2"]
        return
    with sqlite3.connect(":memory:", isolation_level=None) as db:
        with contextlib.suppress(sqlite3.Error):  # no such column r: the point is what ran
            db.executescript(script)
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []


@PROPERTY
@given(text=st.text(max_size=60), language=st.sampled_from(["shell", "sqlite", "spark_sql"]))
def test_check_and_render_never_crash_on_any_template(text: str, language: str) -> None:
    template = text + "${ params.x }" + text[::-1]
    problems = check(template, frozenset({"x"}), language)  # type: ignore[arg-type]
    try:
        render(template, {"params": {"x": "v"}}, language)  # type: ignore[arg-type]
    except TemplateError:
        assert problems  # what fails to render, check has reported
