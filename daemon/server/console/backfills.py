"""Backfills: the list (`/backfills`, newest first, by workflow and status, paged), a
backfill's page (`/backfills/ID`: its status, progress and newest runs, kept live; older
runs a page further) with its Cancel,
and its changes as server-sent events (`/backfills/ID/events`), read by one `BackfillFeed`
per backfill however many pages watch it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

import grpc
from aiohttp import web

from flowplan.daemon.domain import RunStatus
from flowplan.daemon.engine.engine import StatusEvent
from flowplan.daemon.server.console.feeds import (
    END_EVENT,
    Broadcast,
    Follow,
    Opened,
    Sink,
    following,
    serve_stream,
)
from flowplan.daemon.server.console.kit import Kit, ServiceError
from flowplan.daemon.server.console.present import status_name, when
from flowplan.v1 import workflow_service_pb2 as pb

log = logging.getLogger("flowplan.daemon.console")

BACKFILLS_PAGE: Final = 20  # backfills a page of the list shows
RUNS_SHOWN: Final = 1000  # of a backfill's runs (the newest), on its page and in its events
READ_AGAIN_SECONDS: Final = 0.25  # the changes heard meanwhile are read at once
IDLE_READ_SECONDS: Final = 5.0  # read again after this without a change heard (a change the
# engine does not announce: a backfill's finish retried after the disk refused it)
STATUSES: Final = {status_name(pb.BackfillStatus, value).lower(): pb.BackfillStatus.Name(value)
                   for value in pb.BackfillStatus.values() if value}  # ?status=running


class BackfillPages:
    def __init__(self, kit: Kit) -> None:
        self._kit = kit
        self.feeds = BackfillFeeds(kit)

    def mount(self, app: web.Application) -> None:
        routes = app.router
        routes.add_get("/backfills", self.backfills)
        routes.add_get("/backfills/{backfill_id}", self.backfill)
        routes.add_get("/backfills/{backfill_id}/events", self.events)
        routes.add_post("/backfills/{backfill_id}/cancel", self.cancel_backfill)

    def stream(self, parts: tuple[str, ...], query: Mapping[str, str], last_id: str
               ) -> Opened | None:
        """A backfill's events by its URL's path parts, for `/events` (each connection
        starts with the whole state: nothing to resume from)."""
        match parts:
            case ("backfills", backfill_id, "events"):
                return self.feeds.open(backfill_id)
        return None

    async def backfills(self, request: web.Request) -> web.StreamResponse:
        workflow = request.query.get("workflow", "").strip()
        status = request.query.get("status", "").strip().lower()
        if status and status not in STATUSES:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"status must be one of {', '.join(STATUSES)}, not"
                               f" '{status[:20]}'")
        answer = await self._kit.call("ListBackfills", pb.ListBackfillsRequest(
            workflow=workflow, status=STATUSES.get(status, "BACKFILL_STATUS_UNSPECIFIED"),
            page_size=BACKFILLS_PAGE, page_token=request.query.get("page", "")))
        older = {k: v for k, v in (("workflow", workflow), ("status", status),
                                   ("page", answer.next_page_token)) if v}
        return self._kit.page(request, "backfills.html", backfills=answer.backfills,
                              workflow=workflow, chosen=status, statuses=list(STATUSES),
                              older=older if answer.next_page_token else None)

    async def backfill(self, request: web.Request) -> web.StreamResponse:
        """Its newest RUNS_SHOWN runs, kept live; `?page=` (the *Older runs* link) the
        RUNS_SHOWN before those, and so on: older ticks, all run before the newest."""
        backfill_id = request.match_info["backfill_id"]
        page = request.query.get("page", "")
        answer = await self._kit.call("GetBackfill",
                                      pb.GetBackfillRequest(backfill_id=backfill_id))
        runs = await self._kit.call("ListRuns", pb.ListRunsRequest(
            backfill_id=backfill_id, page_size=RUNS_SHOWN, page_token=page))
        return self._kit.page(request, "backfill.html", b=answer.backfill,
                              runs=sorted_runs([run_json(r) for r in runs.runs]),
                              older=runs.next_page_token, paged=bool(page),
                              shown=RUNS_SHOWN,
                              finished=answer.backfill.status != pb.BACKFILL_STATUS_RUNNING)

    async def events(self, request: web.Request) -> web.StreamResponse:
        return await serve_stream(request, self.feeds.open(request.match_info["backfill_id"]))

    async def cancel_backfill(self, request: web.Request) -> web.StreamResponse:
        self._kit.require(request, "CancelBackfill")
        backfill_id = request.match_info["backfill_id"]
        await self._kit.call("CancelBackfill",
                             pb.CancelBackfillRequest(backfill_id=backfill_id))
        raise web.HTTPSeeOther(f"/backfills/{backfill_id}")


def backfill_json(backfill: pb.Backfill, *, older: str) -> dict[str, Any]:
    """What a backfill's page shows of it beside its runs, as its events send it; `older`:
    the page token of the runs before the newest RUNS_SHOWN, or "" (no more)."""
    p = backfill.progress
    return {"status": status_name(pb.BackfillStatus, backfill.status),
            "finished_at": when(backfill, "finished_at"),
            "progress": {"total": p.total, "succeeded": p.succeeded, "failed": p.failed,
                         "running": p.running, "pending": p.pending,
                         "cancelled": p.cancelled},
            "more_runs": bool(older), "older": older}


def run_json(run: pb.Run) -> dict[str, str]:
    """A run's row on its backfill's page."""
    return {"run_id": run.run_id, "logical_time": when(run, "logical_time"),
            "status": status_name(pb.RunStatus, run.status),
            "previous_run_id": run.previous_run_id}


def sorted_runs(runs: list[dict[str, str]]) -> list[dict[str, str]]:
    """Oldest tick first, the order the backfill runs them; a resumed run after the run it
    resumes (run ids sort by creation)."""
    return sorted(runs, key=lambda r: (r["logical_time"], r["run_id"]))


def sse_backfill(backfill: dict[str, Any], runs: list[dict[str, str]]) -> bytes:
    data = {**backfill, "runs": runs}
    return f"event: backfill\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class BackfillFeed(Broadcast):
    """One reader of a backfill for every page that watches it: it reads GetBackfill and the
    backfill's runs again when the engine announces a change of one of its runs (or a new
    run), at most every READ_AGAIN_SECONDS, and records an event only when what a page shows
    changed. A page gets the whole state first, then the same bytes as every other page."""

    def __init__(self, kit: Kit, backfill_id: str, serial: int) -> None:
        super().__init__()
        self.serial = serial  # the console's count of backfill readers started: this one's
        self.ended = False  # ... because the backfill finished
        self.events: list[bytes] = []  # each change a page shows, as its SSE event
        self._kit = kit
        self._id = backfill_id
        self._backfill: dict[str, Any] = {}
        self._runs: dict[str, dict[str, str]] = {}
        self._heard = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = kit.service.subscribe(self._hear)
        self._task = asyncio.ensure_future(self._read())

    def _hear(self, change: StatusEvent) -> None:
        """The engine's status change (in its call, no I/O): one of ours, or a new run that
        may be ours (a resumed run of the backfill)."""
        if change.node is None and (change.run_id in self._runs
                                    or change.status == RunStatus.PENDING.value):
            self._heard.set()

    async def _read(self) -> None:
        closing = self._kit.service.closing
        try:
            while not closing.is_set():
                self._heard.clear()
                if await self._look():
                    self.ended = True
                    return
                await _first_of(self._heard, closing, timeout=IDLE_READ_SECONDS)
                await asyncio.sleep(READ_AGAIN_SECONDS)
        except ServiceError as exc:  # NOT_FOUND
            self.error = exc
        except Exception:  # never the daemon's end: the pages' streams end, and reconnect
            log.exception("following backfill %s for the console failed", self._id)
        finally:
            self.done = True
            self._stop_listening()
            self._wake(now=True)

    async def _look(self) -> bool:
        """Read the backfill, then its runs (after its finish, they are all final); record
        what changed. True once the backfill has finished."""
        answer = await self._kit.call("GetBackfill",
                                      pb.GetBackfillRequest(backfill_id=self._id))
        runs = await self._kit.call("ListRuns", pb.ListRunsRequest(backfill_id=self._id,
                                                                   page_size=RUNS_SHOWN))
        backfill = backfill_json(answer.backfill, older=runs.next_page_token)
        rows = [run_json(run) for run in runs.runs]
        changed = [row for row in rows if self._runs.get(row["run_id"]) != row]
        if backfill != self._backfill or changed:
            if self.started.is_set():
                self.events.append(sse_backfill(backfill, sorted_runs(changed)))
            self._backfill = backfill
            self._runs.update((row["run_id"], row) for row in changed)
            self._wake()
        return bool(answer.backfill.status != pb.BACKFILL_STATUS_RUNNING)

    def recorded(self) -> int:
        return len(self.events)

    def render(self, start: int, end: int, *, together: bool) -> bytes:
        """The events, as they are (each is the state a page shows, not a change of it)."""
        return b"".join(self.events[start:end])

    def snapshot(self) -> bytes:
        """The whole state as one event: what a page (re)connecting catches up with."""
        return sse_backfill(self._backfill, sorted_runs(list(self._runs.values())))

    def _stop_listening(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def close(self) -> None:
        super().close()
        self._task.cancel()
        self._stop_listening()  # the task may be cancelled before it ever ran

    async def follow(self, response: Sink) -> None:
        """Write the state, then each change, to the backfill's end (then `end`); a reader
        stopped otherwise (the daemon stopping) closes the stream without `end`: the page
        reconnects."""
        index = len(self.events)
        await response.write(self.snapshot())
        while True:
            index = await self.write_from(response, index)
            if self.done:
                if self.ended:
                    await response.write(END_EVENT)
                return
            await self.wait_or_keepalive(response)


class BackfillFeeds:
    """The backfills pages watch, by id: a feed starts with its first page and stops with its
    last. `readers` counts the feeds started (each stream names its reader, so a test sees
    several pages share one)."""

    def __init__(self, kit: Kit) -> None:
        self._kit = kit
        self._feeds: dict[str, BackfillFeed] = {}
        self.readers = 0

    @contextlib.asynccontextmanager
    async def open(self, backfill_id: str) -> AsyncIterator[Follow]:
        """The backfill's state, then its changes, to its end."""
        feed = self._feeds.get(backfill_id)
        if feed is None or (feed.done and not feed.ended):  # none, or one that failed
            self.readers += 1
            feed = self._feeds[backfill_id] = BackfillFeed(self._kit, backfill_id,
                                                           self.readers)

        async def follow(sink: Sink) -> None:
            await sink.write(f": reader {feed.serial}, pages {feed.pages}\n\n".encode())
            await feed.follow(sink)

        async with following(self._feeds, backfill_id, feed, follow) as opened:
            yield opened


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    """Until one of `events` is set, or `timeout` seconds."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
