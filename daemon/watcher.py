"""The daemon's view of the plan store: the verified latest version of every workflow, kept
fresh by a watcher.

Filesystem events (watchfiles) are only hints: each batch triggers a rescan of the store
(a new workflow's folder too, as a plan written into it before the watcher watches it
makes no event of its own), and a full rescan also runs every `RESCAN_SECONDS` in case an
event was lost (network filesystems, a store replaced by a rename). A plan that is
unreadable or fails its digest check is logged and skipped, never fatal: the workflow keeps
its last good version, until that file changes (a copy that was not done yet) and reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from watchfiles import Change, awatch

from flowplan.compiler.plan import Plan, PlanError
from flowplan.compiler.store import PlanStore

log = logging.getLogger("flowplan.plans")

RESCAN_SECONDS = 30.0
# versions kept parsed beyond each workflow's latest (which is always kept): a plan carries
# its job sources, and a daemon fed by CI publishes for months
CACHED_VERSIONS = 256
DEBOUNCE_MS = 300  # a new version is active well within a second
POLL_MS = 500  # when the kernel will not watch a folder: a change is seen within a second
RETRY_SECONDS = 30.0  # when polling it fails too (the folder is gone for a while)


class PlanCatalog:
    """Plan versions by workflow: `get` any version (verified, then kept while it is among
    the `cached` most recently used: versions are immutable), `latest` from the last
    rescan."""

    def __init__(self, store: PlanStore, *, cached: int = CACHED_VERSIONS) -> None:
        self.store = store
        self._cache: OrderedDict[tuple[str, int], Plan] = OrderedDict()
        self._cached = cached
        self._headers: dict[tuple[str, int], Plan] = {}  # small, and never changes
        self._latest: dict[str, Plan] = {}
        # versions skipped as unreadable, with their file's (size, mtime) then: one that
        # changes since (a copy that was not done) is read again
        self._broken: dict[tuple[str, int], tuple[int, int] | None] = {}
        self.rescan()

    def get(self, workflow: str, version: int) -> Plan:
        plan = self._parsed(workflow, version)
        if plan is None:
            plan = self._cache[workflow, version] = self.store.load(workflow, version)
            if len(self._cache) > self._cached:
                self._cache.popitem(last=False)
        return plan

    def _parsed(self, workflow: str, version: int) -> Plan | None:
        """The version if it is kept parsed (as the most recently used now), else None."""
        plan = self._cache.get((workflow, version))
        if plan is not None:
            self._cache.move_to_end((workflow, version))
            return plan
        latest = self._latest.get(workflow)
        return latest if latest is not None and latest.version == version else None

    def header(self, workflow: str, version: int) -> Plan:
        """The version without its content (number, digest, publication, remarks...): for
        listings of every version, which must neither read each version's file every time
        nor push the versions that runs use out of those kept parsed."""
        found = self._headers.get((workflow, version))
        if found is None:
            plan = self._parsed(workflow, version) or self.store.load(workflow, version)
            found = self._headers[workflow, version] = plan.model_copy(update={"content": None})
        return found

    def latest(self, workflow: str) -> Plan | None:
        return self._latest.get(workflow)

    def workflows(self) -> list[str]:
        return sorted(self._latest)

    def active(self) -> int:
        """Workflows whose latest version is a plan (not a tombstone)."""
        return sum(1 for plan in self._latest.values() if plan.content is not None)

    def skipped(self) -> int:
        """Plan versions skipped as unreadable."""
        return len(self._broken)

    def versions(self, workflow: str) -> list[int]:
        return self.store.versions(workflow)

    def rescan(self) -> list[Plan]:
        """Load what changed; returns the workflows' new latest versions."""
        changed = []
        for workflow in self.store.workflows():
            for version in reversed(self.store.versions(workflow)):
                current = self._latest.get(workflow)
                if current is not None and current.version == version:
                    break
                key = (workflow, version)
                seen = self._file(workflow, version)
                if key in self._broken and self._broken[key] == seen:
                    continue
                try:
                    plan = self.get(workflow, version)
                except (PlanError, OSError, ValueError) as exc:
                    if key not in self._broken:
                        log.error("plan %s version %d skipped: %s", workflow, version, exc)
                    self._broken[key] = seen
                    continue
                if self._broken.pop(key, False) is not False:
                    log.info("plan %s version %d can be read now", workflow, version)
                if current is None or (current.version or 0) < version:
                    self._latest[workflow] = plan
                    changed.append(plan)
                    log.info("plan %s version %d loaded%s", workflow, version,
                             " (tombstone)" if plan.tombstone else "")
                break
        return changed


    def _file(self, workflow: str, version: int) -> tuple[int, int] | None:
        try:
            found = self.store.path(workflow, version).stat()
        except OSError:
            return None
        return found.st_size, found.st_mtime_ns


def _relevant(change: Change, path: str) -> bool:
    name = Path(path).name
    if name.startswith("."):
        return False
    if name.endswith(".json"):
        return True
    # A new workflow's folder. The kernel watches one folder at a time, and the watcher
    # adds a new one only once it hears of it: a plan written into it before that (a
    # publish on a busy machine, a folder moved or synced in) makes no event of its own.
    return change == Change.added and Path(path).is_dir()


async def watch_folder(root: Path, stop: asyncio.Event, what: str, **options: Any
                       ) -> AsyncIterator[set[tuple[Change, str]]]:
    """watchfiles' `awatch(root, **options)` until `stop` is set, that never fails: when the
    kernel will not watch (its inotify limits reached, common on container hosts) it says so
    once and polls the folder every `POLL_MS` instead; when polling fails too it tries again
    every `RETRY_SECONDS`."""
    polling: bool | None = None  # None: as WATCHFILES_FORCE_POLLING says
    while not stop.is_set():
        try:
            async for changes in awatch(root, stop_event=stop, force_polling=polling,
                                        poll_delay_ms=POLL_MS, **options):
                yield changes
            return
        except Exception as exc:  # said; the watch goes on another way
            if not polling:
                log.warning("cannot watch %s for changes (%s): polling it every %g s instead",
                            what, exc, POLL_MS / 1000)
                polling = True
                continue
            log.error("cannot poll %s for changes (%s): trying again in %g s", what, exc,
                      RETRY_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RETRY_SECONDS)


async def watch_plans(catalog: PlanCatalog, on_change: Callable[[list[Plan]], None],
                      stop: asyncio.Event) -> None:
    """Rescan on filesystem hints and every `RESCAN_SECONDS`; call `on_change` with what
    changed. Returns when `stop` is set."""
    catalog.store.root.mkdir(parents=True, exist_ok=True)

    def rescan() -> None:
        try:
            changed = catalog.rescan()
        except Exception:  # the store folder vanished for a moment: try again later
            log.exception("plan store rescan failed")
            return
        if changed:
            on_change(changed)

    async def periodic() -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), RESCAN_SECONDS)
            except TimeoutError:
                rescan()

    ticker = asyncio.ensure_future(periodic())
    try:
        async for _ in watch_folder(catalog.store.root, stop,
                                    f"the plan store {catalog.store.root}",
                                    watch_filter=_relevant, debounce=DEBOUNCE_MS, step=20,
                                    recursive=True, ignore_permission_denied=True):
            rescan()
    finally:
        ticker.cancel()
