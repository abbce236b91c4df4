"""The plan store: `<store>/<workflow>/<version>.json`, written once, never changed.

A version file is written to a temporary file, fsynced, hard-linked to its final name (which
fails instead of overwriting) and the folder fsynced. Publishers take an exclusive lock on
`<store>/.lock`, so concurrent publishes cannot pick the same version number.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Final

from flowplan.compiler import __version__
from flowplan.compiler.files import locked
from flowplan.compiler.plan import Plan, PlanError, load_plan, tombstone_plan
from flowplan.compiler.values import NAME_RE

_VERSION_RE: Final = re.compile(r"([1-9][0-9]*)\.json")
LOCK_FILE: Final = ".lock"


class Change(StrEnum):
    NEW = "new"  # first version of a workflow
    UPDATED = "updated"
    REMOVED = "removed"  # tombstone written
    UNCHANGED = "unchanged"  # same digest as the latest version: nothing written


@dataclass(frozen=True, slots=True)
class Published:
    workflow: str
    change: Change
    version: int | None  # the version written, or the latest one when unchanged


@dataclass(frozen=True, slots=True)
class Kept:
    """An invalid workflow, not published: its latest version stays as it was."""

    workflow: str
    version: int | None  # the latest version (None: nothing published yet)
    removed: bool = False  # that version is a tombstone: the workflow stays removed


@dataclass(frozen=True, slots=True)
class PublishReport:
    published: tuple[Published, ...]
    kept: tuple[Kept, ...]  # the invalid workflows

    @property
    def written(self) -> tuple[Published, ...]:
        return tuple(p for p in self.published if p.change is not Change.UNCHANGED)


class PlanStore:
    """A directory of plan versions. Reading needs no lock; publishing takes one."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def workflows(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and NAME_RE.fullmatch(p.name))

    def versions(self, workflow: str) -> list[int]:
        folder = self.root / workflow
        if not folder.is_dir():
            return []
        found = (_VERSION_RE.fullmatch(name) for name in os.listdir(folder))
        return sorted(int(m.group(1)) for m in found if m)

    def path(self, workflow: str, version: int) -> Path:
        return self.root / workflow / f"{version}.json"

    def load(self, workflow: str, version: int) -> Plan:
        """One verified version; `PlanError` if unreadable, tampered or misplaced."""
        path = self.path(workflow, version)
        plan = load_plan(path, follow_symlinks=False)  # publish never writes a symlink
        if plan.workflow != workflow or plan.version != version:
            raise PlanError(f"{path}: holds {plan.workflow} version {plan.version}; a plan file"
                            " must not be moved or renamed")
        return plan

    def latest(self, workflow: str) -> Plan | None:
        versions = self.versions(workflow)
        return self.load(workflow, versions[-1]) if versions else None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The publishers' lock; `OSError` (`NotRegularFileError`) if `.lock` is unusable."""
        with locked(self.root / LOCK_FILE):
            yield

    def publish(
        self,
        plans: Sequence[Plan],
        *,
        keep: Sequence[str] = (),
        remove_missing: bool = True,
        remarks: str = "",
        commit: str | None = None,
        now: datetime | None = None,
    ) -> PublishReport:
        """Publish `plans` (unpublished, from `compile_repo`) as new versions where changed.

        Workflows named in `keep` failed to compile: their latest version stays active.
        With `remove_missing`, a stored workflow that is neither in `plans` nor in `keep`
        gets a tombstone version.
        """
        published_at = now or datetime.now(UTC)
        results: list[Published] = []
        with self.lock():
            present = {plan.workflow for plan in plans}
            for plan in plans:
                results.append(self._publish_one(plan, published_at, remarks, commit))
            if remove_missing:
                for workflow in self.workflows():
                    if workflow in present or workflow in keep:
                        continue
                    latest = self._latest_or_none(workflow)
                    if (latest is None and not self.versions(workflow)) or (
                            latest is not None and latest.tombstone):
                        continue
                    # an unreadable latest version is removed too: else the daemon would
                    # run the last version it can read of a workflow that is gone
                    tombstone = tombstone_plan(workflow, compiler_version=(
                        latest.compiler_version if latest is not None else __version__))
                    results.append(self._publish_one(tombstone, published_at, remarks,
                                                     commit))
            kept = tuple(self._kept(name) for name in sorted(keep))
        return PublishReport(published=tuple(results), kept=kept)

    def _kept(self, workflow: str) -> Kept:
        version = max(self.versions(workflow), default=None)
        latest = self._latest_or_none(workflow) if version is not None else None
        return Kept(workflow, version, removed=latest is not None and latest.tombstone)

    def _latest_or_none(self, workflow: str) -> Plan | None:
        try:
            return self.latest(workflow)
        except PlanError:
            return None  # an unreadable latest version never blocks publishing a new one

    def _publish_one(self, plan: Plan, published_at: datetime, remarks: str,
                     commit: str | None) -> Published:
        if not NAME_RE.fullmatch(plan.workflow):
            raise ValueError(f"not a valid workflow name: {plan.workflow!r}")
        versions = self.versions(plan.workflow)
        latest = self._latest_or_none(plan.workflow)
        if latest is not None and latest.digest == plan.digest:
            return Published(plan.workflow, Change.UNCHANGED, latest.version)
        version = (versions[-1] if versions else 0) + 1
        stored = plan.model_copy(update={"version": version, "published_at": published_at,
                                         "remarks": remarks, "commit": commit})
        self._write_once(self.path(plan.workflow, version), stored.to_json().encode("utf-8"))
        if plan.tombstone:
            change = Change.REMOVED
        else:
            change = Change.NEW if latest is None or latest.tombstone else Change.UPDATED
        return Published(plan.workflow, change, version)

    def _write_once(self, path: Path, data: bytes) -> None:
        folder = path.parent
        if not folder.is_dir():
            folder.mkdir(parents=True)
            _fsync_dir(folder.parent)
        for left in folder.glob(".*.tmp"):  # a publisher killed mid-write: the lock is ours
            with contextlib.suppress(FileNotFoundError):
                left.unlink()
        tmp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            with open(tmp, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.link(tmp, path)  # fails if the version exists: never overwrite
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
