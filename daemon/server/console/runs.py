"""A run's page (`/runs/RUN_ID`: its graph coloured by status, kept live), a node's page
(`/runs/RUN_ID/nodes/NODE`: attempts and the log, followed live; `?format=json` for the run
page's node panel), and the run's actions: Cancel, and Resume from ticked nodes (the dry
run's answer to confirm first)."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Final, cast
from urllib.parse import quote

import grpc
from aiohttp import web

from flowplan.daemon.server.console.feeds import (
    END_EVENT,
    Follow,
    Opened,
    RunFeeds,
    Sink,
    next_item,
    next_or_keepalive,
    serve_stream,
)
from flowplan.daemon.server.console.kit import (
    HTTP_STATUS,
    CallContext,
    Kit,
    Refused,
    ServiceError,
)
from flowplan.daemon.server.console.layouter import Layouter
from flowplan.daemon.server.console.layouts import run_graph, source_query
from flowplan.daemon.server.console.present import (
    attempt_view,
    graph_json,
    status_name,
    struct_json,
    timeline_json,
)
from flowplan.v1 import workflow_service_pb2 as pb

LOG_TAIL_BYTES: Final = 64 * 1024  # of a node's log, shown when its page opens


class RunPages:
    def __init__(self, kit: Kit, layouts: Layouter) -> None:
        self._kit = kit
        self._layouts = layouts
        self._feeds = RunFeeds(kit.service)

    def mount(self, app: web.Application) -> None:
        routes = app.router
        routes.add_get("/runs/{run_id}", self.run)
        routes.add_get("/runs/{run_id}/events", self.events)
        routes.add_get("/runs/{run_id}/nodes/{node}", self.node)
        routes.add_get("/runs/{run_id}/nodes/{node}/log", self.log)
        routes.add_post("/runs/{run_id}/cancel", self.cancel)
        routes.add_post("/runs/{run_id}/resume", self.resume)
        routes.add_get("/runs/{run_id}/resume", self.to_run)  # a refused resume's URL

    def stream(self, parts: tuple[str, ...], query: Mapping[str, str], last_id: str
               ) -> Opened | None:
        """A run's events or a node's log by its URL's path parts, for `/events`."""
        match parts:
            case ("runs", run_id, "events"):
                return self.open_events(run_id, query, last_id)
            case ("runs", run_id, "nodes", name, "log"):
                return self.open_log(run_id, name, query, last_id)
        return None

    async def _get_run(self, run_id: str) -> pb.Run:
        answer = await self._kit.call("GetRun", pb.GetRunRequest(run_id=run_id,
                                                                 include_graph=True))
        run: pb.Run = answer.run
        return run

    async def run(self, request: web.Request) -> web.StreamResponse:
        return await self._run_page(request, request.match_info["run_id"])

    async def _run_page(self, request: web.Request, run_id: str, *,
                        refused: Refused | None = None, ticked: frozenset[str] = frozenset(),
                        status: int = 200) -> web.Response:
        run = await self._get_run(run_id)
        return self._kit.page(
            request, "run.html", run=run, refused=refused, ticked=ticked, status=status,
            graph=graph_json([(n.name, status_name(pb.NodeStatus, n.status))
                              for n in run.nodes], run.edges),
            layout=self._layouts.page(run_graph(run), source_query(run=run.run_id)),
            timeline=timeline_json(run, time.time()),
            params=json.dumps(struct_json(run.params), sort_keys=True))

    async def node(self, request: web.Request) -> web.StreamResponse:
        run_id, name = request.match_info["run_id"], request.match_info["node"]
        run = await self._get_run(run_id)
        node = next((n for n in run.nodes if n.name == name), None)
        if node is None:
            raise ServiceError(grpc.StatusCode.NOT_FOUND,
                               f"run {run_id} has no node '{name[:100]}'")
        if request.query.get("format") == "json":
            return web.json_response(node_view(run, node), dumps=_compact)
        return self._kit.page(request, "node.html", run=run, node=node)

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        self._kit.require(request, "CancelRun")
        run_id = request.match_info["run_id"]
        await self._kit.call("CancelRun", pb.CancelRunRequest(run_id=run_id))
        raise web.HTTPSeeOther(f"/runs/{run_id}")

    async def to_run(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther(f"/runs/{quote(request.match_info['run_id'])}")

    async def resume(self, request: web.Request) -> web.StreamResponse:
        """Ticked nodes: without `confirm`, the dry run's answer to confirm; with it, the
        new run."""
        self._kit.require(request, "ResumeRun")
        run_id = request.match_info["run_id"]
        form = await request.post()
        nodes = [str(n) for n in form.getall("node", [])]
        confirm = form.get("confirm") == "yes"
        remarks = str(form.get("remarks", ""))
        try:
            answer = await self._kit.call("ResumeRun", pb.ResumeRunRequest(
                run_id=run_id, node_names=nodes, dry_run=not confirm, remarks=remarks))
        except ServiceError as exc:  # the run's page again: its message, the boxes ticked
            refused = Refused(form="resume", message=str(exc), values={"remarks": remarks},
                              focus="remarks" if exc.field == "remarks" else "resume")
            try:
                return await self._run_page(request, run_id, refused=refused,
                                            ticked=frozenset(nodes),
                                            status=HTTP_STATUS.get(exc.code, 500))
            except ServiceError:
                raise exc from None
        if confirm:
            raise web.HTTPSeeOther(f"/runs/{answer.run_id}")
        run = (await self._kit.call("GetRun", pb.GetRunRequest(run_id=run_id,
                                                             include_graph=True))).run
        below: dict[str, list[str]] = {}
        for edge in run.edges:
            below.setdefault(edge.upstream, []).append(edge.downstream)
        again: set[str] = set()
        todo = [child for name in answer.node_names for child in below.get(name, ())]
        while todo:  # everything downstream of the nodes that start runs again
            name = todo.pop()
            if name not in again:
                again.add(name)
                todo.extend(below.get(name, ()))
        order = [n.name for n in run.nodes]  # the run's topological order
        starting = set(answer.node_names)
        return self._kit.page(
            request, "resume.html", run_id=run_id, ticked=nodes, answer=answer,
            remarks=remarks, downstream=[n for n in order if n in again and n not in starting],
            copied=[n for n in order if n not in again and n not in starting])

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events of the run's changes, from WatchRun's history: each with its
        sequence number as id, so a reconnecting browser's Last-Event-ID resumes after it."""
        return await serve_stream(request, self.open_events(
            request.match_info["run_id"], request.query,
            request.headers.get("Last-Event-ID", "")))

    @contextlib.asynccontextmanager
    async def open_events(self, run_id: str, query: Mapping[str, str], last_id: str
                          ) -> AsyncIterator[Follow]:
        """The run's changes after `last_id` (a stream's own reconnect), else after
        `?after=`; with `?batch=1` each write's changes as one `changes` event (the
        console's pages: a page handles one event a write, not one a change)."""
        together = query.get("batch", "0")
        if together not in ("0", "1"):
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               "batch must be 1 (the changes of each write as one `changes`"
                               f" event) or 0 (an event each), not '{together[:20]}'")
        after = last_id or query.get("after", "0")
        try:
            after_sequence = max(0, int(after))
        except ValueError:
            after_sequence = 0
        async with self._feeds.open(run_id, after_sequence, together=together == "1"
                                    ) as follow:
            yield follow

    async def log(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events of a node's log (the latest attempt's, or `?attempt=N`'s,
        masked as GetNodeLog masks it), followed until the attempt ends: each event's id is
        the byte offset after the text it carries, so a reconnect (Last-Event-ID) or a page
        shown again (`?offset=N`) goes on from there. A new page starts with the last
        LOG_TAIL_BYTES."""
        return await serve_stream(request, self.open_log(
            request.match_info["run_id"], request.match_info["node"], request.query,
            request.headers.get("Last-Event-ID", "")))

    @contextlib.asynccontextmanager
    async def open_log(self, run_id: str, name: str, query: Mapping[str, str], last_id: str
                       ) -> AsyncIterator[Follow]:
        """A node's log as `log` above streams it, from `last_id` (the byte offset a
        stream's own reconnect reached), else `?offset=`."""
        attempt = _query_number(query, "attempt", "an attempt number (1, 2, ...)",
                                least=1, below=2 ** 31) or 0
        offset = _query_number(query, "offset", "a byte offset of the log (0 or more)",
                               least=0, below=2 ** 63)
        if last_id.isascii() and last_id.isdigit() and int(last_id) < 2 ** 63:
            offset = int(last_id)  # this stream's own reconnect: where it stopped
        context = CallContext()
        chunks = cast("AsyncGenerator[pb.GetNodeLogResponse, None]",
                      self._kit.service.GetNodeLog(pb.GetNodeLogRequest(
                          run_id=run_id, node_name=name, attempt=attempt,
                          offset=-LOG_TAIL_BYTES if offset is None else offset,
                          follow=True),
                          context))
        first = asyncio.ensure_future(next_item(chunks))
        taken = asyncio.ensure_future(context.opened.wait())
        try:
            # an unknown run or node: 404 before the stream. A known one is answered as
            # the service takes it, though no byte may come for long (a node that waits,
            # a quiet log): the stream's keep-alives then notice a page that left.
            await asyncio.wait({first, taken}, return_when=asyncio.FIRST_COMPLETED)
            if first.done():
                first.result()

            async def follow(sink: Sink) -> None:
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
                last = None
                with contextlib.suppress(ServiceError):  # the daemon stops: it reconnects
                    chunk = await next_or_keepalive(chunks, sink, pending=first)
                    while chunk is not None:
                        text = decoder.decode(chunk.data)
                        # the offset after the text sent: a character cut at the chunk's
                        # end is held by the decoder, and read again by a stream resumed
                        # from here
                        end = chunk.offset + len(chunk.data) - len(decoder.getstate()[0])
                        await sink.write(_log_event(end, text, chunk.attempt))
                        last, chunk = chunk, await next_or_keepalive(chunks, sink)
                    if last is not None and (rest := decoder.decode(b"", final=True)):
                        # the attempt ended inside a character: what is left, as U+FFFD
                        await sink.write(_log_event(last.offset + len(last.data), rest,
                                                    last.attempt))
                    await sink.write(END_EVENT)

            yield follow
        finally:
            taken.cancel()
            if not first.done():
                first.cancel()
                with contextlib.suppress(asyncio.CancelledError, ServiceError):
                    await first
            elif not first.cancelled():
                first.exception()  # retrieved: an error the page left before it was sent
            await chunks.aclose()


def node_view(run: pb.Run, node: pb.NodeRun) -> dict[str, object]:
    """A node of a run as the run page's panel gets it (`?format=json`): what its page
    shows, from GetRun's answer (secret values masked as the API masks them)."""
    return {"run": run.run_id, "name": node.name,
            "status": status_name(pb.NodeStatus, node.status), "queue": node.queue,
            "copied_from": node.copied_from_run_id, "skip_reason": node.skip_reason,
            "attempts": [attempt_view(a) for a in node.attempts],
            "run_finished": run.status in (pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED,
                                           pb.RUN_STATUS_CANCELLED)}


def _log_event(end: int, text: str, attempt: int) -> bytes:
    return (f"id: {end}\nevent: log\n"
            f"data: {json.dumps({'text': text, 'attempt': attempt})}\n\n").encode()


def _query_number(query: Mapping[str, str], key: str, meaning: str, *, least: int,
                  below: int) -> int | None:
    """The query parameter `key` as an integer in [least, below) (the range of its field in
    GetNodeLogRequest); None when absent; 400 naming it otherwise."""
    text = query.get(key)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or not least <= int(text) < below:
        raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"{key} must be {meaning}, not '{text[:20]}'")
    return int(text)


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
