"""Many pages' event streams in one connection: `GET /events?s=URL&last=ID&s=...`.

A browser opens at most 6 HTTP/1.1 connections to one host, and each live page's stream
holds one. So the console's pages ask one `SharedWorker` per browser
(static/stream-worker.js) how to connect: a browser's streams beyond its first 5 share one
connection, which the worker follows here. Each `s` is a stream's own URL (a run's, a
log's or a backfill's events, as a page would open it) and its `last` the id of the last
event the worker read of it (empty: none yet), as its Last-Event-ID would say. The answer
is the streams' events, each tagged with a `stream:` field, its index among the `s`:

    event: open          the stream is followed (its events come after)
    event: failed        it could not be: data {"status": 404, "message": "..."}
    event: change ...    its own events (`id:`, `event:`, `data:` as on its own URL)
    event: end           it ended (the worker drops it)

A stream whose reader stops without its end (the daemon stopping) ends the answer, so the
worker reconnects after `retry:`, each stream from its `last`. When the set of shared
streams changes (a page opened, hidden or closed) the worker opens a new answer and drops
the old.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import grpc
from aiohttp import web
from yarl import URL

from flowplan.daemon.server.console.feeds import (
    END_EVENT,
    Opened,
    retry_line,
    stream_response,
)
from flowplan.daemon.server.console.kit import HTTP_STATUS, ServiceError

MAX_STREAMS: Final = 64  # in one answer (the worker splits more; its URL stays < 8 KiB)
# A stream's path as parts ("runs", RUN_ID, "events"), its query and its last id: the
# stream opened, or None when the path is not one a stream may have.
Opener = Callable[[tuple[str, ...], Mapping[str, str], str], Opened | None]


class Multiplex:
    """`/events`: the streams that `openers` know (each tried in turn), followed in one
    answer."""

    def __init__(self, openers: list[Opener]) -> None:
        self._openers = openers

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/events", self.events)

    async def events(self, request: web.Request) -> web.StreamResponse:
        streams = self._streams(request.query.getall("s", []),
                                request.query.getall("last", []))
        response = stream_response()
        await response.prepare(request)
        lock = asyncio.Lock()

        async def write(data: bytes) -> None:
            async with lock:  # each write whole: the streams' events never interleave
                await response.write(data)

        tasks = [asyncio.ensure_future(_follow(index, url, opened, write))
                 for index, (url, opened) in enumerate(streams)]
        try:
            await write(retry_line())
            for task in asyncio.as_completed(tasks):
                if not await task:  # its reader stopped without its end: reconnect
                    break
        except ConnectionResetError:  # the worker left, or dropped this answer
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return response

    def _streams(self, urls: list[str], lasts: list[str]) -> list[tuple[str, Opened]]:
        """Each `s` opened (not yet entered), or a 400 that names the wrong parameter."""
        if not urls:
            raise _invalid("s must name at least one stream's URL, e.g."
                           " s=/runs/RUN_ID/events")
        if len(urls) > MAX_STREAMS:
            raise _invalid(f"s names {len(urls)} streams; at most {MAX_STREAMS} may share"
                           " one connection")
        if len(lasts) != len(urls):
            raise _invalid(f"last must come once for each s ({len(urls)}), empty for a"
                           f" stream with no event read yet, not {len(lasts)} times")
        streams = []
        for index, (text, last) in enumerate(zip(urls, lasts, strict=True)):
            try:
                url: URL | None = URL(text)
            except ValueError:  # `http://[::1`: not a URL at all
                url = None
            opened = None
            if url is not None and not url.is_absolute() and text.startswith("/"):
                parts = url.parts[1:]
                for opener in self._openers:
                    if (opened := opener(parts, url.query, last)) is not None:
                        break
            if opened is None:
                raise _invalid(f"s #{index + 1} '{text[:80]}' is not an event stream's URL"
                               " (/runs/RUN_ID/events, /runs/RUN_ID/nodes/NODE/log or"
                               " /backfills/BACKFILL_ID/events)")
            streams.append((text, opened))
        return streams


async def _follow(index: int, url: str, opened: Opened,
                  write: Callable[[bytes], Awaitable[None]]) -> bool:
    """Stream `index` into the answer, each of its events tagged: True once it has ended
    (`end`) or could not be followed (`failed`), False if its reader stopped without its
    end."""
    sink = _Tagged(index, write)
    try:
        async with opened as follow:
            await write(_event(index, "open", {}))
            await follow(sink)
    except ServiceError as exc:  # before its first event: e.g. NOT_FOUND
        await write(_event(index, "failed", {
            "status": HTTP_STATUS.get(exc.code, 500), "message": str(exc), "url": url}))
        return True
    return sink.ended


class _Tagged:
    """One stream's share of the answer: its events with their `stream:` field."""

    def __init__(self, index: int, write: Callable[[bytes], Awaitable[None]]) -> None:
        self._tag = f"\nstream: {index}\n\n".encode()
        self._write = write
        self.ended = False

    async def write(self, data: bytes) -> None:
        # an event ends with a blank line and no field holds a newline (data is JSON), so
        # each event's end gets the field; a keep-alive comment's too, harmlessly
        if data.endswith(END_EVENT):
            self.ended = True
        await self._write(data.replace(b"\n\n", self._tag))


def _event(index: int, name: str, data: Mapping[str, object]) -> bytes:
    return (f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n"
            f"stream: {index}\n\n").encode()


def _invalid(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message)
