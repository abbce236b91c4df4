"""The console's sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure`
over HTTPS) names who logged in.

With tokens configured, logged-in sessions are kept in `<state>/console-sessions.sqlite`
(`SessionFile`) and survive a restart. The file never holds a session id or a token: a
session is found by the sha256 of its id, and remembers its token by the token's name and an
HMAC of it under a random key of the file's own, judged against the tokens of the moment on
every request, so a token revoked or changed by SIGHUP ends its sessions. Sessions of the
login form (no one logged in yet) and those of a daemon without tokens stay in memory: an
anonymous flood of requests writes nothing to disk.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from flowplan.daemon.server.roles import Grant, Role

COOKIE: Final = "flowplan_session"
SESSION_SECONDS: Final = 12 * 3600  # a session unused this long is forgotten
MAX_SESSIONS: Final = 10_000  # beyond, the oldest go: a login flood cannot fill memory
TOUCH_SECONDS: Final = 60.0  # a session's last use is written when it moved this much
SESSIONS_FILE: Final = "console-sessions.sqlite"  # in the state directory
LOCAL: Final = Grant(name="local", role=Role.ADMIN, token="")  # no tokens configured

log = logging.getLogger("flowplan.daemon.console")


class Tokens(Protocol):
    """The tokens the daemon accepts at this moment (`auth.TokenInterceptor`)."""

    def caller(self, given: bytes) -> Grant | None: ...

    @property
    def grants(self) -> tuple[Grant, ...]: ...


@dataclass(slots=True)
class Session:
    csrf: str
    name: str | None  # the token's name; None: not logged in yet (the login form's CSRF)
    fingerprint: bytes = field(default=b"", repr=False)  # HMAC of the token (file's key)
    used: float = field(default_factory=time.time)  # wall clock: it outlives the process
    written: float = 0.0  # `used` as the file last has it

    @property
    def logged_in(self) -> bool:
        return self.name is not None


def _key(sid: str) -> bytes:
    """How a session is found, in memory and in the file: never by its id itself."""
    return hashlib.sha256(sid.encode()).digest()


class Sessions:
    """Session ids -> who logged in. `tokens` None: no tokens configured (no login, every
    browser acts as LOCAL); `path`: the file that keeps logged-in sessions (None: memory)."""

    def __init__(self, tokens: Tokens | None, path: Path | None = None) -> None:
        self._tokens = tokens
        self._file = (SessionFile.open(path) if path is not None and tokens is not None
                      else None)
        self._hmac_key = self._file.key if self._file is not None else secrets.token_bytes(32)
        self._anonymous: dict[bytes, Session] = {}  # oldest first
        self._logged_in: dict[bytes, Session] = {}
        self._judged: tuple[tuple[Grant, ...], dict[str, tuple[bytes, Grant]]] | None = None
        if self._file is not None:
            self._logged_in = self._file.restored
            revoked = [k for k, s in self._logged_in.items() if self.who(s) is None]
            for key in revoked:  # tokens removed while the daemon was down
                self._forget(key)
            if self._logged_in or revoked:
                log.info("console sessions restored", extra={"fields": {
                    "sessions": len(self._logged_in), "ended": len(revoked),
                    "file": str(path)}})

    @property
    def login_needed(self) -> bool:
        return self._tokens is not None

    def __len__(self) -> int:
        return len(self._anonymous) + len(self._logged_in)

    def get(self, sid: str | None) -> Session | None:
        """The session of the cookie's `sid`, its last use now; None if unknown or idle for
        SESSION_SECONDS."""
        if not sid:
            return None
        key = _key(sid)
        session = self._anonymous.get(key) or self._logged_in.get(key)
        if session is None:
            return None
        now = time.time()
        if now - session.used > SESSION_SECONDS:
            self._forget(key)
            return None
        session.used = now
        if (self._file is not None and session.logged_in
                and abs(now - session.written) >= TOUCH_SECONDS):
            session.written = now  # not on every request: a write a minute at most
            self._file.touch(key, now)
        return session

    def new(self, grant: Grant | None) -> tuple[str, Session]:
        """A new session (`grant` None: the login form's) and its id. When MAX_SESSIONS are
        kept, the oldest not logged in goes first (the login form makes one for anyone: it
        must not push out who logged in), else the longest unused."""
        while len(self) >= MAX_SESSIONS:
            if self._anonymous:
                del self._anonymous[next(iter(self._anonymous))]
            else:
                self._forget(min(self._logged_in, key=lambda k: self._logged_in[k].used))
        sid = secrets.token_urlsafe(32)
        key = _key(sid)
        session = Session(csrf=secrets.token_urlsafe(32),
                          name=None if grant is None else grant.name)
        if grant is None:
            self._anonymous[key] = session
            return sid, session
        session.fingerprint = self._fingerprint(grant.token)
        session.written = session.used
        self._logged_in[key] = session
        if self._file is not None:
            self._file.insert(key, session)
        return sid, session

    def drop(self, sid: str | None) -> None:
        """Ends the session (logout, a revoked token, a new login)."""
        if sid:
            self._forget(_key(sid))

    def who(self, session: Session | None) -> Grant | None:
        """The session's caller as the tokens are now: None for a token removed or changed
        since the login (its name no longer has the token that logged in)."""
        if self._tokens is None:
            return LOCAL
        if session is None or session.name is None:
            return None
        current = self._current().get(session.name)
        if current is None or not hmac.compare_digest(current[0], session.fingerprint):
            return None
        return current[1]

    def login(self, token: str) -> Grant | None:
        """The grant whose token `token` is (None: not one of ours)."""
        if self._tokens is None:
            return LOCAL
        return self._tokens.caller(token.strip().encode())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _forget(self, key: bytes) -> None:
        self._anonymous.pop(key, None)
        if self._logged_in.pop(key, None) is not None and self._file is not None:
            self._file.delete(key)

    def _fingerprint(self, token: str) -> bytes:
        return hmac.new(self._hmac_key, token.encode(), hashlib.sha256).digest()

    def _current(self) -> dict[str, tuple[bytes, Grant]]:
        """Each token's name -> (its fingerprint, its grant), computed once per reload."""
        assert self._tokens is not None
        grants = self._tokens.grants
        if self._judged is None or self._judged[0] is not grants:
            self._judged = (grants, {g.name: (self._fingerprint(g.token), g) for g in grants})
        return self._judged[1]


SCHEMA_VERSION: Final = 1
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id_sha256 BLOB PRIMARY KEY,   -- sha256 of the cookie's session id, never the id
    csrf TEXT NOT NULL,
    token_name TEXT NOT NULL,
    token_hmac BLOB NOT NULL,     -- HMAC-SHA256 of the token under meta's hmac_key
    created REAL NOT NULL,        -- seconds since the epoch
    used REAL NOT NULL            -- written when it moved by TOUCH_SECONDS
) WITHOUT ROWID;
"""


class SessionFile:
    """The logged-in sessions in a SQLite file of the console's own (WAL, mode 0600). A
    file that cannot be read is replaced by an empty one (everyone logs in again), said in
    one line of log; a write that fails is logged and the session lives on in memory."""

    def __init__(self, db: sqlite3.Connection, path: Path, key: bytes,
                 restored: dict[bytes, Session]) -> None:
        self._db = db
        self.path = path
        self.key = key
        self.restored = restored  # what the file held at the start
        self._failing = False

    @classmethod
    def open(cls, path: Path) -> SessionFile | None:
        """The file at `path`, made or checked; None (memory only) if neither works."""
        try:
            return cls._connect(path)
        except (sqlite3.Error, OSError, ValueError) as exc:
            problem = exc
        try:
            for suffix in ("", "-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
            fresh = cls._connect(path)
        except (sqlite3.Error, OSError, ValueError) as exc:
            log.warning("console sessions: %s cannot be read (%s) nor made anew (%s):"
                        " sessions are kept in memory only, until the daemon restarts",
                        path, problem, exc)
            return None
        log.warning("console sessions: %s could not be read (%s): replaced by an empty one;"
                    " everyone logs in to the console again", path, problem)
        return fresh

    @classmethod
    def _connect(cls, path: Path) -> SessionFile:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)  # SQLite gives its -wal and -shm files the same mode
        finally:
            os.close(fd)
        db = sqlite3.connect(path, isolation_level=None)  # autocommit: one statement each
        try:
            db.execute("PRAGMA busy_timeout = 200")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            checked = db.execute("PRAGMA quick_check").fetchone()[0]
            if checked != "ok":
                raise ValueError(f"quick_check: {checked}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise ValueError(f"schema version {version}, this flowplan knows"
                                 f" {SCHEMA_VERSION}")
            db.executescript(SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('hmac_key', ?)",
                       (secrets.token_bytes(32),))
            key = db.execute("SELECT value FROM meta WHERE name = 'hmac_key'").fetchone()[0]
            if not isinstance(key, bytes) or len(key) != 32:
                raise ValueError("its hmac_key is not 32 bytes")
            restored = _restore(db, time.time())
        except BaseException:
            db.close()
            raise
        return cls(db, path, key, restored)

    def insert(self, key: bytes, session: Session) -> None:
        assert session.name is not None
        self._write("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                    (key, session.csrf, session.name, session.fingerprint, session.used,
                     session.used))

    def touch(self, key: bytes, used: float) -> None:
        self._write("UPDATE sessions SET used = ? WHERE id_sha256 = ?", (used, key))

    def delete(self, key: bytes) -> None:
        self._write("DELETE FROM sessions WHERE id_sha256 = ?", (key,))

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, values: tuple[object, ...]) -> None:
        """One committed statement; a failure (a full disk) is logged once until a write
        succeeds again: the console goes on with what it holds in memory."""
        try:
            self._db.execute(sql, values)
        except sqlite3.Error as exc:
            if not self._failing:
                log.warning("console sessions: cannot write %s (%s): sessions changed"
                            " meanwhile are lost at a restart", self.path, exc)
            self._failing = True
            return
        if self._failing:
            log.info("console sessions: %s can be written again", self.path)
            self._failing = False


def _restore(db: sqlite3.Connection, now: float) -> dict[bytes, Session]:
    """The file's sessions used within SESSION_SECONDS (at most MAX_SESSIONS, the latest
    used), oldest first; the others are deleted. ValueError for a row that is not one."""
    db.execute("DELETE FROM sessions WHERE used < ?", (now - SESSION_SECONDS,))
    rows = db.execute("SELECT id_sha256, csrf, token_name, token_hmac, used FROM sessions"
                      " ORDER BY used DESC").fetchall()
    found: dict[bytes, Session] = {}
    for key, csrf, name, fingerprint, used in rows:
        if not (isinstance(key, bytes) and isinstance(csrf, str) and isinstance(name, str)
                and isinstance(fingerprint, bytes) and isinstance(used, float | int)):
            raise ValueError("a row of its sessions table is not a session")
        if len(found) >= MAX_SESSIONS:
            db.execute("DELETE FROM sessions WHERE id_sha256 = ?", (key,))
            continue
        found[key] = Session(csrf=csrf, name=name, fingerprint=fingerprint,
                             used=float(used), written=float(used))
    return dict(reversed(found.items()))
