"""Checks of one workflow file: structure, names, graph, queues, templates.

Structure errors of one node do not hide the errors of the others: the header and each node
are checked on their own, and the graph checks run over the nodes that passed (the names of
the ones that did not still count as known, so that no false "unknown upstream" appears).
Checks across files (duplicate workflow names, sources on disk) are in `compile.py`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from flowplan.compiler import templating
from flowplan.compiler.diagnostics import (
    Code,
    Diagnostic,
    Severity,
    did_you_mean,
    has_errors,
)
from flowplan.compiler.models import (
    NodeSpec,
    NodeType,
    Param,
    ParamName,
    QueueSpec,
    SettingsSpec,
    WorkflowHeaderSpec,
)
from flowplan.compiler.parsing import Document, Path, place, rewritten_integer
from flowplan.compiler.plan import is_secret_name
from flowplan.compiler.quoting import Language

_EXTENSION_TYPES: dict[str, NodeType] = {".sh": "shell", ".py": "python", ".sql": "sql"}
_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class CheckedNode:
    index: int
    name: str
    type: NodeType
    spec: NodeSpec


@dataclass(slots=True)
class FileCheck:
    """What one workflow file yields: its name and, when structurally valid, its parts.

    The YAML node tree (`document`) is dropped once the file is checked: a cache of a large
    repository would otherwise hold millions of objects for the garbage collector to scan.
    What later checks need of it is kept as facts: where the name is, whether the name is
    what the file says, where each node's `source` is.
    """

    file: str
    document: Document | None
    name: str | None = None
    header: WorkflowHeaderSpec | None = None
    nodes: list[CheckedNode] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    complete: bool = False  # every node passed: the workflow can become a plan
    name_known: bool = False  # the name is the file's `name:` or its stem by default
    name_position: tuple[int, int] = (1, 1)
    source_positions: dict[int, tuple[int, int]] = field(default_factory=dict)

    def seal(self) -> FileCheck:
        """Record the positions later checks need and drop the node tree."""
        doc = self.document
        if doc is not None and isinstance(doc.value, dict):
            # an invalid name (a typo such as `daily sales`) is no surer than an unreadable one
            given = doc.value.get("name", self.name)
            self.name_known = isinstance(given, str) and _is_name(given)
            if "name" in doc.value:
                self.name_position = doc.position(("name",))
            self.source_positions = {n.index: doc.position(("nodes", n.index, "source"))
                                     for n in self.nodes if n.spec.source is not None}
        self.document = None
        return self

    def error(self, path: Path, code: Code, message: str, *, key: bool = False,
              severity: Severity = Severity.ERROR) -> None:
        assert self.document is not None
        line, column = self.document.position(path, key=key)
        self.diagnostics.append(Diagnostic(self.file, line, column, code, message, severity))


def validate_model(model: type[_M], value: Any, doc: Document, prefix: Path,
                   out: list[Diagnostic]) -> _M | None:
    """Validate `value` with `model`; each pydantic error becomes a positioned diagnostic."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            out.append(_to_diagnostic(error, doc, prefix))
        return None


_TYPE_NAMES = {
    "string_type": "a string", "int_type": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "bool_type": "true or false", "list_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "tuple_type": "a list",
}


# Keys of Airflow, Dagu and GitHub Actions files that flowplan spells otherwise
# (docs/coming-from.md), suggested where the spelling alone suggests nothing.
_OTHER_TOOLS: Final = {"depends": "upstream", "depends_on": "upstream", "needs": "upstream",
                       "dependencies": "upstream", "steps": "nodes", "tasks": "nodes",
                       "jobs": "nodes", "schedule_interval": "schedule", "run": "command"}


def _to_diagnostic(error: Any, doc: Document, prefix: Path) -> Diagnostic:
    loc: list[str | int] = [p for p in error["loc"] if p != "[key]"]
    kind: str = error["type"]
    path = (*prefix, *loc)
    shown = loc if prefix == ("settings",) else path  # flowplan.yaml's own key names
    label = ".".join(str(p) for p in shown) or "document"
    if kind == "extra_forbidden":
        parent_model = list(_model_at(prefix, loc))
        hint = did_you_mean(str(loc[-1]), parent_model)
        if not hint and _OTHER_TOOLS.get(str(loc[-1])) in parent_model:
            hint = f" (did you mean '{_OTHER_TOOLS[str(loc[-1])]}'?)"
        message, code, on_key = f"unknown key '{loc[-1]}'{hint}", Code.UNKNOWN_KEY, True
    elif kind == "missing":
        message, code, on_key = f"missing required key '{label}'", Code.MISSING_KEY, False
    elif kind.startswith("FP"):
        message, code, on_key = f"{label}: {error['msg']}", Code(kind), False
    elif kind in _TYPE_NAMES:
        got = _describe(error.get("input"))
        message = f"{label}: expected {_TYPE_NAMES[kind]}, got {got}"
        code, on_key = Code.WRONG_TYPE, False
    elif kind == "literal_error":
        message = f"{label}: {error['msg'].replace('Input should be', 'expected')}"
        if isinstance(error.get("input"), str):
            allowed = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
            message += did_you_mean(error["input"], allowed)
        code, on_key = Code.INVALID_VALUE, False
    elif kind == "too_short" and path == ("nodes",):
        message, code, on_key = "a workflow needs at least one node", Code.EMPTY_WORKFLOW, False
    elif kind in ("too_short", "too_long") and isinstance(error.get("input"), list | dict):
        message, code, on_key = f"{label}: {error['msg'].lower()}", Code.INVALID_VALUE, False
    else:
        message = f"{label}: {error['msg'].replace('Input should be', 'expected')}"
        code, on_key = Code.INVALID_VALUE, False
    if error["loc"] and error["loc"][-1] == "[key]":
        on_key = True
    line, column = doc.position(path, key=on_key)
    return Diagnostic(doc.file, line, column, code, message)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string '{shown}'"
    shown = repr(value)
    return f"{type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def _model_at(prefix: Path, loc: list[str | int]) -> Iterable[str]:
    """The keys allowed at the place of an unknown key, for "did you mean"."""
    from flowplan.compiler import models

    names = [p for p in (*prefix, *loc[:-1]) if isinstance(p, str)]
    tables: dict[tuple[str, ...], type[BaseModel]] = {
        (): models.WorkflowHeaderSpec, ("nodes",): models.NodeSpec,
        ("schedule",): models.ScheduleSpec, ("on_failure",): models.FailureNotifySpec,
        ("nodes", "notify"): models.NotifySpec, ("settings",): models.SettingsSpec,
        ("settings", "defaults"): models.DefaultsSpec, ("settings", "queues"): models.QueueSpec,
    }
    key = tuple(names)
    if prefix == ("settings",) and len(names) >= 3 and names[1] == "queues":
        key = ("settings", "queues")
    return tables.get(key, models.WorkflowHeaderSpec).model_fields.keys()


def check_settings(doc: Document | None) -> tuple[SettingsSpec | None, list[Diagnostic]]:
    """Check `flowplan.yaml` (None: the file does not exist, defaults apply)."""
    if doc is None:
        return SettingsSpec(), []
    diagnostics: list[Diagnostic] = []
    if not isinstance(doc.value, dict):
        line, column = doc.position(())
        return None, [Diagnostic(doc.file, line, column, Code.NOT_A_MAPPING,
                                 "flowplan.yaml must be a mapping with defaults and queues")]
    settings = validate_model(SettingsSpec, doc.value, _SettingsDoc(doc), ("settings",),
                              diagnostics)
    if settings is None:
        return None, diagnostics
    if settings.defaults.queue not in settings.queues:
        line, column = doc.position(("defaults", "queue"))
        diagnostics.append(Diagnostic(
            doc.file, line, column, Code.SETTINGS_UNKNOWN_QUEUE,
            f"defaults.queue '{settings.defaults.queue}' is not a queue of 'queues'"
            + did_you_mean(settings.defaults.queue, settings.queues)))
    for name, queue in settings.queues.items():
        diagnostics += _queue_settings(doc, name, queue)
    return (None if diagnostics else settings), diagnostics


def _queue_settings(doc: Document, name: str, queue: QueueSpec) -> list[Diagnostic]:
    """A queue's spark settings that its model takes but that cannot work: `master` or
    `conf` on a local queue (which ignores them), an empty `master` (it would be dropped:
    spark-submit's default master instead of the one meant), and `conf` keys that
    `--conf key=value` cannot carry (empty, or with a `=`: Spark splits at the first)."""
    found: list[Diagnostic] = []

    def error(path: Path, message: str, *, key: bool) -> None:
        line, column = doc.position(("queues", name, *path), key=key)
        found.append(Diagnostic(doc.file, line, column, Code.INVALID_VALUE,
                                f"queue '{name}': {message}"))

    if queue.executor == "local":
        if queue.master is not None:
            error(("master",), "master applies to spark queues only", key=True)
        if queue.conf:
            error(("conf",), "conf applies to spark queues only", key=True)
        return found
    if queue.master is not None and not queue.master.strip():
        error(("master",), "master is empty: give a master URL such as local[2],"
              " spark://host:7077, yarn or k8s://https://host:6443, or leave master out"
              " for spark-submit's default", key=False)
    for prop in queue.conf:
        if not prop.strip():
            error(("conf", prop), "a conf key is empty: a key is a Spark property's name,"
                  " such as spark.executor.memory", key=True)
        elif "=" in prop:
            error(("conf", prop), f"conf key '{prop}' contains '=', which --conf key=value"
                  " cannot carry: the key is the property's name alone and the value its"
                  " value, such as spark.executor.memory: \"2g\"", key=True)
    return found


class _SettingsDoc(Document):
    """A view of flowplan.yaml whose paths carry a leading "settings" (for key suggestions)."""

    def __init__(self, doc: Document) -> None:
        object.__setattr__(self, "file", doc.file)
        object.__setattr__(self, "value", doc.value)
        object.__setattr__(self, "root", doc.root)

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        return super().position(path[1:] if path[:1] == ("settings",) else path, key=key)


def check_workflow(file: str, doc: Document, settings: SettingsSpec | None) -> FileCheck:
    """Every check of one workflow file that does not need other files."""
    result = FileCheck(file=file, document=doc)
    if not isinstance(doc.value, dict):
        result.error((), Code.NOT_A_MAPPING,
                     "a workflow file must be a mapping with at least 'nodes'")
        return result.seal()
    header = validate_model(WorkflowHeaderSpec, doc.value, doc, (), result.diagnostics)
    result.header = header
    raw_name = doc.value.get("name")
    stem = posixpath.splitext(posixpath.basename(file))[0]
    result.name = raw_name if isinstance(raw_name, str) else stem
    if "name" not in doc.value and not _is_name(stem):
        result.error((), Code.INVALID_NAME,
                     f"file name '{stem}' is not a valid workflow name; set 'name:'")
    raw_nodes = doc.value.get("nodes")
    if not isinstance(raw_nodes, list):
        return result.seal()
    known_names: set[str] = set()
    all_valid = True
    for index, raw in enumerate(raw_nodes):
        node = validate_model(NodeSpec, raw, doc, ("nodes", index), result.diagnostics)
        name = _node_name(raw, node)
        if name is not None:
            known_names.add(name)
        if node is None:
            all_valid = False
            continue
        checked = _check_node(result, index, node)
        if checked is None:
            all_valid = False
        else:
            result.nodes.append(checked)
    if header is not None:
        _check_tags(result, header.tags, ())
    for checked in result.nodes:
        here = ("nodes", checked.index)
        _check_tags(result, checked.spec.tags, here)
        _check_numbers_as_text(result, (*here, "env"), checked.spec.env)
        _check_numbers_as_text(result, (*here, "args"), range(len(checked.spec.args)))
    _check_unique_nodes(result)
    _check_graph(result, known_names)
    if settings is not None:
        _check_queues(result, header, settings)
    if header is not None:
        _check_schedule(result, header)
    _check_templates(result, frozenset(header.params) if header is not None
                     else _params_alone(doc.value))
    result.complete = all_valid and header is not None and not has_errors(result.diagnostics)
    return result.seal()


def _is_name(value: str) -> bool:
    from flowplan.compiler.values import NAME_RE

    return bool(NAME_RE.fullmatch(value))


def _node_name(raw: Any, node: NodeSpec | None) -> str | None:
    if node is not None:
        if node.name is not None:
            return node.name
        if node.source is not None:
            return posixpath.splitext(posixpath.basename(node.source))[0]
        return None
    if isinstance(raw, dict):
        raw_name, raw_source = raw.get("name"), raw.get("source")
        if isinstance(raw_name, str):
            return raw_name
        if isinstance(raw_source, str):
            return posixpath.splitext(posixpath.basename(raw_source))[0]
    return None


def _check_node(result: FileCheck, index: int, node: NodeSpec) -> CheckedNode | None:
    here: Path = ("nodes", index)
    errors_before = len(result.diagnostics)
    if (node.source is None) == (node.command is None):
        which = "both" if node.source is not None else "neither"
        result.error(here, Code.SOURCE_AND_COMMAND,
                     f"node has {which} of 'source' and 'command'; give exactly one")
        return None
    if node.command is not None:
        if node.type not in (None, "shell"):
            result.error((*here, "type"), Code.INVALID_VALUE,
                         f"a 'command' node runs in the shell; type '{node.type}' needs 'source'")
        if node.args:
            result.error((*here, "args"), Code.ARGS_WITH_COMMAND,
                         "'args' apply to 'source' nodes; write them into 'command'")
        node_type: NodeType | None = "shell"
    else:
        assert node.source is not None
        extension = posixpath.splitext(node.source)[1].lower()
        inferred = _EXTENSION_TYPES.get(extension)
        node_type = node.type or inferred
        if node_type is None:
            result.error((*here, "source"), Code.UNKNOWN_TYPE,
                         f"cannot infer the node type from '{extension or node.source}';"
                         " set type: shell, python or sql")
    name = _node_name(None, node)
    if name is None:
        result.error(here, Code.MISSING_KEY, "a 'command' node needs a 'name'")
    elif not _is_name(name):
        result.error((*here, "source"), Code.INVALID_NAME,
                     f"node name '{name}' from the source's file name is not a valid name;"
                     " set 'name:'")
    if len(result.diagnostics) > errors_before or name is None or node_type is None:
        return None
    return CheckedNode(index=index, name=name, type=node_type, spec=node)


RESERVED_TAGS = ("workflow_name", "task_name")  # set on every node by the compiler


def _check_numbers_as_text(result: FileCheck, here: Path, keys: Iterable[str | int]) -> None:
    """A warning for each value under `here` written as an integer that text will not keep
    as written: a ZIP code `01234` is the text `1234`."""
    assert result.document is not None
    for key in keys:
        path = (*here, key)
        node = result.document.node_at(path)
        decimal = rewritten_integer(node)
        if decimal is not None and node is not None:
            written = node.value
            where = f"{here[-1]}[{key}]" if isinstance(key, int) else f"{here[-1]}.{key}"
            result.error(path, Code.NUMBER_AS_TEXT,
                         f"{where}: {written} is read as the number"
                         f" {decimal}, so the text is '{decimal}'; quote it (\"{written}\")"
                         " to keep it as written", severity=Severity.WARNING)


def _check_tags(result: FileCheck, tags: Mapping[str, str], here: Path) -> None:
    _check_numbers_as_text(result, (*here, "tags"), tags)
    for key in RESERVED_TAGS:
        if key in tags:
            result.error((*here, "tags", key), Code.RESERVED_TAG,
                         f"tag '{key}' is set by flowplan on every node (workflow_name: the"
                         " workflow's name, task_name: the node's); use another key",
                         key=True)


def _check_unique_nodes(result: FileCheck) -> None:
    first: dict[str, CheckedNode] = {}
    for node in result.nodes:
        if node.name in first:
            other = first[node.name]
            line_a, _ = _node_position(result, other)
            line_b, _ = _node_position(result, node)
            result.error(_name_path(other), Code.DUPLICATE_NODE,
                         f"duplicate node name '{node.name}' (also at line {line_b})")
            result.error(_name_path(node), Code.DUPLICATE_NODE,
                         f"duplicate node name '{node.name}' (first at line {line_a})")
        else:
            first[node.name] = node


def _name_path(node: CheckedNode) -> Path:
    key = "name" if node.spec.name is not None else "source"
    return ("nodes", node.index, key)


def _node_position(result: FileCheck, node: CheckedNode) -> tuple[int, int]:
    assert result.document is not None
    return result.document.position(_name_path(node))


def _check_graph(result: FileCheck, known_names: set[str]) -> None:
    by_name = {n.name: n for n in result.nodes}
    for node in result.nodes:
        for position, upstream in enumerate(node.spec.upstream):
            path: Path = ("nodes", node.index, "upstream", position)
            if upstream == node.name:
                result.error(path, Code.SELF_DEPENDENCY,
                             f"node '{node.name}' lists itself as upstream")
            elif upstream not in known_names:
                result.error(path, Code.UNKNOWN_UPSTREAM,
                             f"upstream '{upstream}' is not a node of this workflow"
                             + did_you_mean(upstream, known_names))
    for cycle in find_cycles({n.name: [u for u in n.spec.upstream if u in by_name and u != n.name]
                              for n in result.nodes}):
        start = by_name[cycle[0]]
        index = start.spec.upstream.index(cycle[1])
        result.error(("nodes", start.index, "upstream", index), Code.CYCLE,
                     "cycle: " + " -> ".join(reversed(cycle)))


def find_cycles(upstreams: Mapping[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component, as [n0, n1, ..., n0] along upstream edges.

    Iterative Tarjan, in declaration order, so that the reported path is deterministic.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in upstreams:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            edges = upstreams.get(node, [])
            if child < len(edges):
                work.append((node, child + 1))
                nxt = edges[child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(_cycle_path(set(component), upstreams, node))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return cycles


def _cycle_path(component: set[str], upstreams: Mapping[str, list[str]], start: str) -> list[str]:
    """A simple cycle through `start` inside one strongly connected component (BFS)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for up in upstreams.get(node, []):
                if up not in component:
                    continue
                if up == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    path.reverse()
                    return [*path, start]
                if up not in previous:
                    previous[up] = node
                    nxt_frontier.append(up)
        frontier = nxt_frontier
    return [start, start]  # pragma: no cover - a component always has a cycle


def _check_queues(result: FileCheck, header: WorkflowHeaderSpec | None,
                  settings: SettingsSpec) -> None:
    queues = settings.queues
    if header is not None and header.queue is not None and header.queue not in queues:
        result.error(("queue",), Code.UNKNOWN_QUEUE,
                     f"queue '{header.queue}' is not defined in flowplan.yaml"
                     + did_you_mean(header.queue, queues))
    workflow_queue = (header.queue if header and header.queue in queues
                      else settings.defaults.queue)
    for node in result.nodes:
        queue_name = node.spec.queue
        if queue_name is not None and queue_name not in queues:
            result.error(("nodes", node.index, "queue"), Code.UNKNOWN_QUEUE,
                         f"queue '{queue_name}' is not defined in flowplan.yaml"
                         + did_you_mean(queue_name, queues))
            continue
        queue: QueueSpec | None = queues.get(queue_name or workflow_queue)
        if queue is not None and queue.executor == "spark" and node.type == "shell":
            path: Path = ("nodes", node.index, "queue" if queue_name else "source")
            result.error(path, Code.INVALID_VALUE,
                         f"queue '{queue_name or workflow_queue}' runs on Spark, which runs"
                         " python and sql nodes; put this shell node on a local queue")


def _check_schedule(result: FileCheck, header: WorkflowHeaderSpec) -> None:
    schedule = header.schedule
    if schedule is None:
        return
    here: Path = ("schedule",)
    if (schedule.every is None) == (schedule.cron is None):
        result.error(here, Code.SCHEDULE_SHAPE,
                     "schedule needs exactly one of 'every' and 'cron'")
        return
    if schedule.cron is not None:
        for key in ("at", "window"):
            if getattr(schedule, key) is not None:
                result.error((*here, key), Code.SCHEDULE_SHAPE,
                             f"'{key}' does not apply to a cron schedule")
    elif schedule.every == "day":
        if schedule.window is not None:
            result.error((*here, "window"), Code.SCHEDULE_SHAPE,
                         "'window' applies to every: <N>h or <N>m; use 'at' for every: day")
    elif schedule.at is not None:
        result.error((*here, "at"), Code.SCHEDULE_SHAPE,
                     "'at' applies to every: day; use 'window' for every: <N>h or <N>m")


_PARAMS: Final = TypeAdapter(dict[ParamName, Param])


def _params_alone(workflow: Mapping[str, Any]) -> frozenset[str] | None:
    """The workflow's param names when its header is invalid for another reason (a bad
    `retries`), so that `params.*` is still checked in the same pass; None when the params
    are invalid too (reported with the header)."""
    try:
        return frozenset(_PARAMS.validate_python(workflow.get("params", {})))
    except ValidationError:
        return None


def _check_templates(result: FileCheck, params: frozenset[str] | None) -> None:
    """Every node's templates, `params.*` against the workflow's `params` (None: unknown,
    not checked)."""
    for node in result.nodes:
        spec = node.spec
        fields: list[tuple[Path, str, Language]] = [
            (("nodes", node.index, "args", i), arg, "text") for i, arg in enumerate(spec.args)]
        if spec.command is not None:
            fields.append((("nodes", node.index, "command"), spec.command, "shell"))
        fields += [(("nodes", node.index, "env", key), value, "text")
                   for key, value in spec.env.items()]
        for path, template, language in fields:
            if "\0" in template:
                result.error(path, Code.INVALID_VALUE,
                             f"{'.'.join(map(str, path))}: contains a NUL character, which no"
                             " process argument or environment can hold")
            for problem in templating.check(template, params, language):
                assert result.document is not None
                line, column = _template_position(result.document, path, template,
                                                  problem.offset)
                result.diagnostics.append(Diagnostic(result.file, line, column, problem.code,
                                                     problem.message, problem.severity))
            for problem in templating.braces(template):  # at the value: quoting moves it
                assert result.document is not None
                line, column = result.document.position(path)
                result.diagnostics.append(Diagnostic(result.file, line, column, problem.code,
                                                     problem.message, problem.severity))
        for key, value in spec.env.items():
            if not is_secret_name(key):
                continue
            # the one param it reads holds the secret (of several, none is sure to)
            read = templating.params_read(value) & (params or frozenset())
            for name in read if len(read) == 1 else ():
                if not is_secret_name(name):
                    result.error(
                        ("nodes", node.index, "env", key), Code.SECRET_PARAM_NAME,
                        f"env {key} is a secret, but params.{name}, which it reads, is not"
                        " named as one: its value shows in clear in `flowplan status`, the"
                        " console and API answers (logs mask it); put SECRET, TOKEN,"
                        f" PASSWORD or KEY in the param's name, e.g. {name}_key",
                        severity=Severity.WARNING)


def sql_language(node: NodeSpec, header: WorkflowHeaderSpec | None,
                 settings: SettingsSpec | None) -> Language:
    """The SQL dialect a `.sql` node's source is rendered for: its queue's executor."""
    if settings is None:
        return "sqlite"
    name = node.queue or (header.queue if header is not None else None) or settings.defaults.queue
    queue = settings.queues.get(name) if name is not None else None
    return "spark_sql" if queue is not None and queue.executor == "spark" else "sqlite"


_TEMPLATE_START = re.compile(r"(?<!\$)\$\{")


def _template_position(doc: Document, path: Path, value: str, offset: int) -> tuple[int, int]:
    """Line and column in the file of the `${` at `offset` in a scalar's value.

    Quotes, escapes, block and folded styles move text around, but not the order of the
    `${` starts: the n-th one in the value is the n-th unescaped one in the scalar's source.
    """
    node = doc.node_at(path)
    if node is None or not doc.text:
        return doc.position(path)
    starts = [m.start() for m in _TEMPLATE_START.finditer(value)]
    raw = doc.text[node.start_mark.index:node.end_mark.index]
    raw_starts = [m.start() for m in _TEMPLATE_START.finditer(raw)]
    if offset not in starts or len(starts) != len(raw_starts):  # `\u0024{` makes a `${`
        return doc.position(path)
    return place(doc.text, node.start_mark.index + raw_starts[starts.index(offset)])
