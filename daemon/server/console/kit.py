"""What every console page uses: the service called in process (its errors as
`ServiceError`), a page rendered from its template, and the role an action needs."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn, ParamSpec, TypeVar

import grpc
import jinja2
from aiohttp import web
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from flowplan.daemon.server.auth import least_role
from flowplan.daemon.server.console.assets import Assets
from flowplan.daemon.server.console.present import (
    breakable,
    breakable_name,
    file_span,
    run_duration,
    run_seconds,
    status_name,
    when,
    when_lines,
)
from flowplan.daemon.server.console.sessions import COOKIE, Session, Sessions
from flowplan.daemon.server.roles import Grant
from flowplan.daemon.server.service import WorkflowService
from flowplan.v1 import workflow_service_pb2 as pb

log = logging.getLogger("flowplan.daemon.console")
_T = TypeVar("_T")
_P = ParamSpec("_P")

SERVER: Final = Path(__file__).parent.parent  # templates/ and static/ live there
CSP: Final = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
              " connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
              " frame-ancestors 'none'")
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
HTTP_STATUS: Final = {grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.INVALID_ARGUMENT: 400,
                      grpc.StatusCode.FAILED_PRECONDITION: 409,
                      grpc.StatusCode.PERMISSION_DENIED: 403,
                      grpc.StatusCode.UNAVAILABLE: 503}


class ServiceError(Exception):
    """A service method's abort: its gRPC code, its message and the request field it names
    ('' when none)."""

    def __init__(self, code: grpc.StatusCode, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.field = field


@dataclass(frozen=True, slots=True)
class Refused:
    """A form the daemon refused, shown again on its page: the message beside the form,
    what was typed kept, and the input the message is about focused (the browser scrolls
    to it)."""

    form: str  # the form's name on its page: "run", "backfill", "resume"
    message: str
    values: Mapping[str, str]
    focus: str  # an input's name


def whole_number(text: str, name: str, wanted: str, *, field: str = "") -> int:
    """`text` as a whole number from 0 to 999,999,999 (what fits every int32 field), or
    INVALID_ARGUMENT naming `name` and saying what is `wanted`."""
    if not re.fullmatch(r"[0-9]{1,9}", text):
        raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"{name} must be {wanted}, not '{text[:20]}'", field=field)
    return int(text)


def _field_of(status: grpc.Status) -> str:
    """The request field a service's refusal names: its BadRequest or ErrorInfo detail."""
    for key, value in status.trailing_metadata or ():
        if key != "grpc-status-details-bin":
            continue
        for detail in status_pb2.Status.FromString(value).details:
            bad, info = error_details_pb2.BadRequest(), error_details_pb2.ErrorInfo()
            if detail.Unpack(bad) and bad.field_violations:
                return str(bad.field_violations[0].field)
            if detail.Unpack(info):
                return str(info.metadata.get("field", ""))
    return ""


class CallContext:
    """The little of a grpc ServicerContext the service's methods use: an abort raises;
    `opened` is set once a stream's method has taken the request (its headers)."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise ServiceError(code, details)

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        code: grpc.StatusCode = status.code
        raise ServiceError(code, status.details, field=_field_of(status))

    @staticmethod
    def time_remaining() -> float | None:
        return None  # a browser's request has no deadline

    async def send_initial_metadata(self, metadata: object) -> None:
        """A stream's gRPC headers: a page's stream sends its HTTP response then."""
        self.opened.set()


class Kit:
    """The service, the sessions and the templates, shared by the console's page groups."""

    def __init__(self, service: WorkflowService, sessions: Sessions, *, https: bool) -> None:
        self.service = service
        self.sessions = sessions
        self.https = https
        self.assets = Assets(SERVER / "static")
        self._pages = jinja2.Environment(
            loader=jinja2.FileSystemLoader(SERVER / "templates"), autoescape=True,
            undefined=jinja2.StrictUndefined)
        self._pages.filters["when"] = when
        self._pages.filters["breakable"] = breakable
        self._pages.filters["breakable_name"] = breakable_name
        self._pages.filters["when_lines"] = when_lines
        self._pages.filters["file_span"] = file_span
        self._pages.globals["status_name"] = status_name
        self._pages.globals["run_duration"] = run_duration
        self._pages.globals["run_seconds"] = run_seconds
        self._pages.globals["pb"] = pb
        self._pages.globals["static"] = self.assets.url

    async def call(self, method: str, request: Message) -> Any:
        """The service's `method` answer to `request` (ServiceError when it aborts)."""
        answer = await getattr(self.service, method)(request, CallContext())
        if isinstance(answer, bytes):  # GetRun answers serialized bytes
            return pb.GetRunResponse.FromString(answer)
        return answer

    @staticmethod
    def read(method: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """A read of the service's that is no RPC (one for a whole page's rows), failing as
        a call does: a bug or a broken store is INTERNAL, logged, not the daemon's end."""
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            log.exception("%s failed", getattr(method, "__name__", "a read"))
            raise ServiceError(grpc.StatusCode.INTERNAL, f"internal error: {exc}") from exc

    def page(self, request: web.Request, template: str, *, status: int = 200,
             **values: Any) -> web.Response:
        """`template` rendered with `values`, the session's CSRF token and who is asking."""
        session: Session | None = request.get("session")
        grant: Grant | None = request.get("grant")
        body = self._pages.get_template(template).render(
            csrf=session.csrf if session else "", who=grant,
            login_needed=self.sessions.login_needed,
            may=lambda method: grant is not None and grant.role >= least_role(method),
            **values)
        return web.Response(text=body, status=status, content_type="text/html",
                            charset="utf-8")

    @staticmethod
    def require(request: web.Request, method: str) -> None:
        """PERMISSION_DENIED unless the caller's role may call the RPC `method`."""
        grant: Grant = request["grant"]
        if grant.role < least_role(method):
            raise ServiceError(grpc.StatusCode.PERMISSION_DENIED,
                               f"{method} needs the role {least_role(method).label} (or"
                               f" higher); {grant.name} has the role {grant.role.label}")

    def set_cookie(self, response: web.StreamResponse, sid: str) -> None:
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", secure=self.https,
                            path="/")
