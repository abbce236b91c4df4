"""The plan: one workflow, fully resolved, immutable and content-addressed.

This module is the contract between the compiler and the daemon. A plan file is JSON:

    {"schema_version": 1, "workflow": "...", "version": 3, "digest": "<sha256>",
     "published_at": ..., "remarks": ..., "commit": ..., "compiler_version": ...,
     "tombstone": false, "content": {...WorkflowPlan...}}

`digest` is the sha256 of the canonical JSON of `schema_version`, `workflow`, `tombstone`
and `content`; version and publish metadata are outside it. `load_plan` refuses a file
whose digest does not match or whose schema version it does not know.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from flowplan.compiler.files import read_regular

SCHEMA_VERSION: Final = 1
SUPPORTED_SCHEMA_VERSIONS: Final = frozenset({1})
MAX_PLAN_BYTES: Final = 256 * 1024 * 1024  # a plan file read: larger is refused unread

NodeType = Literal["shell", "python", "sql"]
Trigger = Literal["all_succeeded", "any_succeeded", "all_done", "any_failed", "all_failed"]
NotifyStatus = Literal["running", "retrying", "succeeded", "failed"]
Catchup = Literal["none", "latest", "all"]
ScheduleKind = Literal["daily", "interval", "cron"]
Executor = Literal["local", "spark"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QueuePlan(_Frozen):
    """A resource queue. `concurrency` None means the daemon host's CPU count."""

    executor: Executor
    concurrency: int | None
    master: str | None = None
    conf: dict[str, str] = Field(default_factory=dict)
    python: str | None = None


class SchedulePlan(_Frozen):
    """A normalized schedule.

    kind `daily`: one tick a day at `at`. kind `interval`: ticks at `window[0]` + k *
    `every_seconds` up to and including `window[1]`, every day. kind `cron`: `cron`.
    All wall times are in `timezone`; no tick before `start` (an aware instant).
    """

    kind: ScheduleKind
    at: str | None = None
    every_seconds: int | None = None
    window: tuple[str, str] | None = None
    cron: str | None = None
    timezone: str
    start: datetime | None = None
    enabled: bool
    catchup: Catchup


class SourcePlan(_Frozen):
    """A job source embedded in the plan: what runs is exactly what was published."""

    path: str
    sha256: str
    text: str


class NotifyPlan(_Frozen):
    email: tuple[str, ...]
    on: tuple[NotifyStatus, ...]


class NodePlan(_Frozen):
    """A node with every default applied."""

    name: str
    description: str = ""
    type: NodeType
    source: SourcePlan | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    upstream: tuple[str, ...] = ()
    trigger: Trigger = "all_succeeded"
    queue: str
    queue_pinned: bool = Field(
        description="the node's YAML sets its own queue: a run's queue override does not apply")
    retries: int
    retry_delay_seconds: float
    retry_backoff: float
    timeout_seconds: float | None
    tags: dict[str, str]
    notify: NotifyPlan | None = None


class WorkflowPlan(_Frozen):
    """The content of a plan; everything the digest covers besides the name."""

    name: str
    description: str = ""
    file: str
    timezone: str
    queue: str
    max_active_runs: int
    params: dict[str, JsonValue] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    on_failure_email: tuple[str, ...] = ()
    schedule: SchedulePlan | None = None
    queues: dict[str, QueuePlan]
    nodes: tuple[NodePlan, ...] = Field(description="in topological order")

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def edges(self) -> list[tuple[str, str]]:
        return [(up, node.name) for node in self.nodes for up in node.upstream]


class Plan(_Frozen):
    """One version of one workflow, as stored in `<store>/<workflow>/<version>.json`."""

    schema_version: int = SCHEMA_VERSION
    workflow: str
    digest: str
    version: int | None = Field(default=None, description="None until published")
    published_at: datetime | None = None
    remarks: str = ""
    commit: str | None = None
    compiler_version: str
    tombstone: bool = False
    content: WorkflowPlan | None = Field(default=None, description="None for a tombstone")

    def to_json(self) -> str:
        """The file format: stable, sorted, indented JSON with a final newline."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2,
                          ensure_ascii=False) + "\n"


# A node's env entry or a run's param whose name holds one of these (in any case) is a
# secret: its value is masked wherever the daemon shows it (docs/concepts.md, Secrets).
SECRET_MARKERS: Final = ("SECRET", "TOKEN", "PASSWORD", "KEY")


def is_secret_name(name: str) -> bool:
    """True when an env entry's or a param's `name` marks its value as a secret."""
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


class PlanError(ValueError):
    """A plan file that cannot be used: unreadable, unknown schema version or tampered."""


def compute_digest(workflow: str, content: WorkflowPlan | None, *, tombstone: bool) -> str:
    payload: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "workflow": workflow,
        "tombstone": tombstone,
        "content": content.model_dump(mode="json") if content is not None else None,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def make_plan(content: WorkflowPlan, *, compiler_version: str) -> Plan:
    """An unpublished plan (no version) for `content`."""
    return Plan(workflow=content.name, compiler_version=compiler_version,
                digest=compute_digest(content.name, content, tombstone=False), content=content)


def tombstone_plan(workflow: str, *, compiler_version: str) -> Plan:
    return Plan(workflow=workflow, compiler_version=compiler_version, tombstone=True,
                digest=compute_digest(workflow, None, tombstone=True))


def parse_plan(data: bytes | str, *, origin: str) -> Plan:
    """Read a plan from JSON, refusing an unknown schema version or a wrong digest."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PlanError(f"{origin}: not a JSON plan file: {exc}") from exc
    if not isinstance(raw, dict):
        raise PlanError(f"{origin}: not a JSON plan file: expected an object")
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PlanError(f"{origin}: not a plan file: schema_version must be a positive whole"
                        f" number, found {version!r}")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        reads = sorted(SUPPORTED_SCHEMA_VERSIONS)
        remedy = ("upgrade flowplan to read it" if version > reads[-1] else
                  "publish the workflow again with this flowplan")
        raise PlanError(f"{origin}: plan schema_version {version} is not supported by this"
                        f" flowplan (it reads {reads}); {remedy}")
    try:
        plan = Plan.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PlanError(f"{origin}: invalid plan at '{where}': {first['msg']}") from exc
    if plan.tombstone != (plan.content is None):
        raise PlanError(f"{origin}: a plan has content exactly when it is not a tombstone")
    expected = compute_digest(plan.workflow, plan.content, tombstone=plan.tombstone)
    if expected != plan.digest:
        raise PlanError(f"{origin}: digest mismatch: the file says {plan.digest[:12]}, its"
                        f" content hashes to {expected[:12]}; it was changed after publishing")
    return plan


def load_plan(path: Path, *, follow_symlinks: bool = True) -> Plan:
    """Read and verify one plan file: a regular file (never waits on a FIFO) of at most
    `MAX_PLAN_BYTES`."""
    try:
        data = read_regular(path, limit=MAX_PLAN_BYTES, follow_symlinks=follow_symlinks)
    except OSError as exc:
        raise PlanError(f"{path}: cannot read plan: {exc.strerror or exc}") from exc
    if len(data) > MAX_PLAN_BYTES:
        raise PlanError(f"{path}: cannot read plan: larger than the limit of {MAX_PLAN_BYTES}"
                        " bytes")
    return parse_plan(data, origin=str(path))
