"""The web console (`--http`): server-rendered pages over the same WorkflowService the gRPC
clients call, in process. Every read and action goes through the service's method (its
checks, its masking of secret values, its errors), so the console can show nothing and do
nothing the API would not.

Security, in one place here:
- Login with a token the daemon accepts (`TokenInterceptor.caller`: any role); without any
  token configured (loopback, as gRPC) no login is needed and the browser acts as an admin.
- A session is a random id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over
  HTTPS), kept in memory (a restart logs everyone out); the token behind it is judged again
  on every request, so a token revoked by SIGHUP ends its sessions.
- Every POST needs the session's CSRF token in its form (else 403); the roles are
  `auth.least_role` of the RPC an action calls (a viewer gets 403 and sees no buttons).
- Every answer carries a strict Content-Security-Policy: scripts, styles and images only
  from this origin, no inline script or style, no framing.
"""

from __future__ import annotations

import asyncio
import bisect
import codecs
import contextlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar, cast

import grpc
import jinja2
from aiohttp import web
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from flowplan.daemon.server.auth import least_role
from flowplan.daemon.server.roles import Grant, Role
from flowplan.daemon.server.service import WorkflowService
from flowplan.v1 import workflow_service_pb2 as pb

log = logging.getLogger("flowplan.daemon.console")

HERE: Final = Path(__file__).parent
COOKIE: Final = "flowplan_session"
SESSION_SECONDS: Final = 12 * 3600  # a session unused this long is forgotten
MAX_SESSIONS: Final = 10_000  # beyond, the oldest go: a login flood cannot fill memory
HISTORY_PAGE: Final = 20
SSE_KEEPALIVE_SECONDS: Final = 15.0
SSE_RETRY_MILLISECONDS: Final = 1000  # a browser reconnects this soon (a daemon restarted)
CSP: Final = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
              " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
              " frame-ancestors 'none'")
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
LOCAL: Final = Grant(name="local", role=Role.ADMIN, token="")  # no tokens configured

LOG_TAIL_BYTES: Final = 64 * 1024  # of a node's log, shown when its page opens
_Item = TypeVar("_Item")
Caller = Callable[[bytes], Grant | None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_name(enum: Any, value: int) -> str:
    """RUN_STATUS_SUCCEEDED as SUCCEEDED: the names the pages' data-status attributes use."""
    name: str = enum.Name(value)
    unset: str = enum.DESCRIPTOR.values_by_number[0].name
    return name[len(unset) - len("UNSPECIFIED"):]


# ---- sessions -------------------------------------------------------------------------------

@dataclass(slots=True)
class Session:
    csrf: str
    grant: Grant | None  # None: not logged in yet (the login form's CSRF token only)
    used: float = field(default_factory=time.monotonic)


class Sessions:
    """Random session ids -> who logged in, in memory."""

    def __init__(self, caller: Caller | None) -> None:
        self._caller = caller
        self._by_id: dict[str, Session] = {}

    @property
    def login_needed(self) -> bool:
        return self._caller is not None

    def get(self, sid: str | None) -> Session | None:
        session = self._by_id.get(sid or "")
        if session is None or time.monotonic() - session.used > SESSION_SECONDS:
            self._by_id.pop(sid or "", None)
            return None
        session.used = time.monotonic()
        return session

    def new(self, grant: Grant | None) -> tuple[str, Session]:
        """A session; when MAX_SESSIONS are kept, the oldest not logged in goes first (the
        login form makes one for anyone: it must not push out who logged in)."""
        if len(self._by_id) >= MAX_SESSIONS:
            oldest = next((sid for sid, s in self._by_id.items() if s.grant is None),
                          next(iter(self._by_id)))
            self._by_id.pop(oldest)
        sid = secrets.token_urlsafe(32)
        session = self._by_id[sid] = Session(csrf=secrets.token_urlsafe(32), grant=grant)
        return sid, session

    def drop(self, sid: str | None) -> None:
        self._by_id.pop(sid or "", None)

    def who(self, session: Session | None) -> Grant | None:
        """The session's caller, with its token judged again (a revoked token: None)."""
        if self._caller is None:
            return LOCAL
        if session is None or session.grant is None:
            return None
        return self._caller(session.grant.token.encode())

    def login(self, token: str) -> Grant | None:
        return self._caller(token.strip().encode()) if self._caller is not None else LOCAL


# ---- the service, called in process ---------------------------------------------------------

class ServiceError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Context:
    """The little of a grpc ServicerContext the service's methods use: an abort raises."""

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise ServiceError(code, details)

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        code: grpc.StatusCode = status.code
        raise ServiceError(code, status.details)


_HTTP_STATUS: Final = {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INVALID_ARGUMENT: 400,
                       grpc.StatusCode.FAILED_PRECONDITION: 409,
                       grpc.StatusCode.PERMISSION_DENIED: 403,
                       grpc.StatusCode.UNAVAILABLE: 503}


# ---- the console ----------------------------------------------------------------------------

class Console:
    def __init__(self, service: WorkflowService, caller: Caller | None, *, https: bool
                 ) -> None:
        self._service = service
        self.sessions = Sessions(caller)
        self._https = https
        self._feeds: dict[str, RunFeed] = {}  # the runs pages follow, by id
        self._pages = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
            undefined=jinja2.StrictUndefined)
        self._pages.filters["when"] = _when
        self._pages.globals["status_name"] = status_name
        self._pages.globals["pb"] = pb

    def mount(self, app: web.Application) -> None:
        app.middlewares.append(self._guard)
        routes = app.router
        routes.add_get("/", self.workflows)
        routes.add_get("/login", self.login_form)
        routes.add_post("/login", self.login)
        routes.add_post("/logout", self.logout)
        routes.add_get("/workflows/{name}", self.workflow)
        routes.add_post("/workflows/{name}/scheduling", self.set_scheduling)
        routes.add_post("/workflows/{name}/runs", self.start_run)
        routes.add_post("/workflows/{name}/backfills", self.start_backfill)
        routes.add_get("/backfills/{backfill_id}", self.backfill)
        routes.add_post("/backfills/{backfill_id}/cancel", self.cancel_backfill)
        routes.add_get("/runs/{run_id}", self.run)
        routes.add_get("/runs/{run_id}/events", self.events)
        routes.add_get("/runs/{run_id}/nodes/{node}", self.node)
        routes.add_get("/runs/{run_id}/nodes/{node}/log", self.log)
        routes.add_post("/runs/{run_id}/cancel", self.cancel)
        routes.add_post("/runs/{run_id}/resume", self.resume)
        routes.add_static("/static", HERE / "static", append_version=False)

    # -- the guard: sessions, login, CSRF, headers -------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/metrics":  # its own bearer-token rule (http.py)
            return await handler(request)
        try:
            response = await self._guarded(request, handler)
        except web.HTTPException as exc:
            response = exc
        except ServiceError as exc:
            response = self._page(request, "error.html", status=_HTTP_STATUS.get(exc.code, 500),
                                  message=str(exc))
        response.headers.update(SECURITY_HEADERS)
        return response

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        sid = request.cookies.get(COOKIE)
        session = self.sessions.get(sid)
        if request.method == "POST":
            form = await request.post()
            given = str(form.get("csrf", ""))
            if session is None or not hmac.compare_digest(given.encode(),
                                                          session.csrf.encode()):
                return web.Response(status=403, text="missing or wrong CSRF token: reload"
                                    " the page and submit its form again\n")
        if request.path.startswith("/static/") or request.path == "/login":
            return await handler(request)
        grant = self.sessions.who(session)
        if grant is None:
            if session is not None and session.grant is not None:  # its token was revoked
                self.sessions.drop(sid)
            if request.method == "GET" and not request.path.endswith("/events"):
                raise web.HTTPSeeOther("/login")
            return web.Response(status=401, text="log in first: /login\n")
        if session is None:  # no tokens configured: a session only for the CSRF token
            sid, session = self.sessions.new(LOCAL)
            response = await handler(self._with(request, session, grant))
            self._set_cookie(response, sid)
            return response
        return await handler(self._with(request, session, grant))

    @staticmethod
    def _with(request: web.Request, session: Session, grant: Grant) -> web.Request:
        request["session"], request["grant"] = session, grant
        return request

    def _set_cookie(self, response: web.StreamResponse, sid: str) -> None:
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", secure=self._https,
                            path="/")

    def _may(self, request: web.Request, method: str) -> bool:
        grant: Grant = request["grant"]
        return grant.role >= least_role(method)

    def _require(self, request: web.Request, method: str) -> None:
        if not self._may(request, method):
            grant: Grant = request["grant"]
            raise ServiceError(grpc.StatusCode.PERMISSION_DENIED,
                               f"{method} needs the role {least_role(method).label} (or"
                               f" higher); {grant.name} has the role {grant.role.label}")

    def _page(self, request: web.Request, template: str, *, status: int = 200,
              **values: Any) -> web.Response:
        session: Session | None = request.get("session")
        grant: Grant | None = request.get("grant")
        body = self._pages.get_template(template).render(
            csrf=session.csrf if session else "", who=grant,
            login_needed=self.sessions.login_needed,
            may=lambda method: grant is not None and grant.role >= least_role(method),
            **values)
        return web.Response(text=body, status=status, content_type="text/html",
                            charset="utf-8")

    # -- login -----------------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if not self.sessions.login_needed:
            raise web.HTTPSeeOther("/")
        sid = request.cookies.get(COOKIE)
        session = self.sessions.get(sid)
        if session is None:
            sid, session = self.sessions.new(None)
        request["session"] = session
        response = self._page(request, "login.html", problem="")
        assert sid is not None
        self._set_cookie(response, sid)
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        grant = self.sessions.login(str(form.get("token", "")))
        if grant is None:
            request["session"] = self.sessions.get(request.cookies.get(COOKIE))
            return self._page(request, "login.html", status=401,
                              problem="That token is not one this daemon accepts.")
        self.sessions.drop(request.cookies.get(COOKIE))  # a new id: no session fixation
        sid, _ = self.sessions.new(grant)
        log.info("console login", extra={"fields": {"token": grant.name,
                                                    "role": grant.role.label}})
        response = web.HTTPSeeOther("/")
        self._set_cookie(response, sid)
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.drop(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/login" if self.sessions.login_needed else "/")
        response.del_cookie(COOKIE, path="/")
        raise response

    # -- pages -----------------------------------------------------------------------------

    async def _call(self, method: str, request: Message) -> Any:
        answer = await getattr(self._service, method)(request, _Context())
        if isinstance(answer, bytes):  # GetRun answers serialized bytes
            return pb.GetRunResponse.FromString(answer)
        return answer

    async def workflows(self, request: web.Request) -> web.StreamResponse:
        name_filter = request.query.get("name", "").strip()
        tag = request.query.get("tag", "").strip()
        rows = []
        token = ""
        while True:
            page = await self._call("ListWorkflows", pb.ListWorkflowsRequest(
                page_size=1000, page_token=token))
            rows.extend(page.workflows)
            token = page.next_page_token
            if not token:
                break
        if tag:
            tagged = {w.name for w in await self._workflows_tagged(tag)}
            rows = [w for w in rows if w.name in tagged]
        if name_filter:
            rows = [w for w in rows if name_filter.lower() in w.name.lower()]
        shown = []
        for workflow in rows:
            runs = await self._call("ListRuns", pb.ListRunsRequest(workflow=workflow.name,
                                                                   page_size=10))
            version = await self._call("ListPlanVersions", pb.ListPlanVersionsRequest(
                workflow=workflow.name, page_size=1))
            shown.append({"w": workflow, "schedule": schedule_words(workflow),
                          "runs": list(reversed(runs.runs)),
                          "version": version.plan_versions[0] if version.plan_versions
                          else None})
        return self._page(request, "workflows.html", rows=shown, name=name_filter, tag=tag)

    async def _workflows_tagged(self, tag: str) -> list[pb.Workflow]:
        """The workflows ListRuns' tag filter matches (the same rule: on the workflow or
        one of its nodes)."""
        found = []
        token = ""
        while True:
            page = await self._call("ListWorkflows", pb.ListWorkflowsRequest(
                page_size=1000, page_token=token))
            for workflow in page.workflows:
                key, sep, value = tag.partition("=")
                for tags in [workflow.tags, *(n.tags for n in workflow.nodes)]:
                    if key in tags and (not sep or tags[key] == value):
                        found.append(workflow)
                        break
            token = page.next_page_token
            if not token:
                return found

    async def workflow(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        version = request.query.get("version", "")
        if version and not version.isdigit():
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"version must be a version number, not '{version[:20]}'")
        answer = await self._call("GetWorkflow", pb.GetWorkflowRequest(
            workflow=name, plan_version=int(version or 0)))
        versions = await self._call("ListPlanVersions",
                                    pb.ListPlanVersionsRequest(workflow=name, page_size=50))
        page_token = request.query.get("page", "")
        runs = await self._call("ListRuns", pb.ListRunsRequest(
            workflow=name, page_size=HISTORY_PAGE, page_token=page_token))
        params = json_format.MessageToDict(answer.workflow.params)
        return self._page(request, "workflow.html", w=answer.workflow,
                          schedule=schedule_words(answer.workflow),
                          versions=versions.plan_versions, runs=runs.runs,
                          next_page=runs.next_page_token,
                          graph=graph_json([(n.name, None) for n in answer.workflow.nodes],
                                           answer.workflow.edges),
                          params=json.dumps(params, indent=2, sort_keys=True))

    async def run(self, request: web.Request) -> web.StreamResponse:
        run_id = request.match_info["run_id"]
        answer = await self._call("GetRun", pb.GetRunRequest(run_id=run_id,
                                                             include_graph=True))
        run = answer.run
        return self._page(request, "run.html", run=run, graph=graph_json(
            [(n.name, status_name(pb.NodeStatus, n.status)) for n in run.nodes], run.edges),
                          params=json.dumps(json_format.MessageToDict(answer.run.params),
                                            sort_keys=True))

    async def node(self, request: web.Request) -> web.StreamResponse:
        run_id, name = request.match_info["run_id"], request.match_info["node"]
        answer = await self._call("GetRun", pb.GetRunRequest(run_id=run_id,
                                                             include_graph=True))
        node = next((n for n in answer.run.nodes if n.name == name), None)
        if node is None:
            raise ServiceError(grpc.StatusCode.NOT_FOUND,
                               f"run {run_id} has no node '{name[:100]}'")
        return self._page(request, "node.html", run=answer.run, node=node)

    # -- actions ---------------------------------------------------------------------------

    async def set_scheduling(self, request: web.Request) -> web.StreamResponse:
        self._require(request, "SetSchedulingStatus")
        form = await request.post()
        await self._call("SetSchedulingStatus", pb.SetSchedulingStatusRequest(
            workflow=request.match_info["name"], enabled=form.get("enabled") == "on"))
        raise web.HTTPSeeOther(str(form.get("back", "/")) if str(form.get("back", "/"))
                               .startswith("/") else "/")

    async def start_run(self, request: web.Request) -> web.StreamResponse:
        self._require(request, "StartRun")
        form = await request.post()
        params = struct_pb2.Struct()
        text = str(form.get("params", "")).strip()
        if text:
            try:
                json_format.Parse(text, params)
            except json_format.ParseError as exc:
                raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"params must be a JSON object: {exc}") from exc
        answer = await self._call("StartRun", pb.StartRunRequest(
            workflow=request.match_info["name"], params=params,
            queue=str(form.get("queue", "")).strip(), remarks=str(form.get("remarks", ""))))
        raise web.HTTPSeeOther(f"/runs/{answer.run.run_id}")

    async def start_backfill(self, request: web.Request) -> web.StreamResponse:
        """Without `confirm`, the dry run's logical times to confirm; with it, the backfill.
        A viewer may see the dry run (a read, as in the API), not start it."""
        form = await request.post()
        confirm = form.get("confirm") == "yes"
        self._require(request, "StartBackfill" if confirm else "GetBackfill")
        name = request.match_info["name"]
        fields = {k: str(form.get(k, "")).strip() for k in (
            "start", "end", "queue", "parallel", "reprocess", "remarks", "emails")}
        reprocess = {"": pb.REPROCESS_UNSPECIFIED, "all": pb.REPROCESS_ALL,
                     "missing": pb.REPROCESS_MISSING, "failed": pb.REPROCESS_FAILED}
        if fields["reprocess"] not in reprocess:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               "reprocess must be all, missing or failed")
        try:
            parallel = int(fields["parallel"] or 0)
        except ValueError:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               "parallel runs must be a whole number (0: the workflow's"
                               " max_active_runs)") from None
        backfill = pb.StartBackfillRequest(
            workflow=name, start_time=_form_time(fields["start"], "start"),
            end_time=_form_time(fields["end"], "end"), queue=fields["queue"],
            remarks=fields["remarks"], max_parallel_runs=parallel, dry_run=not confirm,
            reprocess=reprocess[fields["reprocess"]],
            failure_emails=[e.strip() for e in fields["emails"].split(",") if e.strip()])
        answer = await self._call("StartBackfill", backfill)
        if confirm:
            raise web.HTTPSeeOther(f"/backfills/{answer.backfill_id}")
        return self._page(request, "backfill_preview.html", workflow=name, fields=fields,
                          times=[t.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                                 for t in answer.logical_times])

    async def backfill(self, request: web.Request) -> web.StreamResponse:
        backfill_id = request.match_info["backfill_id"]
        answer = await self._call("GetBackfill", pb.GetBackfillRequest(backfill_id=backfill_id))
        runs = await self._call("ListRuns", pb.ListRunsRequest(backfill_id=backfill_id,
                                                               page_size=1000))
        return self._page(request, "backfill.html", b=answer.backfill, runs=runs.runs)

    async def cancel_backfill(self, request: web.Request) -> web.StreamResponse:
        self._require(request, "CancelBackfill")
        backfill_id = request.match_info["backfill_id"]
        await self._call("CancelBackfill", pb.CancelBackfillRequest(backfill_id=backfill_id))
        raise web.HTTPSeeOther(f"/backfills/{backfill_id}")

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        self._require(request, "CancelRun")
        run_id = request.match_info["run_id"]
        await self._call("CancelRun", pb.CancelRunRequest(run_id=run_id))
        raise web.HTTPSeeOther(f"/runs/{run_id}")

    async def resume(self, request: web.Request) -> web.StreamResponse:
        """Ticked nodes: without `confirm`, the dry run's answer to confirm; with it, the
        new run."""
        self._require(request, "ResumeRun")
        run_id = request.match_info["run_id"]
        form = await request.post()
        nodes = [str(n) for n in form.getall("node", [])]
        confirm = form.get("confirm") == "yes"
        answer = await self._call("ResumeRun", pb.ResumeRunRequest(
            run_id=run_id, node_names=nodes, dry_run=not confirm,
            remarks=str(form.get("remarks", ""))))
        if confirm:
            raise web.HTTPSeeOther(f"/runs/{answer.run_id}")
        return self._page(request, "resume.html", run_id=run_id, ticked=nodes, answer=answer,
                          remarks=str(form.get("remarks", "")))

    # -- live updates ----------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events of the run's changes, from WatchRun's history: each with its
        sequence number as id, so a reconnecting browser's Last-Event-ID resumes after it."""
        run_id = request.match_info["run_id"]
        after = request.headers.get("Last-Event-ID", request.query.get("after", "0"))
        try:
            after_sequence = max(0, int(after))
        except ValueError:
            after_sequence = 0
        feed = self._feeds.get(run_id)
        if feed is None:
            feed = self._feeds[run_id] = RunFeed(self._service, run_id)
        feed.pages += 1
        try:
            await feed.started.wait()
            if feed.error is not None and not feed.events:  # e.g. NOT_FOUND: before the stream
                raise feed.error
            response = web.StreamResponse(headers={
                "Content-Type": "text/event-stream", "Cache-Control": "no-store",
                "X-Accel-Buffering": "no", **SECURITY_HEADERS})
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError):  # the page left
                await response.write(f"retry: {SSE_RETRY_MILLISECONDS}\n\n".encode())
                await feed.follow(response, after_sequence)
        finally:
            feed.pages -= 1
            if feed.pages == 0:  # the last page left: stop following the run
                feed.close()
                if self._feeds.get(run_id) is feed:
                    del self._feeds[run_id]
        return response


    async def log(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events of a node's log (the latest attempt's, masked as GetNodeLog
        masks it), followed until the attempt ends: each event's id is the byte offset after
        it, so a reconnect (Last-Event-ID) goes on from there. A new page starts with the
        last LOG_TAIL_BYTES."""
        run_id, name = request.match_info["run_id"], request.match_info["node"]
        after = request.headers.get("Last-Event-ID", "")
        offset = int(after) if after.isdigit() else -LOG_TAIL_BYTES
        chunks = cast("AsyncGenerator[pb.GetNodeLogResponse, None]", self._service.GetNodeLog(
            pb.GetNodeLogRequest(run_id=run_id, node_name=name, offset=offset, follow=True),
            _Context()))
        first = await _next(chunks)  # an unknown run or node: 404 before the stream
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no", **SECURITY_HEADERS})
        await response.prepare(request)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            await response.write(f"retry: {SSE_RETRY_MILLISECONDS}\n\n".encode())
            chunk = first
            while chunk is not None:
                text = decoder.decode(chunk.data)
                end = chunk.offset + len(chunk.data)
                await response.write((f"id: {end}\nevent: log\ndata: "
                                      f"{json.dumps({'text': text, 'attempt': chunk.attempt})}"
                                      "\n\n").encode())
                chunk = await _next_or_keepalive(chunks, response)
            await response.write(b"event: end\ndata: {}\n\n")
        except (ConnectionResetError, ServiceError):
            pass
        finally:
            await chunks.aclose()
        return response


class RunFeed:
    """One WatchRun per run, shared by every page that follows it: the run's changes are
    read from the store once, however many pages watch (each page reading its own WatchRun
    cost the engine's handoff 1.5x with 20 pages; bench/web.py). Kept while a page follows
    the run; its events are the run's whole history, as SSE bytes."""

    def __init__(self, service: WorkflowService, run_id: str) -> None:
        self.events: list[tuple[int, bytes]] = []  # (sequence, the event as sent)
        self.error: ServiceError | None = None
        self.done = False
        self.pages = 0
        self.started = asyncio.Event()  # the first event, or the end
        self._changed = asyncio.Event()
        changes = cast("AsyncGenerator[pb.WatchRunResponse, None]", service.WatchRun(
            pb.WatchRunRequest(run_id=run_id, after_sequence=0), _Context()))
        self._task = asyncio.ensure_future(self._read(changes))

    async def _read(self, changes: AsyncGenerator[pb.WatchRunResponse, None]) -> None:
        try:
            async for change in changes:
                self.events.append((change.sequence, _sse(change)))
                self._wake()
        except ServiceError as exc:  # NOT_FOUND; UNAVAILABLE when the daemon stops
            self.error = exc
        except Exception:  # never the daemon's end: the pages' streams end
            log.exception("following a run for the console failed")
        finally:
            self.done = True
            self._wake()
            await changes.aclose()

    def close(self) -> None:
        self._task.cancel()

    def _wake(self) -> None:
        self.started.set()
        self._changed.set()
        self._changed = asyncio.Event()

    async def follow(self, response: web.StreamResponse, after: int) -> None:
        """Write the events after sequence `after`, then each new one, to the end."""
        index = bisect.bisect_right([sequence for sequence, _ in self.events], after)
        while True:
            while index < len(self.events):
                await response.write(self.events[index][1])
                index += 1
            if self.done:
                if self.error is None:
                    await response.write(b"event: end\ndata: {}\n\n")
                return
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), SSE_KEEPALIVE_SECONDS)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")


async def _next(changes: AsyncIterator[_Item]) -> _Item | None:
    try:
        return await anext(changes)
    except StopAsyncIteration:
        return None


async def _next_or_keepalive(changes: AsyncIterator[_Item],
                             response: web.StreamResponse) -> _Item | None:
    """The next change; a comment line every SSE_KEEPALIVE_SECONDS meanwhile (a proxy or a
    browser drops a silent connection; a write to a closed one raises)."""
    waiting = asyncio.ensure_future(_next(changes))
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


def _sse(change: pb.WatchRunResponse) -> bytes:
    data: dict[str, Any] = {"sequence": change.sequence,
                            "run_status": status_name(pb.RunStatus, change.run_status),
                            "time": change.event_time.ToMilliseconds() / 1000}
    if change.HasField("node"):
        node = change.node
        data["node"] = {"name": node.name, "status": status_name(pb.NodeStatus, node.status),
                        "attempts": len(node.attempts)}
        if node.attempts:  # the latest, as a node page's attempts table shows it
            latest = node.attempts[-1]
            data["node"]["attempt"] = {
                "number": latest.number,
                "status": status_name(pb.AttemptStatus, latest.status),
                "started": _when(latest, "started_at"), "finished": _when(latest, "finished_at"),
                "exit_code": latest.exit_code if latest.HasField("exit_code") else None,
                "error": latest.error, "spark": latest.spark_application_id}
    return (f"id: {change.sequence}\nevent: change\n"
            f"data: {json.dumps(data, separators=(',', ':'))}\n\n").encode()


def _form_time(text: str, name: str) -> timestamp_pb2.Timestamp:
    """A form's time: ISO 8601 with a zone (`2026-01-31T02:00:00Z`); a date or a time
    without a zone is UTC (what `<input type=datetime-local>` sends)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"{name} must be a time such as 2026-01-31T02:00:00Z (a time"
                           " without a zone is UTC)") from None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return stamp


def graph_json(nodes: Iterable[tuple[str, str | None]], edges: Iterable[pb.Edge]) -> str:
    """What graph.js draws: `{"nodes": [{"name", "status"}], "edges": [[up, down]]}`."""
    return json.dumps({"nodes": [{"name": name, "status": status} for name, status in nodes],
                       "edges": [[e.upstream, e.downstream] for e in edges]},
                      separators=(",", ":"))


def schedule_words(workflow: pb.Workflow) -> str:
    """A workflow's schedule in words, with its time zone."""
    if not workflow.HasField("schedule"):
        return "manual only"
    schedule = workflow.schedule
    zone = f" ({schedule.timezone})" if schedule.timezone else ""
    if schedule.kind == pb.SCHEDULE_KIND_DAILY:
        return f"every day at {schedule.at}{zone}"
    if schedule.kind == pb.SCHEDULE_KIND_INTERVAL:
        every = schedule.every_seconds
        step = (f"{every // 3600} hours" if every % 3600 == 0 else
                f"{every // 60} minutes" if every % 60 == 0 else f"{every} seconds")
        return (f"every {step} from {schedule.window_start} to {schedule.window_end}{zone}")
    if schedule.kind == pb.SCHEDULE_KIND_CRON:
        return f"cron {schedule.cron}{zone}"
    return "unknown schedule"


def _when(message: Message, name: str) -> str:
    """A timestamp field as `2026-01-31 02:00:00 UTC`; empty when unset."""
    if not message.HasField(name):
        return ""
    stamp = getattr(message, name).ToDatetime(tzinfo=UTC)
    assert isinstance(stamp, datetime)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")
