"""Console sessions that survive a daemon restart (`<state>/console-sessions.sqlite`): the
same cookie and CSRF token work after a restart (SIGTERM or kill -9), an open run page's
events reconnect without a 401, a token revoked by SIGHUP (or changed while the daemon was
down) ends its sessions, logout ends one for good, the file holds neither session ids nor
tokens, and a damaged file never stops the daemon. Against real `flowplan serve` processes
(and a real headless Chromium); the unit tests drive `Sessions` over a real SQLite file."""

from __future__ import annotations

import hashlib
import signal
import socket
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import MakeRepo, wait_until
from daemon_harness import Daemon, free_port, pb, publish, read_head, running_daemon
from test_web_console import FILES, ROLES_FILE, TOKENS, Browser, _chromium, _driver, _status

from flowplan.daemon.server.auth import TokenInterceptor
from flowplan.daemon.server.console import sessions as console_sessions
from flowplan.daemon.server.console.sessions import SESSIONS_FILE, Sessions
from flowplan.daemon.server.roles import Grant, Role


@dataclass
class Setup:
    """A store with FILES published, a state dir, a roles file and the daemon's ports: each
    `daemon()` is a new process on the same state, at the same addresses, stopped with
    SIGTERM at the end of its block."""

    store: Path
    state: Path
    roles: Path
    gate: Path
    port: int
    http_port: int

    @property
    def sessions_file(self) -> Path:
        return self.state / SESSIONS_FILE

    @contextmanager
    def daemon(self) -> Iterator[Daemon]:
        with running_daemon(self.store, self.state, port=self.port,
                            extra=["--roles-file", str(self.roles),
                                   "--http", f"127.0.0.1:{self.http_port}"],
                            token=TOKENS["operator"]) as daemon:
            yield daemon
            if daemon.process.poll() is None:
                assert daemon.stop() == 0  # SIGTERM: a clean stop (else kill -9)

    def rows(self) -> list[tuple[bytes, str, str, bytes]]:
        with sqlite3.connect(self.sessions_file) as db:
            return db.execute(
                "SELECT id_sha256, csrf, token_name, token_hmac FROM sessions").fetchall()


@pytest.fixture
def setup(make_repo: MakeRepo, tmp_path: Path) -> Setup:
    gate = tmp_path / "go"
    store = tmp_path / "store"
    publish(make_repo({k: v.replace("GATE", str(gate)) for k, v in FILES.items()}), store)
    roles = tmp_path / "roles"
    roles.write_text(ROLES_FILE)
    return Setup(store=store, state=tmp_path / "state", roles=roles, gate=gate,
                 port=free_port(), http_port=free_port())


def _scheduling(daemon: Daemon) -> bool:
    answer = daemon.call("GetWorkflow", pb.GetWorkflowRequest(workflow="daily"))
    return bool(answer.workflow.scheduling_enabled)


def test_a_login_and_its_csrf_token_survive_restarts(setup: Setup) -> None:
    operator = Browser(setup.http_port)
    with setup.daemon():
        assert operator.login(TOKENS["operator"]) == 303
        csrf = operator.csrf("/workflows/daily")
    with setup.daemon() as daemon:  # stopped with SIGTERM, started again
        status, _, page = operator.request("GET", "/")
        assert status == 200 and "ci · operator" in page, page
        status, _, _ = operator.request("POST", "/workflows/daily/scheduling",
                                        {"csrf": csrf, "enabled": "off"})
        assert status == 303 and not _scheduling(daemon)
        daemon.stop(signal.SIGKILL)
    with setup.daemon() as daemon:  # kill -9: the login was committed when it was made
        assert operator.request("POST", "/workflows/daily/scheduling",
                                {"csrf": csrf, "enabled": "on"})[0] == 303
        assert _scheduling(daemon)
        assert operator.request("POST", "/workflows/daily/scheduling",
                                {"csrf": "forged", "enabled": "off"})[0] == 403
        assert _scheduling(daemon)


def test_the_file_holds_no_session_id_and_no_token(setup: Setup) -> None:
    viewer, operator = Browser(setup.http_port), Browser(setup.http_port)
    with setup.daemon():
        assert viewer.login(TOKENS["viewer"]) == 303
        assert operator.login(TOKENS["operator"]) == 303
        ids = [viewer.cookies["flowplan_session"], operator.cookies["flowplan_session"]]
        files = [setup.state / (SESSIONS_FILE + s) for s in ("", "-wal", "-shm")]
        for path in files:  # the WAL and its index too, while the daemon has them open
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        written = b"".join(path.read_bytes() for path in files)
        rows = setup.rows()
    assert {row[0] for row in rows} == {hashlib.sha256(i.encode()).digest() for i in ids}
    assert sorted(row[2] for row in rows) == ["ci", "grafana"]
    for secret in [*ids, *TOKENS.values()]:
        assert secret.encode() not in written, secret
        assert not any(secret in str(value) for row in rows for value in row), secret
    assert all(len(row[3]) == 32 for row in rows)  # an HMAC-SHA256, not the token


def test_a_revoked_token_ends_its_sessions_at_once_and_across_a_restart(
        setup: Setup) -> None:
    viewer, operator = Browser(setup.http_port), Browser(setup.http_port)
    with setup.daemon() as daemon:
        assert viewer.login(TOKENS["viewer"]) == 303
        assert operator.login(TOKENS["operator"]) == 303
        # grafana's token goes (SIGHUP): its session ends on its next request
        setup.roles.write_text(f"operator ci {TOKENS['operator']}\n")
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(lambda: '"roles": {"operator": 1}' in daemon.output(), "the reload")
        status, headers, _ = viewer.request("GET", "/")
        assert (status, headers["location"]) == (303, "/login")
        assert viewer.request("GET", "/runs/x/events")[0] == 401
        assert operator.request("GET", "/")[0] == 200
        assert [row[2] for row in setup.rows()] == ["ci"]  # its row deleted
        # the token comes back: the session it had stays ended
        setup.roles.write_text(ROLES_FILE)
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(lambda: daemon.output().count('"roles": {"operator": 1, "viewer": 1}')
                   == 2, "the second reload")
        assert viewer.request("GET", "/")[0] == 303
        assert viewer.login(TOKENS["viewer"]) == 303
    # while the daemon is down: ci keeps its name with a new token, grafana's token (same
    # name, same token) becomes an operator's
    setup.roles.write_text(f"operator ci {'n' * 24}\noperator grafana {TOKENS['viewer']}\n")
    with setup.daemon():
        assert operator.request("GET", "/")[0] == 303  # its token changed: logged out
        status, _, page = viewer.request("GET", "/")
        assert status == 200 and "grafana · operator" in page  # the role of now
        assert [row[2] for row in setup.rows()] == ["grafana"]


def _open_stream(browser: Browser, path: str, method: str = "GET") -> socket.socket:
    """A GET (or `method`) of an event stream with the browser's cookie, its 200 head
    read."""
    sock = socket.create_connection(("127.0.0.1", browser.port), timeout=10)
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n"
                 .encode())
    head = read_head(sock)
    assert head.startswith(b"HTTP/1.1 200 "), head
    sock.settimeout(1)  # `_closed_by_daemon` looks at its deadline every second
    return sock


def _closed_by_daemon(sock: socket.socket, within: float = 10.0) -> bool:
    """Read until the daemon closes the stream: True when it did within `within` s."""
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            try:
                if not sock.recv(65536):
                    return True
            except TimeoutError:  # nothing for a second: look at the time again
                continue
        return False
    except ConnectionError:
        return True
    finally:
        sock.close()


def test_an_open_event_stream_ends_with_its_session(setup: Setup) -> None:
    """A page's live feeds do not outlast a revoked token or a logout: the daemon closes
    them within seconds, and the page's reconnection meets the login (401)."""
    viewer, operator = Browser(setup.http_port), Browser(setup.http_port)
    with setup.daemon() as daemon:
        assert viewer.login(TOKENS["viewer"]) == 303
        assert operator.login(TOKENS["operator"]) == 303
        run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="chain")).run.run_id
        wait_until(lambda: pb.NODE_STATUS_RUNNING in [n.status for n in daemon.call(
            "GetRun", pb.GetRunRequest(run_id=run_id, include_graph=True)).run.nodes
            if n.name == "b"], "b running (it waits for its gate)")
        streams = [_open_stream(viewer, f"/runs/{run_id}/events"),
                   _open_stream(viewer, f"/runs/{run_id}/nodes/b/log"),
                   _open_stream(viewer, f"/runs/{run_id}/nodes/b/log", "HEAD")]
        shared = _open_stream(operator, f"/events?s=/runs/{run_id}/events&last=")
        setup.roles.write_text(f"operator ci {TOKENS['operator']}\n")  # grafana's goes
        daemon.process.send_signal(signal.SIGHUP)
        assert all(_closed_by_daemon(sock) for sock in streams)
        assert viewer.request("GET", f"/runs/{run_id}/events")[0] == 401
        assert operator.request("POST", "/logout", {"csrf": operator.csrf("/")})[0] == 303
        assert _closed_by_daemon(shared)
        assert "Traceback" not in daemon.output() and '"level": "error"' not in daemon.output()
        setup.gate.touch()
        assert daemon.wait_run(run_id).status == pb.RUN_STATUS_SUCCEEDED  # serves on


def test_logout_ends_the_session_across_a_restart(setup: Setup) -> None:
    operator = Browser(setup.http_port)
    with setup.daemon():
        assert operator.login(TOKENS["operator"]) == 303
        cookie = dict(operator.cookies)
        csrf = operator.csrf("/")
        assert operator.request("POST", "/logout", {"csrf": csrf})[0] == 303
        assert setup.rows() == []
    operator.cookies = cookie  # a copy of the cookie kept from before the logout
    with setup.daemon():
        status, headers, _ = operator.request("GET", "/")
        assert (status, headers["location"]) == (303, "/login")
        assert operator.request("POST", "/logout", {"csrf": csrf})[0] == 403


@pytest.mark.parametrize("damage", ["garbage", "directory"])
def test_a_damaged_sessions_file_never_stops_the_daemon(setup: Setup, damage: str) -> None:
    """Garbage: the file is replaced by an empty one, said in one line; a directory in its
    place (cannot be replaced): sessions are kept in memory. Either way users log in again."""
    operator = Browser(setup.http_port)
    with setup.daemon():
        assert operator.login(TOKENS["operator"]) == 303
    if damage == "garbage":
        setup.sessions_file.write_bytes(b"this is not a database " * 200)
    else:
        setup.sessions_file.unlink()
        (setup.sessions_file / "inside").mkdir(parents=True)
    logged = len((setup.state.parent / f"daemon-{setup.port}.log").read_text())
    with setup.daemon() as daemon:  # its log goes on in the same file
        lines = [line for line in daemon.output()[logged:].splitlines()
                 if SESSIONS_FILE in line and "console sessions" in line]
        assert len(lines) == 1, lines
        assert ("everyone logs in to the console again" if damage == "garbage"
                else "kept in memory only") in lines[0]
        assert operator.request("GET", "/")[0] == 303
        assert operator.login(TOKENS["operator"]) == 303
        assert operator.request("GET", "/")[0] == 200
    with setup.daemon() as daemon:  # the new file keeps the new login (in memory: not)
        assert operator.request("GET", "/")[0] == (200 if damage == "garbage" else 303)
        assert daemon.call("ListWorkflows", pb.ListWorkflowsRequest()).workflows


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver"
                    " (.ci/run installs them)")
def test_with_tokens_an_open_run_page_catches_up_after_the_daemon_restarts(
        setup: Setup) -> None:
    """Logged in with a token: the page's events reconnect to the restarted daemon with the
    same cookie (no 401) and show what happened meanwhile, without a reload."""
    from selenium.webdriver.common.by import By

    base = f"http://127.0.0.1:{setup.http_port}"
    driver = _driver()
    try:
        with setup.daemon() as daemon:
            driver.get(base + "/login")
            driver.find_element(By.ID, "token").send_keys(TOKENS["viewer"])
            driver.find_element(By.ID, "login").click()
            wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, '[data-workflow]'),
                       "the workflows page")
            run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="chain")).run.run_id
            driver.get(f"{base}/runs/{run_id}")
            wait_until(lambda: _status(driver, "b") == "RUNNING", "b RUNNING", timeout=20)
            driver.execute_script("document.body.dataset.loaded = 'once'")
            assert daemon.stop() == 0
        setup.gate.touch()  # b ends while no daemon runs
        with setup.daemon():
            wait_until(lambda: _status(driver, "b") == "SUCCEEDED",
                       "b SUCCEEDED on the page after the restart", timeout=30)
            wait_until(lambda: driver.find_element(By.ID, "run-status").get_attribute(
                "data-status") == "SUCCEEDED", "the run SUCCEEDED on the page")
            assert driver.execute_script("return document.body.dataset.loaded") == "once"
            driver.get(base + "/")  # still logged in: no detour by /login
            assert driver.current_url == base + "/"
    finally:
        driver.quit()


# ---- Sessions over a real SQLite file, without a daemon ---------------------------------------

ALICE = Grant(name="alice", role=Role.VIEWER, token="a" * 20)
BOB = Grant(name="bob", role=Role.OPERATOR, token="b" * 20)


def test_a_flood_of_login_forms_writes_nothing_and_pushes_out_no_one(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(console_sessions, "MAX_SESSIONS", 5)
    path = tmp_path / SESSIONS_FILE
    sessions = Sessions(TokenInterceptor([ALICE, BOB]), path)
    alice, _ = sessions.new(ALICE)
    for _ in range(50):
        sessions.new(None)  # GET /login, again and again: kept in memory only
    assert sessions.who(sessions.get(alice)) == ALICE
    bobs = [sessions.new(BOB)[0] for _ in range(5)]  # logins beyond the cap
    sessions.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 5
    reopened = Sessions(TokenInterceptor([ALICE, BOB]), path)
    assert len(reopened) == 5
    assert reopened.get(alice) is None  # the longest unused went
    assert [reopened.who(reopened.get(sid)) for sid in bobs] == [BOB] * 5
    reopened.close()


def test_an_idle_session_ends_and_its_use_is_written_once_a_minute(tmp_path: Path) -> None:
    path = tmp_path / SESSIONS_FILE
    sessions = Sessions(TokenInterceptor([ALICE]), path)
    sid, session = sessions.new(ALICE)

    def used_in_file() -> float:
        with sqlite3.connect(path) as db:
            return float(db.execute("SELECT used FROM sessions").fetchone()[0])

    written = used_in_file()
    for _ in range(100):  # requests in a burst: no write
        assert sessions.get(sid) is session
    assert used_in_file() == written and session.used > written
    session.written -= console_sessions.TOUCH_SECONDS  # as if written a minute ago
    sessions.get(sid)
    assert used_in_file() == session.used
    sessions.close()
    with sqlite3.connect(path) as db:  # unused for longer than SESSION_SECONDS
        db.execute("UPDATE sessions SET used = ?",
                   (time.time() - console_sessions.SESSION_SECONDS - 1,))
    reopened = Sessions(TokenInterceptor([ALICE]), path)
    assert reopened.get(sid) is None and len(reopened) == 0
    reopened.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0


def test_without_tokens_no_file_is_made(tmp_path: Path) -> None:
    sessions = Sessions(None, tmp_path / SESSIONS_FILE)
    sid, _ = sessions.new(console_sessions.LOCAL)
    assert sessions.who(sessions.get(sid)) == console_sessions.LOCAL
    assert sessions.who(None) == console_sessions.LOCAL and not sessions.login_needed
    assert not (tmp_path / SESSIONS_FILE).exists()
