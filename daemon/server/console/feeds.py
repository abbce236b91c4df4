"""Live updates as server-sent events: one `RunFeed` per run that pages follow, and the
helpers that open a stream (`Opened`: its error before anything is written) and write it,
with keep-alives, to a page's own response (`serve_stream`) or to its share of a
multiplexed one (multiplex.py)."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Final, Protocol, TypeVar, cast

from aiohttp import web

from flowplan.daemon.server.console.kit import SECURITY_HEADERS, CallContext, ServiceError
from flowplan.daemon.server.console.present import attempt_view, status_name
from flowplan.daemon.server.service import WorkflowService
from flowplan.v1 import workflow_service_pb2 as pb

log = logging.getLogger("flowplan.daemon.console")

SSE_KEEPALIVE_SECONDS: Final = 15.0
SSE_RETRY_MILLISECONDS: Final = 1000  # a browser reconnects this soon (a daemon restarted)
END_EVENT: Final = b"event: end\ndata: {}\n\n"
# A feed wakes its pages at most this often: the changes recorded meanwhile go to each page
# in one write (a page's browser then handles them in one task and draws one frame, not one
# per change: 20 pages each drawing ~400 frames a second starved the daemon; bench/web.py).
FLUSH_SECONDS: Final = 0.025
_Item = TypeVar("_Item")


def stream_response() -> web.StreamResponse:
    """An event stream's response, not yet prepared."""
    return web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no", **SECURITY_HEADERS})


def retry_line() -> bytes:
    return f"retry: {SSE_RETRY_MILLISECONDS}\n\n".encode()


class Sink(Protocol):
    """Where a stream's SSE bytes go: a page's own response, or its share of a multiplexed
    one (multiplex.py)."""

    async def write(self, data: bytes) -> None: ...


Follow = Callable[[Sink], Awaitable[None]]
# A stream opened: entering it waits for its first record and raises its error (e.g.
# NOT_FOUND) before anything is written; it gives what writes the stream to its end.
Opened = contextlib.AbstractAsyncContextManager[Follow]


class Broadcast:
    """What one reader records and every page's stream writes: `started` once there is a
    first record (or the end), `_wake` at each new one, `wait_or_keepalive` for the next.
    A subclass keeps the records: `recorded` counts them, `render` writes some as SSE.

    Pages are woken at most every FLUSH_SECONDS: a record after a quiet spell wakes them at
    once, one within FLUSH_SECONDS of the last wake-up waits for the end of that spell, with
    whatever else comes meanwhile (`batch` joins them, once for every page at the same
    place)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()  # the first record, or the end
        self.error: ServiceError | None = None  # why the reader stopped, if it failed
        self.done = False  # the reader stopped
        self.pages = 0  # following it now
        self._changed = asyncio.Event()
        self._woken_at = -FLUSH_SECONDS
        self._pending: asyncio.TimerHandle | None = None
        self._joined: dict[bool, tuple[int, int, bytes]] = {}  # by `together`

    def recorded(self) -> int:
        """How many records there are."""
        raise NotImplementedError

    def render(self, start: int, end: int, *, together: bool) -> bytes:
        """Records `start` to `end` as SSE: an event each, or (`together`) one event."""
        raise NotImplementedError

    def _wake(self, *, now: bool = False) -> None:
        """A new record (`now`: the last one, sent without waiting)."""
        self.started.set()
        if self._pending is not None and not now:
            return  # the pages are woken at the end of this spell
        loop = asyncio.get_running_loop()
        wait = self._woken_at + FLUSH_SECONDS - loop.time()
        if now or wait <= 0:
            self._wake_pages()
        else:
            self._pending = loop.call_later(wait, self._wake_pages)

    def _wake_pages(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._woken_at = asyncio.get_running_loop().time()
        self._changed.set()
        self._changed = asyncio.Event()

    def batch(self, start: int, *, together: bool = False) -> tuple[bytes, int]:
        """The records from index `start` on as one write, and the index after them; written
        once for all the pages at `start` that ask for the same form."""
        end = self.recorded()
        joined = self._joined.get(together)
        if joined is None or joined[:2] != (start, end):
            joined = self._joined[together] = (start, end,
                                               self.render(start, end, together=together))
        return joined[2], end

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    async def write_from(self, response: Sink, index: int, *, together: bool = False) -> int:
        """The records from index `index` on to `response`, a write for each batch (more may
        come while a write waits); the index after the last written."""
        while index < self.recorded():
            joined, index = self.batch(index, together=together)
            await response.write(joined)
        return index

    async def wait_or_keepalive(self, response: Sink) -> None:
        """Until the next record; a comment line to `response` every SSE_KEEPALIVE_SECONDS
        meanwhile (a write to a page that left raises)."""
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), SSE_KEEPALIVE_SECONDS)
        except TimeoutError:
            await response.write(b": keep-alive\n\n")


class RunFeed(Broadcast):
    """One WatchRun per run, shared by every page that follows it: the run's changes are
    read from the store once, however many pages watch (each page reading its own WatchRun
    cost the engine's handoff 1.5x with 20 pages; bench/web.py). Kept while a page follows
    the run; its records are the run's whole history, each change's JSON."""

    def __init__(self, service: WorkflowService, run_id: str) -> None:
        super().__init__()
        self.sequences: list[int] = []  # of each change, in order
        self.changes: list[bytes] = []  # each change's JSON (change_json)
        changes = cast("AsyncGenerator[pb.WatchRunResponse, None]", service.WatchRun(
            pb.WatchRunRequest(run_id=run_id, after_sequence=0), CallContext()))
        self._task = asyncio.ensure_future(self._read(changes))

    async def _read(self, changes: AsyncGenerator[pb.WatchRunResponse, None]) -> None:
        try:
            async for change in changes:
                self.sequences.append(change.sequence)
                self.changes.append(change_json(change))
                self._wake()
        except ServiceError as exc:  # NOT_FOUND; UNAVAILABLE when the daemon stops
            self.error = exc
        except Exception:  # never the daemon's end: the pages' streams end
            log.exception("following a run for the console failed")
        finally:
            self.done = True
            self._wake(now=True)
            await changes.aclose()

    def recorded(self) -> int:
        return len(self.changes)

    def render(self, start: int, end: int, *, together: bool) -> bytes:
        """A `change` event each (its id its sequence), or (`together`) one `changes` event
        of them all, a JSON array, whose id is the last one's sequence."""
        if together:
            return b"id: %d\nevent: changes\ndata: [%s]\n\n" % (
                self.sequences[end - 1], b",".join(self.changes[start:end]))
        return b"".join(b"id: %d\nevent: change\ndata: %s\n\n" % each for each in zip(
            self.sequences[start:end], self.changes[start:end], strict=True))

    def close(self) -> None:
        super().close()
        self._task.cancel()

    async def follow(self, response: Sink, after: int, *, together: bool = False) -> None:
        """Write the changes after sequence `after`, then the new ones, to the end: each
        write every change recorded since the last, as an event each (each its own `id:`,
        so a reconnect resumes exactly after the last one the page read) or (`together`) as
        one event (whose `id:` is its last change's)."""
        index = bisect.bisect_right(self.sequences, after)
        while True:
            index = await self.write_from(response, index, together=together)
            if self.done:
                if self.error is None:
                    await response.write(END_EVENT)
                return
            await self.wait_or_keepalive(response)


class RunFeeds:
    """The runs pages follow, by id: a feed starts with its first page and ends with its
    last."""

    def __init__(self, service: WorkflowService) -> None:
        self._service = service
        self._feeds: dict[str, RunFeed] = {}

    @contextlib.asynccontextmanager
    async def open(self, run_id: str, after: int, *, together: bool = False
                   ) -> AsyncIterator[Follow]:
        """The run's changes after sequence `after`, to its end (`together`: each write's
        changes as one event)."""
        feed = self._feeds.get(run_id)
        if feed is None:
            feed = self._feeds[run_id] = RunFeed(self._service, run_id)
        async with following(self._feeds, run_id, feed,
                             lambda sink: feed.follow(sink, after, together=together)
                             ) as follow:
            yield follow


_Feed = TypeVar("_Feed", bound=Broadcast)


@contextlib.asynccontextmanager
async def following(feeds: dict[str, _Feed], key: str, feed: _Feed, follow: Follow
                    ) -> AsyncIterator[Follow]:
    """One page following `feed`, kept in `feeds` under `key` while a page follows it: the
    feed's error raised when it failed before its first record, else `follow`. The last
    page to leave closes the feed."""
    feed.pages += 1
    try:
        await feed.started.wait()
        if feed.error is not None and not feed.recorded():
            raise feed.error
        yield follow
    finally:
        feed.pages -= 1
        if feed.pages == 0:  # the last page left: stop reading
            feed.close()
            if feeds.get(key) is feed:
                del feeds[key]


async def serve_stream(request: web.Request, opened: Opened) -> web.StreamResponse:
    """A stream as the answer to `request`: its error as the answer when it fails to open
    (a 404 before the stream), else `retry:` and the stream, until its end or the page
    leaves."""
    async with opened as follow:
        response = stream_response()
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the page left
            await response.write(retry_line())
            await follow(response)
    return response


async def next_item(changes: AsyncIterator[_Item]) -> _Item | None:
    """The iterator's next item; None at its end."""
    try:
        return await anext(changes)
    except StopAsyncIteration:
        return None


async def next_or_keepalive(changes: AsyncIterator[_Item], response: Sink, *,
                            pending: asyncio.Future[_Item | None] | None = None
                            ) -> _Item | None:
    """The next change (`pending`'s, when a read of it is under way already); a comment line
    every SSE_KEEPALIVE_SECONDS meanwhile (a proxy or a browser drops a silent connection; a
    write to a closed one raises)."""
    waiting = pending or asyncio.ensure_future(next_item(changes))
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=SSE_KEEPALIVE_SECONDS)
            if done:
                return waiting.result()
            await response.write(b": keep-alive\n\n")
    finally:
        if not waiting.done():
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError, ServiceError):
                await waiting


def change_json(change: pb.WatchRunResponse) -> bytes:
    """A run's change as its events carry it (RunFeed.render), JSON."""
    data: dict[str, Any] = {"sequence": change.sequence,
                            "run_status": status_name(pb.RunStatus, change.run_status),
                            "time": change.event_time.ToMilliseconds() / 1000}
    if change.HasField("node"):
        node = change.node
        data["node"] = {"name": node.name, "status": status_name(pb.NodeStatus, node.status),
                        "attempts": len(node.attempts)}
        if node.attempts:  # the latest, as a node page's attempts table shows it
            data["node"]["attempt"] = attempt_view(node.attempts[-1])
        if len(node.attempts) > 1:
            # WatchRun gives the node as it is when the change is read: a page catching up
            # (shown again, reconnected) gets only the latest state, so the attempts before
            # the latest come too, and a retry that came and went meanwhile is not lost
            data["node"]["earlier"] = [attempt_view(a) for a in node.attempts[:-1]]
    return json.dumps(data, separators=(",", ":")).encode()
