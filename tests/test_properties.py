"""Property tests of compile_repo: hostile or mutated input yields diagnostics, never an
exception, and compiling is deterministic."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from golden import case_dirs, materialize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowplan.compiler.compile import CompileCache, CompileResult, compile_repo
from flowplan.compiler.diagnostics import Code
from flowplan.compiler.plan import parse_plan
from flowplan.compiler.repo import MemorySources, RepoSnapshot, read_repo

PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

SETTINGS: dict[str, Any] = {
    "defaults": {"queue": "default", "timezone": "UTC", "retries": 1},
    "queues": {"default": {"executor": "local", "concurrency": 2},
               "heavy": {"executor": "local", "concurrency": 1},
               "spark": {"executor": "spark", "concurrency": 1, "master": "local[1]"}},
}
WORKFLOW: dict[str, Any] = {
    "name": "base",
    "description": "a workflow that uses most keys",
    "queue": "default",
    "retries": 2,
    "retry_delay": "30s",
    "retry_backoff": 2.0,
    "timeout": "1h",
    "tags": {"team": "data"},
    "on_failure": {"email": ["ops@example.com"]},
    "max_active_runs": 1,
    "params": {"region": "eu", "limit": 10},
    "schedule": {"every": "2h", "window": ["08:00", "20:00"], "timezone": "Europe/Amsterdam",
                 "start": "2026-01-01T00:00:00", "enabled": True, "catchup": "latest"},
    "nodes": [
        {"source": "jobs/a.py", "args": ["--day", "${ds}"]},
        {"name": "b", "source": "jobs/b.sql", "upstream": ["a"], "queue": "spark",
         "retries": 0, "tags": {"owner": "ana"}},
        {"name": "c", "command": "echo ${params.region}", "upstream": ["a", "b"],
         "env": {"DAY": "${ds_nodash}"}, "trigger": "all_done", "timeout": "none",
         "notify": {"email": ["ana@example.com"], "on": ["failed", "succeeded"]}},
    ],
}
SOURCES = {"jobs/a.py": b"print('a')\n", "jobs/b.sql": b"select '${ ds }', '${ params.limit }'\n"}
FILES = {"flowplan.yaml", "workflows/base.yaml", *SOURCES}


def dump(value: Any) -> bytes:
    """YAML text of `value` (PyYAML writes YAML 1.1: some plain strings, such as `0e0`, read
    back in YAML 1.2 as other types; that is part of what the mutation tests try)."""
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True).encode()


class _QuotingDumper(yaml.SafeDumper):
    """Writes every string double-quoted, so that it reads back as the same string."""


_QuotingDumper.add_representer(
    str, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value,
                                                       style='"'))


def dump_exact(value: Any) -> bytes:
    return yaml.dump(value, Dumper=_QuotingDumper, sort_keys=False,
                     allow_unicode=True).encode()


def snapshot(workflow: bytes, settings_data: bytes | None = None,
             sources: dict[str, bytes] | None = None) -> RepoSnapshot:
    return RepoSnapshot(settings=dump(SETTINGS) if settings_data is None else settings_data,
                        workflows={"workflows/base.yaml": workflow},
                        sources=MemorySources(SOURCES if sources is None else sources))


def check_diagnostics(result: CompileResult, files: dict[str, bytes]) -> None:
    """Every diagnostic is well-formed: a known file, a place inside it, a known code."""
    for diagnostic in result.diagnostics:
        assert diagnostic.file in FILES
        assert isinstance(diagnostic.code, Code)
        assert diagnostic.line >= 1 and diagnostic.column >= 1
        data = files.get(diagnostic.file)
        if data is not None:
            assert diagnostic.line <= data.count(b"\n") + 2, diagnostic
        assert str(diagnostic).startswith(
            f"{diagnostic.file}:{diagnostic.line}:{diagnostic.column}: {diagnostic.code.value} ")
    assert result.ok == (not result.diagnostics)
    assert not {p.workflow for p in result.plans} & set(result.failed)
    if result.ok:
        assert len(result.plans) == 1


def test_the_base_workflow_is_valid() -> None:
    result = compile_repo(snapshot(dump(WORKFLOW)))
    assert result.diagnostics == () and [p.workflow for p in result.plans] == ["base"]


# --- (a) random text and bytes ---------------------------------------------------------

YAML_PIECES = [*"ab01 :-[]{}&*!|>'\"#%@`,?\n\t\\~.$\u00e9\x07\x00\ufeff", "${", "}", "nodes",
               "name", "\n  - ", ": ", "&a ", "*a", "!!str ", "---\n"]
YAMLISH = st.lists(st.sampled_from(YAML_PIECES), max_size=200).map("".join)
RANDOM_DATA = st.one_of(st.binary(max_size=2000), st.text(max_size=1000).map(str.encode),
                        YAMLISH.map(str.encode))


@PROPERTY
@given(data=RANDOM_DATA, where=st.sampled_from(["workflow", "settings", "source"]))
def test_random_input_never_raises(data: bytes, where: str) -> None:
    base = dump(WORKFLOW)
    if where == "workflow":
        repo, files = snapshot(data), {"workflows/base.yaml": data}
    elif where == "settings":
        repo, files = snapshot(base, settings_data=data), {"flowplan.yaml": data}
    else:
        repo = snapshot(base, sources={**SOURCES, "jobs/b.sql": data})
        files = {"jobs/b.sql": data}
    check_diagnostics(compile_repo(repo), files)


@PROPERTY
@given(text=st.one_of(st.text(max_size=300), YAMLISH))
def test_random_templates_never_raise(text: str) -> None:
    workflow = copy.deepcopy(WORKFLOW)
    workflow["nodes"][2]["command"] = text
    workflow["nodes"][2]["env"]["RANDOM"] = text
    workflow["nodes"][0]["args"].append(text)
    data = dump(workflow)
    check_diagnostics(compile_repo(snapshot(data)), {"workflows/base.yaml": data})


# --- (b) mutations of a valid workflow -------------------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                    st.text(max_size=20), st.sampled_from(
                        ["on", "yes", "02:00", "0x1F", "1e3", "none", "day", "2h", "../x.py",
                         "/etc/passwd", "jobs/a.py", "jobs", "a", "b", "c", "heavy", "spark",
                         "${ds}", "${nope}", "${", "a@b.c", "UTC", "Mars/Base", "0 2 * * *"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)
KEYS = st.one_of(st.text(max_size=12), st.sampled_from(
    ["name", "nodes", "source", "command", "upstream", "queue", "schedule", "every", "cron",
     "at", "window", "timeout", "retries", "tags", "notify", "email", "on", "params", "env"]))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


def _mutate(draw: Any, document: Any) -> Any:
    """One mutation: delete a key, change a value's type, rename a key, duplicate a node,
    insert a random scalar. Returns the new document (the root itself may change)."""
    paths = _paths(document)
    inner = [p for p in paths if p]
    operation = draw(st.sampled_from(["delete", "retype", "rename", "duplicate", "insert"]))
    if operation == "duplicate" and isinstance(document, dict) and isinstance(
            document.get("nodes"), list) and document["nodes"]:
        nodes = document["nodes"]
        node = copy.deepcopy(draw(st.sampled_from(nodes)))
        nodes.insert(draw(st.integers(0, len(nodes))), node)
        return document
    if operation == "insert":
        containers = [p for p in paths if isinstance(_get(document, p), dict | list)]
        if containers:
            target = _get(document, draw(st.sampled_from(containers)))
            scalar = draw(SCALARS)
            if isinstance(target, dict):
                target[draw(KEYS)] = scalar
            else:
                target.insert(draw(st.integers(0, len(target))), scalar)
        return document
    if not inner:
        return draw(VALUES)
    path = draw(st.sampled_from(inner))
    parent, last = _get(document, path[:-1]), path[-1]
    if operation == "delete":
        del parent[last]
    elif operation == "retype":
        parent[last] = draw(VALUES)
    elif operation == "rename" and isinstance(parent, dict):
        parent[draw(KEYS)] = parent.pop(last)
    return document


@st.composite
def mutated(draw: Any, base: dict[str, Any]) -> Any:
    document = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        document = _mutate(draw, document)
    return document


@PROPERTY
@given(document=mutated(WORKFLOW))
def test_mutated_workflow_never_raises(document: Any) -> None:
    data = dump(document)
    result = compile_repo(snapshot(data))
    check_diagnostics(result, {"workflows/base.yaml": data})


@PROPERTY
@given(document=mutated(SETTINGS))
def test_mutated_settings_never_raise(document: Any) -> None:
    data = dump(document)
    result = compile_repo(snapshot(dump(WORKFLOW), settings_data=data))
    check_diagnostics(result, {"flowplan.yaml": data})


@PROPERTY
@given(position=st.integers(0, 10_000), junk=st.text(min_size=1, max_size=5))
def test_text_edits_of_a_valid_workflow_never_raise(position: int, junk: str) -> None:
    text = dump(WORKFLOW).decode()
    position %= len(text) + 1
    data = (text[:position] + junk + text[position:]).encode()
    check_diagnostics(compile_repo(snapshot(data)), {"workflows/base.yaml": data})


# --- (c) determinism ---------------------------------------------------------------------

def _plans(result: CompileResult) -> list[tuple[str, str, str]]:
    return [(p.workflow, p.digest, p.to_json()) for p in result.plans]


@pytest.mark.parametrize("case", case_dirs("valid"), ids=lambda p: p.name)
def test_golden_repositories_compile_identically_twice(case: Path, tmp_path: Path) -> None:
    root = materialize(case, tmp_path)
    first, second = compile_repo(read_repo(root)), compile_repo(read_repo(root))
    cache = CompileCache()
    cached = [compile_repo(read_repo(root), cache=cache) for _ in range(2)]
    assert first.plans and _plans(first) == _plans(second) == _plans(cached[0]) == _plans(
        cached[1])
    for plan in first.plans:
        assert parse_plan(plan.to_json(), origin="test").digest == plan.digest


@PROPERTY
@given(params=st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
                              st.recursive(st.none() | st.booleans() | st.integers()
                                           | st.floats(allow_nan=False, allow_infinity=False)
                                           | st.text(max_size=8),
                                           lambda x: st.lists(x, max_size=3)
                                           | st.dictionaries(st.text(max_size=5), x,
                                                             max_size=3),
                                           max_leaves=5), max_size=4),
       tags=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
       reverse=st.booleans())
def test_compiling_twice_gives_identical_plans(params: dict[str, Any], tags: dict[str, str],
                                               reverse: bool) -> None:
    workflow = copy.deepcopy(WORKFLOW)
    workflow["params"] = {**params, "region": "eu", "limit": 10}
    workflow["tags"] = tags
    other = copy.deepcopy(WORKFLOW)
    other["name"] = "other"
    files = {"workflows/base.yaml": dump_exact(workflow),
             "workflows/other.yaml": dump_exact(other)}

    def repo(order: list[str]) -> RepoSnapshot:
        return RepoSnapshot(settings=dump_exact(SETTINGS),
                            workflows={k: files[k] for k in order},
                            sources=MemorySources(dict(SOURCES)))

    order = sorted(files, reverse=reverse)
    first, second = compile_repo(repo(order)), compile_repo(repo(sorted(files)))
    assert first.ok, first.diagnostics
    assert _plans(first) == _plans(second)
    assert [p.workflow for p in first.plans] == ["base", "other"]
    for plan in first.plans:
        assert parse_plan(plan.to_json(), origin="test").digest == plan.digest
