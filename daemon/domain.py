"""The daemon's domain model: runs, node runs, attempts, run events, backfills, and the
errors the state store raises. A leaf: it imports nothing of the daemon, so the engine, the
scheduler, the state store, the server and the notifier all build on it. No protobuf here:
the gRPC layer translates at its edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class NodeStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"  # an attempt failed and another is due
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in FINAL_NODE_STATUSES


FINAL_NODE_STATUSES = frozenset({NodeStatus.SUCCEEDED, NodeStatus.FAILED, NodeStatus.SKIPPED,
                                 NodeStatus.CANCELLED})


class RunTrigger(StrEnum):
    MANUAL = "manual"
    SCHEDULE = "schedule"
    BACKFILL = "backfill"
    DEBUG = "debug"
    RESUME = "resume"


class AttemptStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class Attempt:
    run_id: str
    node: str
    number: int
    plan_version: int
    status: AttemptStatus
    started_at: datetime
    finished_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    log_path: str | None = None
    pid: int | None = None
    pid_start: int | None = None  # process start time (clock ticks since boot): no pid reuse
    copied_from_run_id: str | None = None
    spark_application_id: str | None = None  # spark queues: read from the log at the end


@dataclass(frozen=True, slots=True)
class NodeRun:
    run_id: str
    name: str
    status: NodeStatus
    queue: str
    plan_version: int
    attempts: tuple[Attempt, ...] = ()
    copied_from_run_id: str | None = None
    next_attempt_at: datetime | None = None  # RETRYING: when the next attempt is due
    skip_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    workflow: str
    plan_version: int
    plan_digest: str
    trigger: RunTrigger
    logical_time: datetime
    status: RunStatus
    created_at: datetime
    params: dict[str, Any] = field(default_factory=dict)
    remarks: str = ""
    queue_override: str | None = None
    backfill_id: str | None = None
    previous_run_id: str | None = None
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    nodes: tuple[NodeRun, ...] = ()

    def node(self, name: str) -> NodeRun:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One numbered change in a run's history: `node` is None for the run's own status."""

    run_id: str
    sequence: int
    node: str | None
    status: str
    attempt: int | None
    at: datetime

class BackfillStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self is not BackfillStatus.RUNNING


class Reprocess(StrEnum):
    """Which ticks of the range a backfill runs."""

    MISSING = "missing"  # ticks with no successful run yet
    FAILED = "failed"  # ticks whose latest run failed
    ALL = "all"  # every tick


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    """Counts over the backfill's ticks, each by the status of its latest run."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0
    cancelled: int = 0

    @property
    def unfinished(self) -> int:
        return self.running + self.pending


@dataclass(frozen=True, slots=True)
class Backfill:
    backfill_id: str
    workflow: str
    start_time: datetime
    end_time: datetime
    status: BackfillStatus
    max_parallel_runs: int
    reprocess: Reprocess
    created_at: datetime
    queue_override: str | None = None
    remarks: str = ""
    failure_emails: tuple[str, ...] = ()
    finished_at: datetime | None = None
    progress: BackfillProgress = field(default_factory=BackfillProgress)


class DuplicateRunError(Exception):
    """The state store refused a run that already exists: its id, or the run of the same
    workflow, logical time and trigger (one run per schedule tick)."""
