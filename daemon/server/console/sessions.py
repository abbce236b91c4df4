"""The console's sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure`
over HTTPS) names who logged in. Kept in memory (a restart logs everyone out); the token
behind a session is judged again on every request, so a token revoked by SIGHUP ends its
sessions."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from flowplan.daemon.server.roles import Grant, Role

COOKIE: Final = "flowplan_session"
SESSION_SECONDS: Final = 12 * 3600  # a session unused this long is forgotten
MAX_SESSIONS: Final = 10_000  # beyond, the oldest go: a login flood cannot fill memory
LOCAL: Final = Grant(name="local", role=Role.ADMIN, token="")  # no tokens configured

Caller = Callable[[bytes], Grant | None]


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
