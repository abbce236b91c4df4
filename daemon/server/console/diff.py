"""What changed between two plan versions of a workflow, in words a data engineer reads at a
glance: the workflow's own fields, nodes added, removed and changed (each field old -> new,
a command as a line diff, upstream nodes added and removed), and edges added and removed.

It compares two `pb.Workflow` answers of GetWorkflow (the API's view of a plan version,
secret values already masked), never the compiler's plan: what the console shows of a
version is what the API shows of it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Final, Literal, TypeVar

from flowplan.daemon.server.console.present import (
    file_span,
    schedule_words,
    status_name,
    struct_json,
)
from flowplan.v1 import workflow_service_pb2 as pb

T = TypeVar("T")
NONE: Final = "(none)"
CONTEXT_LINES: Final = 2  # unchanged lines kept around each change of a line diff
# Tags every node carries whatever its YAML says (docs/api.md: NodeDefinition.tags).
IMPLIED_NODE_TAGS: Final = frozenset({"workflow_name", "task_name"})
WORDS: Final = re.compile(r"\s+|\w+|[^\w\s]")  # what a changed line's words are


@dataclass(frozen=True)
class Span:
    """A stretch of a changed line; `changed`: its words are not in the line it replaces."""

    text: str
    changed: bool


@dataclass(frozen=True)
class Line:
    """One line of a line diff: `+` added, `-` removed, ` ` unchanged, `…` lines left out.
    A line replacing another (or replaced) has `spans`: its text with the words that
    differ marked, so a one-word change in a long command stands out."""

    mark: Literal["+", "-", " ", "…"]
    text: str
    spans: tuple[Span, ...] = ()


@dataclass(frozen=True)
class Change:
    """One field that differs. `old` is None when the field is new (a param added), `new`
    None when it is gone; `lines` is the line diff of a text shown as code (a command)."""

    field: str
    old: str | None
    new: str | None
    lines: tuple[Line, ...] = ()
    code: bool = False


@dataclass(frozen=True)
class NodeDiff:
    """A node added, removed or changed. An added node lists its fields as changes from
    nothing (`old` None), a removed one as changes to nothing."""

    name: str
    kind: Literal["added", "removed", "changed"]
    changes: tuple[Change, ...]
    upstream_added: tuple[str, ...] = ()
    upstream_removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class VersionDiff:
    """Everything that differs between two versions of one workflow, in the newer version's
    node order (removed nodes in the older one's)."""

    workflow: tuple[Change, ...]
    nodes: tuple[NodeDiff, ...]
    edges_added: tuple[tuple[str, str], ...]
    edges_removed: tuple[tuple[str, str], ...]

    @property
    def identical(self) -> bool:
        """Nothing the API shows differs (the digests may still: a masked secret value, a
        node's environment)."""
        return not (self.workflow or self.nodes or self.edges_added or self.edges_removed)

    def summary(self) -> str:
        """The diff in one line: `1 field of the workflow, 2 nodes changed, 1 edge added`."""
        parts = [_counted(len(self.workflow), "field") + " of the workflow"] \
            if self.workflow else []
        for kind in ("added", "removed", "changed"):
            count = sum(1 for node in self.nodes if node.kind == kind)
            if count:
                parts.append(f"{_counted(count, 'node')} {kind}")
        for edges, kind in ((self.edges_added, "added"), (self.edges_removed, "removed")):
            if edges:
                parts.append(f"{_counted(len(edges), 'edge')} {kind}")
        return ", ".join(parts) or "nothing"


def diff_versions(old: pb.Workflow, new: pb.Workflow) -> VersionDiff:
    """What changed from `old` to `new`, two versions of one workflow."""
    old_nodes = {node.name: node for node in old.nodes}
    new_nodes = {node.name: node for node in new.nodes}
    nodes: list[NodeDiff] = []
    for node in new.nodes:
        before = old_nodes.get(node.name)
        if before is None:
            nodes.append(NodeDiff(node.name, "added", _changes({}, _said(node, new)),
                                  upstream_added=tuple(node.upstream)))
            continue
        changed = _node_diff(before, old, node, new)
        if changed is not None:
            nodes.append(changed)
    nodes += [NodeDiff(node.name, "removed", _changes(_said(node, old), {}),
                       upstream_removed=tuple(node.upstream))
              for node in old.nodes if node.name not in new_nodes]
    old_edges = [(e.upstream, e.downstream) for e in old.edges]
    new_edges = [(e.upstream, e.downstream) for e in new.edges]
    return VersionDiff(
        workflow=_changes(_workflow_fields(old), _workflow_fields(new)),
        nodes=tuple(nodes),
        edges_added=_missing(new_edges, old_edges),
        edges_removed=_missing(old_edges, new_edges))


def line_diff(old: str, new: str) -> tuple[Line, ...]:
    """`old` -> `new` line by line, with CONTEXT_LINES unchanged lines around each change;
    `…` stands for the unchanged lines left out between two changes."""
    before, after = old.splitlines(), new.splitlines()
    lines: list[Line] = []
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for group in matcher.get_grouped_opcodes(CONTEXT_LINES):
        if lines:
            lines.append(Line("…", ""))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += [Line(" ", text) for text in before[i1:i2]]
                continue
            removed, added = before[i1:i2], after[j1:j2]
            if len(removed) == len(added):  # line by line: mark the words that differ
                pairs = [_word_diff(old_line, new_line)
                         for old_line, new_line in zip(removed, added, strict=True)]
                lines += [Line("-", text, spans) for text, (spans, _) in zip(removed, pairs,
                                                                          strict=True)]
                lines += [Line("+", text, spans) for text, (_, spans) in zip(added, pairs,
                                                                          strict=True)]
                continue
            lines += [Line("-", text) for text in removed]
            lines += [Line("+", text) for text in added]
    return tuple(lines)


def _word_diff(old: str, new: str) -> tuple[tuple[Span, ...], tuple[Span, ...]]:
    """`old` and `new` as spans, the words that differ between them marked changed."""
    before, after = WORDS.findall(old), WORDS.findall(new)
    old_spans: list[Span] = []
    new_spans: list[Span] = []
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        changed = tag != "equal"
        if i2 > i1:
            old_spans.append(Span("".join(before[i1:i2]), changed))
        if j2 > j1:
            new_spans.append(Span("".join(after[j1:j2]), changed))
    return tuple(old_spans), tuple(new_spans)


# ---- the fields compared, as shown -------------------------------------------------------

_Field = tuple[str, bool]  # a field's label, and whether its text is code (a line diff)


def _changes(old: Mapping[_Field, str], new: Mapping[_Field, str]) -> tuple[Change, ...]:
    """A Change per field whose shown value differs, in `new`'s field order, then the
    fields only `old` has."""
    changes: list[Change] = []
    for key in [*new, *(k for k in old if k not in new)]:
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        label, code = key
        both = before is not None and after is not None
        lines = line_diff(before or "", after or "") if code and both else ()
        changes.append(Change(label, before, after, lines, code))
    return tuple(changes)


def _workflow_fields(workflow: pb.Workflow) -> dict[_Field, str]:
    """The workflow's own fields as shown. A field one version lacks (a param, a tag, the
    schedule's settings without a schedule) reads "added" or "removed". Runtime state (the
    switch in force, the next tick) is not the plan's and is not compared."""
    fields: dict[_Field, str] = {
        ("description", False): workflow.description or NONE,
        ("workflow file", False): workflow.file or NONE,
        ("removed from the repository", False): _yes(workflow.tombstone),
        ("time zone", False): workflow.timezone or NONE,
        ("queue", False): workflow.queue or NONE,
        ("max active runs", False): str(workflow.max_active_runs),
        ("schedule", False): schedule_words(workflow),
    }
    if workflow.HasField("schedule"):
        schedule = workflow.schedule
        fields[("scheduling on in git", False)] = _yes(schedule.enabled_in_git)
        fields[("catch-up", False)] = _enum(pb.Catchup, schedule.catchup)
        if schedule.HasField("start"):
            fields[("schedule start", False)] = schedule.start.ToDatetime(
                tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    fields[("failure e-mails", False)] = ", ".join(workflow.failure_emails) or NONE
    params = struct_json(workflow.params)
    for key in sorted(params):
        fields[(f"param {key}", False)] = json.dumps(params[key], sort_keys=True)
    for key in sorted(workflow.tags):
        fields[(f"tag {key}", False)] = workflow.tags[key]
    return fields


def _node_fields(node: pb.NodeDefinition, workflow: pb.Workflow) -> dict[_Field, str]:
    """A node's fields as shown. Its tags are those of its own: not the workflow's it
    inherits (a workflow tag changed shows once, on the workflow) nor the implied ones."""
    fields: dict[_Field, str] = {
        ("type", False): _enum(pb.NodeType, node.type),
        ("queue", False): node.queue + (" (pinned)" if node.queue_pinned else ""),
        ("trigger", False): _enum(pb.TriggerRule, node.trigger),
        ("retries", False): str(node.retries),
        ("retry delay", False): file_span(node.retry_delay_seconds),
        ("retry backoff", False): f"{node.retry_backoff:g}x",
        ("timeout", False): (file_span(node.timeout_seconds)
                             if node.HasField("timeout_seconds") else NONE),
        ("description", False): node.description or NONE,
    }
    if node.source_path:
        fields[("source", False)] = node.source_path
        fields[("source content (sha256)", False)] = node.source_sha256[:12]
    if node.command:
        fields[("command", True)] = node.command
    for key, value in sorted(_own_tags(node, workflow).items()):
        fields[(f"tag {key}", False)] = value
    return fields


def _said(node: pb.NodeDefinition, workflow: pb.Workflow) -> dict[_Field, str]:
    """The fields of a node added or removed that say something: none unset, no retry
    delay or backoff without retries."""
    quiet = {"retry delay", "retry backoff"} if node.retries == 0 else set()
    return {key: value for key, value in _node_fields(node, workflow).items()
            if value != NONE and key[0] not in quiet}


def _node_diff(before: pb.NodeDefinition, old: pb.Workflow, after: pb.NodeDefinition,
               new: pb.Workflow) -> NodeDiff | None:
    changes = _changes(_node_fields(before, old), _node_fields(after, new))
    added = _missing(after.upstream, before.upstream)
    removed = _missing(before.upstream, after.upstream)
    if not (changes or added or removed):
        return None
    return NodeDiff(after.name, "changed", changes, added, removed)


def _own_tags(node: pb.NodeDefinition, workflow: pb.Workflow) -> dict[str, str]:
    return {key: value for key, value in node.tags.items()
            if key not in IMPLIED_NODE_TAGS and workflow.tags.get(key) != value}


def _missing(these: Iterable[T], there: Iterable[T]) -> tuple[T, ...]:
    """`these` not in `there`, in their order."""
    known = set(there)
    return tuple(item for item in these if item not in known)


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _enum(enum: Any, value: int) -> str:
    """An enum value by its name without the type's prefix, in lower case (all_done);
    `(none)` when unset."""
    return status_name(enum, value).lower() if value else NONE
