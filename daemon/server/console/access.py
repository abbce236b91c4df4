"""Who may come in: login with a token the daemon accepts (`TokenInterceptor.caller`: any
role; without any token configured, as gRPC on loopback, no login is needed and the browser
acts as an admin), the session cookie, the CSRF token every POST must carry (else 403), and
the security headers on every answer (a strict Content-Security-Policy: scripts, styles and
images only from this origin, no inline script or style, no framing)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from flowplan.daemon.server.console.assets import STATIC_PREFIX
from flowplan.daemon.server.console.kit import HTTP_STATUS, SECURITY_HEADERS, Kit, ServiceError
from flowplan.daemon.server.console.sessions import COOKIE, LOCAL, Session
from flowplan.daemon.server.roles import Grant

log = logging.getLogger("flowplan.daemon.console")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def backstop_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The security headers on an answer the middleware never saw: aiohttp's own 500 for
    a fault of a handler (the headers a handler or the middleware set stay)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


class Access:
    """The guard every request passes (`middleware`), and the login and logout pages."""

    def __init__(self, kit: Kit) -> None:
        self._kit = kit
        self._sessions = kit.sessions

    def mount(self, app: web.Application) -> None:
        app.middlewares.append(self.middleware)
        app.on_response_prepare.append(backstop_headers)
        app.router.add_get("/login", self.login_form)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler
                         ) -> web.StreamResponse:
        if request.path == "/metrics":  # its own bearer-token rule (http.py)
            return await handler(request)
        try:
            response = await self._guarded(request, handler)
        except web.HTTPException as exc:
            response = exc
        except ServiceError as exc:
            response = self._kit.page(request, "error.html",
                                      status=HTTP_STATUS.get(exc.code, 500), message=str(exc),
                                      form_page=_form_page(request))
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith(STATIC_PREFIX):
            response.headers["Cache-Control"] = self._kit.assets.cache_control(request)
        return response

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        sid = request.cookies.get(COOKIE)
        session = self._sessions.get(sid)
        if request.method == "POST":
            form = await request.post()
            given = str(form.get("csrf", ""))
            if session is None or not hmac.compare_digest(given.encode(),
                                                          session.csrf.encode()):
                return web.Response(status=403, text="missing or wrong CSRF token: reload"
                                    " the page and submit its form again\n")
        if request.path.startswith("/static/") or request.path == "/login":
            return await handler(request)
        grant = self._sessions.who(session)
        if grant is None:
            if session is not None and session.logged_in:  # its token was revoked
                self._sessions.drop(sid)
            if request.method == "GET" and not request.path.endswith(_STREAMS):
                raise web.HTTPSeeOther("/login")
            return web.Response(status=401, text="log in first: /login\n")
        if session is None:  # no tokens configured: a session only for the CSRF token
            sid, session = self._sessions.new(LOCAL)
            response = await handler(_with(request, session, grant))
            self._kit.set_cookie(response, sid)
            return response
        if self._sessions.login_needed and request.path.endswith(_STREAMS):  # HEAD too
            return await self._while_allowed(handler(_with(request, session, grant)),
                                             request, sid)
        return await handler(_with(request, session, grant))

    async def _while_allowed(self, answer: Awaitable[web.StreamResponse],
                             request: web.Request, sid: str | None) -> web.StreamResponse:
        """An event stream's answer, cut (its connection closed) once its session ends: a
        logout, or its token revoked. The page's reconnection then meets the login."""
        task = asyncio.ensure_future(answer)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=SESSION_RECHECK_SECONDS)
                if done:
                    return task.result()
                session = self._sessions.get(sid)
                if session is None or self._sessions.who(session) is None:
                    log.info("console stream closed: its session ended",
                             extra={"fields": {"path": request.path}})
                    if request.transport is not None:
                        request.transport.close()
                    raise asyncio.CancelledError  # as when the page leaves
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if not self._sessions.login_needed:
            raise web.HTTPSeeOther("/")
        sid = request.cookies.get(COOKIE)
        session = self._sessions.get(sid)
        if session is None:
            sid, session = self._sessions.new(None)
        request["session"] = session
        response = self._kit.page(request, "login.html", problem="")
        assert sid is not None
        self._kit.set_cookie(response, sid)
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        grant = self._sessions.login(str(form.get("token", "")))
        if grant is None:
            request["session"] = self._sessions.get(request.cookies.get(COOKIE))
            return self._kit.page(request, "login.html", status=401,
                                  problem="That token is not one this daemon accepts.")
        self._sessions.drop(request.cookies.get(COOKIE))  # a new id: no session fixation
        sid, _ = self._sessions.new(grant)
        log.info("console login", extra={"fields": {"token": grant.name,
                                                    "role": grant.role.label}})
        response = web.HTTPSeeOther("/")
        self._kit.set_cookie(response, sid)
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self._sessions.drop(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/login" if self._sessions.login_needed else "/")
        response.del_cookie(COOKIE, path="/")
        raise response


def _with(request: web.Request, session: Session, grant: Grant) -> web.Request:
    request["session"], request["grant"] = session, grant
    return request


_STREAMS: Final = ("/events", "/log")  # the console's event streams, by their paths' ends
SESSION_RECHECK_SECONDS: Final = 2.0  # how soon an open stream ends after its session does


# the section of its page that a refused form was sent from: POST /workflows/W/runs came
# from /workflows/W#run-section
_FORM_SECTIONS: Final = {"runs": "#run-section", "backfills": "#backfill-section"}


def _form_page(request: web.Request) -> str | None:
    """Where the form of a refused POST is, for a link back to it (its own path's parent)."""
    if request.method != "POST" or request.path.count("/") < 2:
        return None
    page, _, action = request.path.rstrip("/").rpartition("/")
    return page + (_FORM_SECTIONS.get(action, "") if page.startswith("/workflows/") else "")
