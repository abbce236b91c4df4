"""The scheduler's own frozen types: backfills and their progress. No protobuf here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


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
