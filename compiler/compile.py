"""`compile_repo`: a repository snapshot in, plans and diagnostics out.

Stages: parse YAML (parsing.py) -> check each file (validate.py) -> checks across files and
of job sources (here) -> resolve into plans (resolve.py, plan.py). Per-file work is cached by
content hash in an optional `CompileCache`, so a re-check after one change redoes one file.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import multiprocessing
import posixpath
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from flowplan.compiler import __version__, templating
from flowplan.compiler.diagnostics import Code, Diagnostic, Severity, has_errors
from flowplan.compiler.models import SettingsSpec
from flowplan.compiler.parsing import parse_yaml, place
from flowplan.compiler.plan import Plan, SourcePlan, make_plan
from flowplan.compiler.quoting import Language
from flowplan.compiler.repo import (
    MAX_EMBEDDED_BYTES,
    SETTINGS_FILE,
    RepoSnapshot,
    SourceProblem,
)
from flowplan.compiler.resolve import resolve_workflow, source_plan
from flowplan.compiler.validate import FileCheck, check_settings, check_workflow, sql_language


@dataclass(frozen=True, slots=True)
class CompileResult:
    """Plans of the valid workflows, every diagnostic, and the names that failed."""

    plans: tuple[Plan, ...]
    diagnostics: tuple[Diagnostic, ...]
    failed: tuple[str, ...]
    workflow_files: int
    uncertain_files: tuple[str, ...] = ()  # files whose workflow name could not be read


    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)

    def plan(self, name: str) -> Plan:
        for plan in self.plans:
            if plan.workflow == name:
                return plan
        raise KeyError(name)


@dataclass(slots=True)
class CompileCache:
    """Per-file results keyed by content hash; keep one per long-lived process."""

    checks: dict[tuple[str, str, str], FileCheck] = field(default_factory=dict)
    plans: dict[tuple[object, ...], Plan] = field(default_factory=dict)

    def prune(self, live_checks: set[tuple[str, str, str]]) -> None:
        for key in self.checks.keys() - live_checks:
            del self.checks[key]
        for plan_key in [k for k in self.plans if k[0] not in live_checks]:
            del self.plans[plan_key]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def compile_repo(repo: RepoSnapshot, *, cache: CompileCache | None = None,
                 plans: bool = True, workers: int = 1) -> CompileResult:
    """Check every workflow of `repo`; with `plans`, resolve the valid ones into plans.

    With `workers` > 1 and without `plans` (a check), files not in the cache are checked in
    that many forked processes when there are enough to pay for it; they send back names,
    positions and diagnostics only (moving pydantic models between processes costs more
    than parsing). Only a single-threaded process may ask for workers (fork copies one
    thread): the one-shot CLI does, a daemon does not.
    """
    cache = cache if cache is not None else CompileCache()
    diagnostics: list[Diagnostic] = []
    settings, settings_key = _settings(repo.settings, diagnostics,
                                       unreadable=SETTINGS_FILE in repo.unreadable)
    sources = _SourceCache(repo)

    keys = {path: (path, _sha(data), settings_key) for path, data in repo.workflows.items()}
    missing = [(path, data) for path, data in repo.workflows.items()
               if keys[path] not in cache.checks]
    checks: dict[str, FileCheck] = {}
    if not plans and workers > 1 and len(missing) >= PARALLEL_MIN_FILES:
        checks.update((c.file, c) for c in _check_in_workers(missing, repo, settings, workers))
    else:
        for path, data in missing:
            cache.checks[keys[path]] = _check_file(path, data, settings)
    for path, key in keys.items():
        checks.setdefault(path, cache.checks.get(key))  # type: ignore[arg-type]
    for check in checks.values():
        diagnostics.extend(check.diagnostics)
    for path, reason in repo.unreadable.items():
        kind = "settings" if path == SETTINGS_FILE else "workflow"
        diagnostics.append(Diagnostic(path, 1, 1, Code.UNREADABLE_FILE,
                                      f"cannot read the {kind} file: {reason}"))

    invalid_files = _check_duplicate_names(checks, diagnostics)
    for path, check in checks.items():
        if _check_sources(check, sources, settings, diagnostics):
            invalid_files.add(path)

    built: list[Plan] = []
    failed: set[str] = set()
    for path, check in checks.items():
        valid = (check.complete and path not in invalid_files and settings is not None
                 and check.name is not None)
        if not valid:
            if check.name is not None:
                failed.add(check.name)
            continue
        if plans:
            built.append(_plan(check, keys[path], settings, sources, cache))  # type: ignore[arg-type]
    cache.prune(set(keys.values()))
    failed -= {plan.workflow for plan in built}
    return CompileResult(
        plans=tuple(sorted(built, key=lambda p: p.workflow)),
        diagnostics=tuple(sorted(diagnostics)),
        failed=tuple(sorted(failed)),
        workflow_files=len(repo.workflows),
        # no tombstones while a name is a guess: a syntax error in a renamed workflow must
        # not remove the workflow it really names
        uncertain_files=(*(path for path, check in checks.items() if not check.name_known),
                         *repo.unreadable),
    )


def _settings(data: bytes | None, out: list[Diagnostic], *, unreadable: bool = False
              ) -> tuple[SettingsSpec | None, str]:
    if unreadable:  # its FP012 comes with the unreadable workflow files; nothing publishes
        return None, "unreadable"
    if data is None:
        return SettingsSpec(), ""
    parsed = parse_yaml(data, SETTINGS_FILE)
    if isinstance(parsed, list):
        out.extend(parsed)
        return None, _sha(data)
    settings, problems = check_settings(parsed)
    out.extend(problems)
    return settings, _sha(data)


PARALLEL_MIN_FILES = 64  # below this, starting workers costs more than it saves


def _check_in_workers(items: list[tuple[str, bytes]], repo: RepoSnapshot,
                      settings: SettingsSpec | None, workers: int) -> list[FileCheck]:
    chunks = [items[i::workers] for i in range(workers)]
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        parts = list(pool.map(_check_chunk, chunks, [repo] * workers, [settings] * workers))
    return [check for part in parts for check in part]


def _check_chunk(items: list[tuple[str, bytes]], repo: RepoSnapshot,
                 settings: SettingsSpec | None) -> list[FileCheck]:
    """A worker's share: each file checked with its sources, then stripped to what a
    check reports (no models: the parent resolves nothing)."""
    sources = _SourceCache(repo)
    checks = []
    for path, data in items:
        check = _check_file(path, data, settings)
        if _check_sources(check, sources, settings, check.diagnostics):
            check.complete = False
        check.header, check.nodes = None, []
        checks.append(check)
    return checks


def _check_file(path: str, data: bytes, settings: SettingsSpec | None) -> FileCheck:
    parsed = parse_yaml(data, path)
    if isinstance(parsed, list):
        stem = posixpath.splitext(posixpath.basename(path))[0]
        return FileCheck(file=path, document=None, name=stem, diagnostics=parsed)
    return check_workflow(path, parsed, settings)


def _check_duplicate_names(checks: Mapping[str, FileCheck], out: list[Diagnostic]) -> set[str]:
    """Two files with one workflow name: an error at both places. Returns the files."""
    by_name: dict[str, list[FileCheck]] = defaultdict(list)
    for check in checks.values():
        if check.name is not None and check.name_known:  # a guessed name clashes with nobody
            by_name[check.name].append(check)
    invalid: set[str] = set()
    for name, group in by_name.items():
        if len(group) < 2:
            continue
        places = [(c, *c.name_position) for c in group]
        for check, line, column in places:
            others = ", ".join(f"{o.file}:{o_line}" for o, o_line, _ in places if o is not check)
            out.append(Diagnostic(check.file, line, column, Code.DUPLICATE_WORKFLOW,
                                  f"workflow name '{name}' is also used by {others}"))
            invalid.add(check.file)
    return invalid


@dataclass(slots=True)
class _SourceCache:
    """Each source read once per compile; its embedded form built once."""

    repo: RepoSnapshot
    read: dict[str, bytes | SourceProblem] = field(default_factory=dict)
    embedded: dict[str, SourcePlan] = field(default_factory=dict)

    def get(self, path: str) -> bytes | SourceProblem:
        if path not in self.read:
            data = self.repo.sources.read(path)
            if isinstance(data, bytes):
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError:
                    data = SourceProblem(Code.SOURCE_NOT_TEXT,
                                         f"source '{path}' is not UTF-8 text")
                else:
                    if is_lfs_pointer(data):
                        data = SourceProblem(
                            Code.SOURCE_LFS_POINTER,
                            f"source '{path}' is a Git LFS pointer, not the file it stands"
                            " for: flowplan reads sources from the commit's objects, where"
                            " Git LFS keeps only the pointer; commit the source itself, not"
                            " through Git LFS (no `filter=lfs` for it in .gitattributes)")
            self.read[path] = data
        return self.read[path]

    def sql_problems(self, path: str, params: frozenset[str] | None,
                     language: Language) -> tuple[templating.TemplateProblem, ...]:
        data = self.read[path]
        assert isinstance(data, bytes)
        return templating.check(data.decode("utf-8"), params, language)

    def plan(self, path: str) -> SourcePlan:
        if path not in self.embedded:
            data = self.read[path]
            assert isinstance(data, bytes)
            self.embedded[path] = source_plan(path, data)
        return self.embedded[path]


# https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md: `key value` lines, `version`
# first, `oid` and `size` among them (keys sorted; extensions and unknown keys allowed);
# under 1024 bytes. CRLF lines too: a working tree may have them.
_LFS_POINTER: Final = re.compile(
    rb"version https://git-lfs\.github\.com/spec/v1\r?\n(?:[a-z0-9.-]+ [^\r\n]*(?:\r?\n|\Z))+")
_LFS_OID: Final = re.compile(rb"^oid sha256:[0-9a-f]{64}\r?$", re.MULTILINE)
_LFS_SIZE: Final = re.compile(rb"^size [0-9]+\r?$", re.MULTILINE)


def is_lfs_pointer(data: bytes) -> bool:
    """Whether `data` is a Git LFS pointer file (what is committed in place of the file)."""
    return (len(data) < 1024 and _LFS_POINTER.fullmatch(data) is not None
            and _LFS_OID.search(data) is not None and _LFS_SIZE.search(data) is not None)


def _check_sources(check: FileCheck, sources: _SourceCache, settings: SettingsSpec | None,
                   out: list[Diagnostic]) -> bool:
    """Diagnostics for each node's source, and templates in `.sql` sources (rendered for
    their queue's SQL dialect). True if any is an error."""
    found = False
    params = frozenset(check.header.params) if check.header is not None else None
    embedded = 0
    for node in check.nodes:
        path = node.spec.source
        if path is None:
            continue
        data = sources.get(path)
        if isinstance(data, SourceProblem):
            line, column = check.source_positions[node.index]
            out.append(Diagnostic(check.file, line, column, data.code,
                                  data.message + _beside_hint(data, path, check.file, sources)))
            found = True
            continue
        embedded += len(data)
        if embedded > MAX_EMBEDDED_BYTES and not found:
            line, column = check.source_positions[node.index]
            out.append(Diagnostic(
                check.file, line, column, Code.SOURCE_NOT_TEXT,
                f"node '{node.name}' brings the sources this workflow embeds to {embedded}"
                f" bytes; at most {MAX_EMBEDDED_BYTES} are embedded in a plan (each node that"
                " names a source carries a copy): split the workflow, or make the sources"
                " smaller"))
            found = True
        if node.type == "sql":
            language = sql_language(node.spec, check.header, settings)
            for problem in (*sources.sql_problems(path, params, language),
                            *templating.braces(data.decode("utf-8"))):
                line, column = _offset_position(data, problem.offset)
                out.append(Diagnostic(path, line, column, problem.code,
                                      f"{problem.message} (in node '{node.name}' of"
                                      f" {check.file})", problem.severity))
                found = found or problem.severity is Severity.ERROR
    return found


def _beside_hint(problem: SourceProblem, path: str, file: str, sources: _SourceCache) -> str:
    """For a missing source that exists beside the workflow file: the path to write."""
    if problem.code is not Code.SOURCE_MISSING or path.startswith("/"):
        return ""
    beside = posixpath.normpath(posixpath.join(posixpath.dirname(file), path))
    if beside == path or beside.startswith("../") or not isinstance(sources.get(beside), bytes):
        return ""
    return (f"; source paths are from the repository root, not from {file}'s folder: did"
            f" you mean '{beside}'?")


def _offset_position(data: bytes, offset: int) -> tuple[int, int]:
    return place(data.decode("utf-8"), offset)


def _plan(check: FileCheck, key: tuple[str, str, str], settings: SettingsSpec,
          sources: _SourceCache, cache: CompileCache) -> Plan:
    assert check.header is not None and check.name is not None
    embedded = {n.spec.source: sources.plan(n.spec.source)
                for n in check.nodes if n.spec.source is not None}
    plan_key = (key, tuple(sorted((p, s.sha256) for p, s in embedded.items())))
    plan = cache.plans.get(plan_key)
    if plan is None:
        content = resolve_workflow(file=check.file, name=check.name, header=check.header,
                                   nodes=check.nodes, settings=settings, sources=embedded)
        plan = make_plan(content, compiler_version=__version__)
        cache.plans[plan_key] = plan
    return plan

