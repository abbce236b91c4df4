"""The web console (`flowplan serve --http`), against a real daemon: its rules over plain HTTP
(login, session cookie, CSRF, roles, the Content-Security-Policy, server-sent events with
resumption), then in a real headless Chromium driven by Selenium (skipped when chromium or
chromedriver is absent; .ci/run installs them). With FLOWPLAN_SCREENSHOTS=1 the browser
tests write their screenshots into docs/console/."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import http.client
import json
import os
import re
import shutil
import sqlite3
import ssl
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from certificates import certificates
from conftest import ROOT, MakeRepo, wait_until
from daemon_harness import Daemon, free_port, pb, publish, running_daemon
from google.protobuf import struct_pb2

from flowplan.daemon.server.console.access import backstop_headers
from flowplan.daemon.server.console.kit import SECURITY_HEADERS, Kit, ServiceError
from flowplan.daemon.server.console.layouts import workflow_graph

TOKENS = {"operator": "o" * 20 + "-operator", "viewer": "v" * 20 + "-viewer"}
ROLES_FILE = f"operator ci {TOKENS['operator']}\nviewer grafana {TOKENS['viewer']}\n"
FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
    "workflows/chain.yaml": """
        name: chain
        description: Two steps; b waits for its gate file
        params: {code: "0", db_password: ""}
        tags: {team: sales}
        nodes:
          - {name: a, command: "echo a"}
          - {name: b, upstream: [a], command: "echo started ${params.db_password}; seq 1 60;
              while [ ! -e GATE ]; do sleep 0.02; done; echo finished; exit ${params.code}"}
        """,
    "workflows/daily.yaml": """
        name: daily
        schedule: {every: day, at: "02:00", timezone: Europe/Paris}
        nodes:
          - {name: day, command: "echo ${ds}"}
        """,
}
DOCS_SCREENSHOTS = ROOT / "docs" / "console"
FINISHED = (pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED)


def screenshots(tmp_path: Path) -> Path:
    """docs/console/ with FLOWPLAN_SCREENSHOTS=1 (to refresh the docs' pictures), else a
    temporary folder: a test run leaves the checkout as it was."""
    folder = DOCS_SCREENSHOTS if os.environ.get("FLOWPLAN_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Browser:
    """A cookie-keeping HTTP client that does not follow redirects."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    set_cookie: str = ""
    tls: ssl.SSLContext | None = None

    def request(self, method: str, path: str, form: dict[str, str | list[str]] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        connection = (http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10,
                                                  context=self.tls) if self.tls else
                      http.client.HTTPConnection("127.0.0.1", self.port, timeout=10))
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form, doseq=True)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        text = response.read().decode()
        got = {k.lower(): v for k, v in response.getheaders()}
        for value in response.headers.get_all("Set-Cookie") or []:
            self.set_cookie = value
            name, _, rest = value.partition("=")
            self.cookies[name] = rest.split(";", 1)[0].strip('"')
        connection.close()
        return response.status, got, text

    def csrf(self, path: str) -> str:
        status, _, page = self.request("GET", path)
        assert status == 200, page
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found, page
        return found.group(1)

    def login(self, token: str) -> int:
        csrf = self.csrf("/login")
        return self.request("POST", "/login", {"csrf": csrf, "token": token})[0]


@pytest.fixture
def console(make_repo: MakeRepo, tmp_path: Path) -> Iterator[tuple[Daemon, int, Path]]:
    store = tmp_path / "store"
    gate = tmp_path / "go"
    repo = make_repo({k: v.replace("GATE", str(gate)) for k, v in FILES.items()})
    publish(repo, store, remarks="first version")
    with console_daemon(store, tmp_path) as (daemon, port):
        yield daemon, port, tmp_path


@contextlib.contextmanager
def console_daemon(store: Path, tmp_path: Path) -> Iterator[tuple[Daemon, int]]:
    """`flowplan serve` of `store` with the console on a free port, TOKENS' roles (the
    daemon's own calls as the operator), its state in tmp_path/state."""
    roles = tmp_path / "roles"
    roles.write_text(ROLES_FILE)
    port = free_port()
    with running_daemon(store, tmp_path / "state", extra=["--roles-file", str(roles),
                                                          "--http", f"127.0.0.1:{port}"],
                        token=TOKENS["operator"]) as daemon:
        yield daemon, port


def test_login_session_csrf_roles_and_headers(console: tuple[Daemon, int, Path]) -> None:
    daemon, port, _ = console
    anonymous = Browser(port)
    status, headers, _ = anonymous.request("GET", "/")
    assert status == 303 and headers["location"] == "/login"
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "'unsafe-inline'" not in headers["content-security-policy"]
    assert anonymous.request("POST", "/login", {"token": TOKENS["viewer"]})[0] == 403  # no CSRF
    assert anonymous.login("not-a-token-of-this-daemon") == 401

    viewer = Browser(port)
    assert viewer.login(TOKENS["viewer"]) == 303
    assert "HttpOnly" in viewer.set_cookie and "SameSite=Strict" in viewer.set_cookie
    assert "Secure" not in viewer.set_cookie  # plain HTTP here
    status, headers, page = viewer.request("GET", "/")
    assert status == 200 and 'data-workflow="chain"' in page and "every day at 02:00" in page
    assert "Europe/Paris" in page and "team=<wbr>sales" in page  # it may wrap after the =
    assert 'action="/workflows/' not in page  # no switch for a viewer
    status, _, page = viewer.request("GET", "/workflows/chain")
    assert status == 200 and 'data-node="b"' in page and "first version" in page
    assert 'id="run-form"' not in page
    sections = re.findall(r'<a href="#([a-z-]+-section)">', page)  # the page's own links
    assert sections == ["graph-section", "nodes-section", "history-section",
                        "versions-section"]  # a viewer: no Run; chain has no schedule
    assert all(f'id="{target}"' in page for target in sections)
    csrf = viewer.csrf("/workflows/chain")
    status, _, page = viewer.request("POST", "/workflows/chain/runs", {"csrf": csrf})
    assert status == 403 and "StartRun needs the role operator" in page
    assert viewer.request("POST", "/workflows/daily/scheduling",
                          {"csrf": csrf, "enabled": "off"})[0] == 403

    operator = Browser(port)
    assert operator.login(TOKENS["operator"]) == 303
    status, _, page = operator.request("GET", "/?tag=team%3Dsales")
    assert 'data-workflow="chain"' in page and 'data-workflow="daily"' not in page
    # without the CSRF token, with another session's, or with a forged one: refused
    assert operator.request("POST", "/workflows/chain/runs", {"remarks": "x"})[0] == 403
    assert operator.request("POST", "/workflows/chain/runs", {"csrf": csrf})[0] == 403
    own = operator.csrf("/workflows/chain")
    status, headers, _ = operator.request("POST", "/workflows/daily/scheduling",
                                          {"csrf": own, "enabled": "off"})
    assert status == 303
    answer = daemon.call("GetWorkflow", pb.GetWorkflowRequest(workflow="daily"))
    assert not answer.workflow.scheduling_enabled
    _, _, page = operator.request("GET", "/")  # the switch says its state and its action
    assert ('data-action="scheduling" title="Scheduling is off: unpause it"'
            ' aria-pressed="false">Off</button>') in page
    status, headers, _ = operator.request("POST", "/workflows/chain/runs", {
        "csrf": own, "params": '{"code": "3"}', "remarks": "from the console"})
    assert status == 303 and headers["location"].startswith("/runs/")
    run_id = headers["location"].removeprefix("/runs/")
    run = daemon.call("GetRun", pb.GetRunRequest(run_id=run_id)).run
    assert run.remarks == "from the console"

    # logging out ends the session: its cookie no longer opens a page
    assert operator.request("POST", "/logout", {"csrf": own})[0] == 303
    assert operator.request("GET", "/")[0] == 303
    assert operator.request("GET", "/metrics")[0] == 401  # /metrics keeps its bearer rule



def test_the_workflows_list_shows_each_workflows_last_ten_runs_and_its_version(
        console: tuple[Daemon, int, Path]) -> None:
    daemon, port, tmp_path = console
    (tmp_path / "go").touch()  # chain's b ends at once: exit code 0 succeeds, 1 fails
    started = [daemon.call("StartRun", pb.StartRunRequest(
        workflow="chain", params=_params(code=str(int(k % 3 == 0))))).run.run_id
        for k in range(12)]
    done = (pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED)
    wait_until(lambda: all(daemon.call("GetRun", pb.GetRunRequest(run_id=r)).run.status
                           in done for r in started), "the 12 runs ended", timeout=60)
    viewer = Browser(port)
    assert viewer.login(TOKENS["viewer"]) == 303
    status, _, page = viewer.request("GET", "/")
    assert status == 200
    for name in ("chain", "daily"):
        row = page.split(f'data-workflow="{name}"', 1)[1].split("</tr>", 1)[0]
        squares = re.findall(r'<a href="/runs/([^"]+)" class="square" data-status="([A-Z]+)"',
                             row)
        listed = daemon.call("ListRuns", pb.ListRunsRequest(workflow=name, page_size=10)).runs
        assert squares == [(run.run_id, pb.RunStatus.Name(run.status).removeprefix(
            "RUN_STATUS_")) for run in reversed(listed)]  # oldest on the left
        assert "v1<div class=\"sub\">first version" in row
        if name == "chain":  # the newest 10 of the 12, each in its colour
            assert [run_id for run_id, _ in squares] == started[2:]
            assert {status for _, status in squares} == {"SUCCEEDED", "FAILED"}


def test_a_pages_read_that_fails_is_an_internal_error_not_the_daemons_end() -> None:
    def broken(names: list[str]) -> dict[str, list[pb.Run]]:
        raise sqlite3.DatabaseError("database disk image is malformed")

    with pytest.raises(ServiceError) as caught:
        Kit.read(broken, ["chain"])
    assert caught.value.code is grpc.StatusCode.INTERNAL
    assert str(caught.value) == "internal error: database disk image is malformed"


def _params(**values: str) -> struct_pb2.Struct:
    params = struct_pb2.Struct()
    params.update(values)
    return params


def test_bad_input_is_refused_with_its_reason_and_the_daemon_serves_on(
        console: tuple[Daemon, int, Path]) -> None:
    daemon, port, tmp_path = console
    operator = Browser(port)
    assert operator.login(TOKENS["operator"]) == 303
    csrf = operator.csrf("/")
    for path, form, status, reason in [
            ("/workflows/chain/runs", {"params": "[1]"}, 400, "params must be a JSON object"),
            ("/workflows/chain/runs", {"params": "{"}, 400, "params must be a JSON object"),
            ("/workflows/chain/runs", {"params": '{"nope": 1}'}, 400, "nope"),
            ("/workflows/" + "x" * 300 + "/runs", {}, 404, "does not exist"),
            ("/runs/nothing/resume", {"node": "a"}, 404, "does not exist"),
            ("/runs/nothing/cancel", {}, 404, "does not exist")]:
        got, _, page = operator.request("POST", path, {"csrf": csrf, **form})
        assert (got, reason in page) == (status, True), (path, form, page)
    assert operator.request("GET", "/workflows/nothing")[0] == 404
    assert operator.request("GET", "/workflows/chain?version=x")[0] == 400
    # numbers Python reads and protobuf does not hold, and times off the calendar: a 400
    # that names the field, never a 500
    key = workflow_graph(daemon.call("GetWorkflow", pb.GetWorkflowRequest(
        workflow="chain")).workflow).key
    for path, reason in [("/workflows/chain?version=%C2%B2", "version must be"),
                         ("/workflows/chain?version=9223372036854775808", "version must be"),
                         (f"/layouts/{key}?workflow=chain&version=99999999999",
                          "version must be"),
                         ("/events?s=http://[::1&last=", "s #1")]:
        status, _, page = operator.request("GET", path)
        assert (status, reason in page) == (400, True), (path, page)
    for wrong, reason in [({"parallel": "99999999999"}, "parallel runs must be"),
                          ({"start": "0001-01-01T00:00:00+05:00"}, "start must be a time from"),
                          ({"end": "9999-12-31T23:00:00-05:00"}, "end must be a time from")]:
        form = {"csrf": csrf, "start": "2026-01-01", "end": "2026-01-02", **wrong}
        status, _, page = operator.request("POST", "/workflows/daily/backfills", form)
        assert (status, reason in page) == (400, True), (form, page)
        # beside the form on the workflow's page, what was typed kept, the field focused
        [(name, typed)] = [(k, v) for k, v in wrong.items()]
        assert '<p class="problem" role="alert" id="backfill-refused">' in page
        assert re.search(f'<input name="{name}"[^>]* value="{re.escape(html.escape(typed))}"'
                         ' autofocus aria-invalid="true"', page), page
    status, _, page = operator.request("POST", "/runs/wr_nope/resume",
                                       {"csrf": csrf, "node": "a"})
    assert status == 404 and '<a href="/runs/wr_nope" id="back-to-form">' in page
    # a small graph is each page's to lay out: the daemon neither computes nor keeps it
    assert operator.request("GET", f"/layouts/{key}?workflow=chain&version=1")[0] == 204
    assert not list((tmp_path / "state").glob("console-layouts/*.json"))
    # the switch goes back to the page it was on, never to another site
    for back, landed in [("/?tag=team", "/?tag=team"), ("//evil.example/x", "/"),
                         ("/\\evil.example", "/"), ("https://evil.example", "/")]:
        status, headers, _ = operator.request("POST", "/workflows/daily/scheduling",
                                              {"csrf": csrf, "enabled": "on", "back": back})
        assert (status, headers["location"]) == (303, landed), back
    assert operator.request("GET", "/workflows/chain?version=9")[0] == 404
    status, _, page = operator.request("GET", "/workflows/chain?version=1")
    assert status == 200 and 'href="/workflows/chain?version=1"' in page
    assert operator.request("GET", "/runs/%00")[0] in (400, 404)
    assert operator.request("GET", "/static/../console.py")[0] in (403, 404)
    daemon.call("ListWorkflows", pb.ListWorkflowsRequest())  # still serving


def test_a_refused_form_comes_back_on_its_page_beside_its_reason_with_what_was_typed(
        console: tuple[Daemon, int, Path]) -> None:
    """Run and Resume refused: not a page of its own but the form's page again, the reason
    beside the form, the input it names focused, what was typed (or ticked) kept."""
    daemon, port, tmp_path = console
    operator = Browser(port)
    assert operator.login(TOKENS["operator"]) == 303
    csrf = operator.csrf("/")

    def refusal(page: str, form: str) -> str:
        found = re.search(f'<p class="problem" role="alert" id="{form}-refused">([^<]*)</p>',
                          page)
        assert found, page
        return html.unescape(found.group(1))

    typed = {"params": '{"nope": 1}', "queue": "", "remarks": "fix <b> & retry"}
    status, _, page = operator.request("POST", "/workflows/chain/runs", {"csrf": csrf, **typed})
    assert status == 400 and "nope" in refusal(page, "run")
    assert ('<textarea name="params" rows="4" autofocus aria-invalid="true"'
            ' aria-describedby="run-refused">{&#34;nope&#34;: 1}</textarea>') in page
    assert 'value="fix &lt;b&gt; &amp; retry"' in page
    assert 'id="history-section"' in page and 'id="backfill-refused"' not in page
    status, _, page = operator.request("POST", "/workflows/chain/runs",
                                       {"csrf": csrf, **typed, "params": "", "queue": "fast"})
    assert status == 400 and "fast" in refusal(page, "run")
    assert re.search(r'<input name="queue" [^>]*value="fast" autofocus', page), page
    assert '<textarea name="params" rows="4"></textarea>' in page  # as typed: emptied
    assert not daemon.call("ListRuns", pb.ListRunsRequest(workflow="chain")).runs

    run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="chain")).run.run_id
    status, _, page = operator.request("POST", f"/runs/{run_id}/resume",
                                       {"csrf": csrf, "node": "b", "remarks": "again"})
    assert status == 409 and "RUNNING" in refusal(page, "resume")
    assert f'<h1>Run {run_id}</h1>' in page
    assert re.search(r'value="b" aria-label="resume from b" checked>', page), page
    assert 'value="a" aria-label="resume from a">' in page  # not ticked: not checked
    assert re.search(r'<input name="remarks" value="again"></label>\s*<button type="submit"'
                     r' id="resume" autofocus', page), page
    (tmp_path / "go").touch()
    wait_until(lambda: daemon.call("GetRun", pb.GetRunRequest(run_id=run_id)).run.status
               in FINISHED, what="the run to end")
    status, _, page = operator.request("POST", f"/runs/{run_id}/resume", {"csrf": csrf})
    assert status == 400 and "at least one node" in refusal(page, "resume")
    # those pages' URLs, reloaded or shared, lead to the form
    for path, landed in [("/workflows/chain/runs", "/workflows/chain#run-section"),
                         ("/workflows/chain/backfills", "/workflows/chain#backfill-section"),
                         (f"/runs/{run_id}/resume", f"/runs/{run_id}")]:
        status, headers, _ = operator.request("GET", path)
        assert (status, headers["location"]) == (303, landed)
    # a field the reason names by index (failure_emails[0]) is the input focused
    status, _, page = operator.request("POST", "/workflows/daily/backfills", {
        "csrf": csrf, "start": "2026-01-01", "end": "2026-01-02", "emails": "not-an-address"})
    assert status == 400 and "not-an-address" in refusal(page, "backfill")
    assert re.findall(r'<(?:input|select|textarea) name="(\w+)"[^>]*autofocus', page) == [
        "emails"]
    # the workflow removed since its page was loaded: no form to show the reason beside,
    # so the reason has a page of its own
    (tmp_path / "repo" / "workflows" / "daily.yaml").unlink()
    publish(tmp_path / "repo", tmp_path / "store", remarks="remove daily")
    wait_until(lambda: daemon.call("GetWorkflow", pb.GetWorkflowRequest(workflow="daily"))
               .workflow.tombstone, what="daily removed")
    for action, form in (("runs", {"params": "", "queue": "", "remarks": "x"}),
                         ("backfills", {"start": "2026-01-01", "end": "2026-01-02"})):
        status, _, page = operator.request("POST", f"/workflows/daily/{action}",
                                           {"csrf": csrf, **form})
        assert status == 409 and "removed" in page, page
        assert 'id="back-to-form"' in page and 'id="history-section"' not in page


def test_the_run_form_keeps_a_secret_params_default_it_shows_masked(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    """The form shows the defaults as GetWorkflow does, a secret's value masked: sent back as
    shown, the secret keeps its real default; a value typed over the mask replaces it."""
    store = tmp_path / "store"
    publish(make_repo({"workflows/secret.yaml": """
        name: secret
        params: {api_token: real-default-value, region: eu, want: eu,
                 db: {host: db.example, password: n3sted-default}}
        nodes:
          - name: a
            command: >-
              test "${params.api_token}" = "$(printf 'real-default-%s' value)"
              && test "${params.region}" = "${params.want}"
              && test "${params.db.password}" = "$(printf 'n3sted-%s' default)"
        """}), store)
    with console_daemon(store, tmp_path) as (daemon, port):
        operator = Browser(port)
        assert operator.login(TOKENS["operator"]) == 303
        status, _, page = operator.request("GET", "/workflows/secret")
        shown = re.search(r'<textarea name="params"[^>]*>(.*?)</textarea>', page, re.S)
        assert status == 200 and shown and "real-default-value" not in html.unescape(page)
        prefill = html.unescape(shown.group(1))
        assert '"api_token": "********"' in prefill and "n3sted-default" not in prefill
        for params, wanted in [
                (prefill, pb.RUN_STATUS_SUCCEEDED),  # as shown: the real default
                (prefill.replace('"api_token": "********"', '"api_token": "typed"'),
                 pb.RUN_STATUS_FAILED),
                (prefill.replace('"eu"', '"us"'), pb.RUN_STATUS_SUCCEEDED)]:  # both changed
            csrf = operator.csrf("/workflows/secret")
            status, headers, _ = operator.request("POST", "/workflows/secret/runs",
                                                  {"csrf": csrf, "params": params})
            assert status == 303, params
            run_id = headers["location"].removeprefix("/runs/")
            wait_until(lambda run_id=run_id: daemon.call("GetRun", pb.GetRunRequest(
                run_id=run_id)).run.status in FINISHED, "the run's end", 30)
            run = daemon.call("GetRun", pb.GetRunRequest(run_id=run_id)).run
            assert run.status == wanted, params
        # an object param is a default only: edited, it is refused, never run with the mask
        edited = prefill.replace('"db.example"', '"db2.example"')
        status, _, page = operator.request("POST", "/workflows/secret/runs", {
            "csrf": operator.csrf("/workflows/secret"), "params": edited})
        assert status == 400 and "param 'db' must be a string" in html.unescape(page)


def test_whole_number_params_read_as_written_on_the_run_page_and_in_the_form(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    """A Struct holds every number as a double: the pages show `5`, not `5.0`."""
    store = tmp_path / "store"
    publish(make_repo({"workflows/numbers.yaml": """
        name: numbers
        params: {days: 5, ratio: 0.5, sizes: [1, 2], batch_size: "500"}
        nodes:
          - {name: a, command: "echo ${params.days}"}
        """}), store)
    with console_daemon(store, tmp_path) as (_, port):
        operator = Browser(port)
        assert operator.login(TOKENS["operator"]) == 303
        status, _, page = operator.request("GET", "/workflows/numbers")
        shown = re.search(r'<textarea name="params"[^>]*>(.*?)</textarea>', page, re.S)
        assert status == 200 and shown
        assert json.loads(html.unescape(shown.group(1))) == {
            "batch_size": "500", "days": 5, "ratio": 0.5, "sizes": [1, 2]}
        assert "5.0" not in shown.group(1)
        status, headers, _ = operator.request("POST", "/workflows/numbers/runs", {
            "csrf": operator.csrf("/workflows/numbers"),
            "params": '{"batch_size": 0, "days": 7}'})
        assert status == 303
        _, _, page = operator.request("GET", headers["location"])
        params = re.search(r"params <code>(.*?)</code>", page)
        assert params and json.loads(html.unescape(params.group(1))) == {
            "batch_size": 0, "days": 7, "ratio": 0.5, "sizes": [1, 2]}
        assert ".0" not in params.group(1).replace("0.5", ""), params.group(1)


def test_over_https_the_session_cookie_is_secure(make_repo: MakeRepo, tmp_path: Path) -> None:
    store, state, pki = tmp_path / "store", tmp_path / "state", tmp_path / "pki"
    publish(make_repo(FILES), store)
    pems = certificates(pki)
    (tmp_path / "roles").write_text(ROLES_FILE)
    port = free_port()
    with running_daemon(store, state, credentials=grpc.ssl_channel_credentials(pems["ca"]),
                        extra=["--http", f"127.0.0.1:{port}",
                               "--roles-file", str(tmp_path / "roles"),
                               "--tls-cert", str(pki / "server_cert.pem"),
                               "--tls-key", str(pki / "server_key.pem")]):
        browser = Browser(port, tls=ssl.create_default_context(cafile=pki / "ca.pem"))
        assert browser.login(TOKENS["viewer"]) == 303
        assert "Secure" in browser.set_cookie and "HttpOnly" in browser.set_cookie
        assert browser.request("GET", "/")[0] == 200



def test_a_backfill_from_the_form_after_its_preview(console: tuple[Daemon, int, Path]) -> None:
    daemon, port, _ = console
    form = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-03T23:00:00Z",
            "reprocess": "all", "remarks": "January", "parallel": "2"}
    viewer = Browser(port)
    assert viewer.login(TOKENS["viewer"]) == 303
    csrf = viewer.csrf("/workflows/daily")
    status, _, page = viewer.request("POST", "/workflows/daily/backfills", {"csrf": csrf, **form})
    assert status == 200 and 'id="confirm-backfill"' not in page  # a viewer may look only
    assert viewer.request("POST", "/workflows/daily/backfills",
                          {"csrf": csrf, **form, "confirm": "yes"})[0] == 403

    operator = Browser(port)
    assert operator.login(TOKENS["operator"]) == 303
    csrf = operator.csrf("/workflows/daily")
    status, _, page = operator.request("POST", "/workflows/daily/backfills",
                                       {"csrf": csrf, **form})
    times = re.findall(r"<li>([^<]+)</li>", page)
    assert status == 200 and times == [f"2026-01-0{d} 01:00:00 UTC" for d in (1, 2, 3)], page
    for end, days in [("2026-01-03", (1, 2, 3)), ("2026-01-03T00:00:00Z", (1, 2))]:
        # a date alone is the whole day, as `flowplan backfill --to` reads it
        _, _, page = operator.request("POST", "/workflows/daily/backfills",
                                      {"csrf": csrf, **form, "end": end})
        assert re.findall(r"<li>([^<]+)</li>", page) == [
            f"2026-01-0{d} 01:00:00 UTC" for d in days], (end, page)
    assert not daemon.call("ListBackfills", pb.ListBackfillsRequest()).backfills  # a dry run
    status, headers, _ = operator.request("POST", "/workflows/daily/backfills",
                                          {"csrf": csrf, **form, "confirm": "yes"})
    assert status == 303 and headers["location"].startswith("/backfills/")
    backfill_id = headers["location"].removeprefix("/backfills/")

    def finished() -> str | None:
        _, _, page = operator.request("GET", f"/backfills/{backfill_id}")
        return page if "3 done, 0 failed, 0 running, 0 pending of 3" in page else None

    page = wait_until(finished, "the backfill's three runs done", timeout=30)
    assert page.count('<tr data-run="') == 3 and "January" in page
    status, _, page = operator.request("POST", "/workflows/daily/backfills",
                                       {"csrf": csrf, **form, "start": "yesterday"})
    assert status == 400 and "start must be a time" in page


def test_run_page_and_its_events_resume_after_the_last_event_id(
        console: tuple[Daemon, int, Path]) -> None:
    daemon, port, _ = console
    operator = Browser(port)
    assert operator.login(TOKENS["operator"]) == 303
    secret = struct_pb2.Struct()
    secret.update({"db_password": "hunter2-very-secret"})
    run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="chain",
                                                        params=secret)).run.run_id
    status, _, page = operator.request("GET", f"/runs/{run_id}")
    assert "hunter2" not in page
    assert status == 200 and 'data-node="a"' in page and 'id="cancel"' in page
    assert re.search(r'data-node="b" data-status="(PENDING|RUNNING)"', page), page
    assert operator.request("GET", "/runs/no-such-run")[0] == 404

    def b_running() -> bool:
        run = daemon.call("GetRun", pb.GetRunRequest(run_id=run_id, include_graph=True)).run
        return any(n.name == "b" and n.status == pb.NODE_STATUS_RUNNING for n in run.nodes)

    wait_until(b_running, "b running", timeout=20)
    wait_until(lambda: b"started" in b"".join(c.data for c in daemon.call(
        "GetNodeLog", pb.GetNodeLogRequest(run_id=run_id, node_name="b"))), "b's first line")
    daemon.call("CancelRun", pb.CancelRunRequest(run_id=run_id))
    daemon.wait_run(run_id)
    status, headers, stream = operator.request("GET", f"/runs/{run_id}/events")
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    ids = [int(n) for n in re.findall(r"^id: (\d+)$", stream, re.M)]
    assert ids == sorted(ids) and len(ids) >= 3 and "event: end" in stream
    assert '"run_status":"CANCELLED"' in stream
    _, _, rest = operator.request("GET", f"/runs/{run_id}/events",
                                  headers={"Last-Event-ID": str(ids[1])})
    assert [int(n) for n in re.findall(r"^id: (\d+)$", rest, re.M)] == ids[2:]
    assert Browser(port).request("GET", f"/runs/{run_id}/events")[0] == 401  # logged out
    status, _, page = operator.request("GET", f"/runs/{run_id}/nodes/b")
    assert status == 200 and 'id="log"' in page and "hunter2" not in page
    _, _, log = operator.request("GET", f"/runs/{run_id}/nodes/b/log")
    assert "started *****" in log and "hunter2" not in log and "event: end" in log
    assert operator.request("GET", f"/runs/{run_id}/nodes/zz/log")[0] == 404


# ---- in a browser ---------------------------------------------------------------------------

def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver"
                    " (.ci/run installs them)")
def test_in_a_browser_log_in_run_and_watch_a_node_succeed_live(
        console: tuple[Daemon, int, Path]) -> None:
    from selenium.webdriver.common.by import By

    daemon, port, tmp_path = console
    driver = _driver()
    base = f"http://127.0.0.1:{port}"
    shots = screenshots(tmp_path)
    errors: list[str] = []
    try:
        driver.get(base + "/")
        assert driver.current_url == base + "/login"
        driver.save_screenshot(str(shots / "login.png"))
        driver.find_element(By.ID, "token").send_keys(TOKENS["operator"])
        driver.find_element(By.ID, "login").click()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, '[data-workflow="chain"]'),
                   "the workflows page")
        driver.save_screenshot(str(shots / "workflows.png"))
        driver.find_element(By.LINK_TEXT, "chain").click()
        wait_until(lambda: driver.find_elements(By.ID, "run-form"), "the workflow page")
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, '#graph[data-drawn="yes"]'
                                                ' g[data-node="b"]'), "the workflow's graph")
        driver.save_screenshot(str(shots / "workflow.png"))
        # refused: back on the workflow's page, the reason beside the form, the queue typed
        # kept and focused, in view
        driver.find_element(By.CSS_SELECTOR, "#run-form [name=queue]").send_keys("fast")
        driver.find_element(By.ID, "start-run").click()
        wait_until(lambda: driver.find_elements(By.ID, "run-refused"), "the Run form refused")
        assert "queue" in driver.find_element(By.ID, "run-refused").text
        assert driver.execute_script(
            "const f = document.activeElement, box = f.getBoundingClientRect();"
            " return [f.name, f.value, box.top >= 0 && box.bottom <= innerHeight]") == [
                "queue", "fast", True]
        driver.save_screenshot(str(shots / "refused-run-form.png"))
        errors = browser_errors(driver, ignore="/workflows/chain/runs - Failed to load"
                                " resource: the server responded with a status of 400")
        driver.find_element(By.CSS_SELECTOR, "#run-form [name=queue]").clear()
        driver.find_element(By.NAME, "remarks").send_keys("from the browser")
        driver.find_element(By.ID, "start-run").click()
        wait_until(lambda: "/runs/" in driver.current_url, "the run page")
        run_id = driver.current_url.rsplit("/", 1)[1]

        def node_b() -> str:  # the graph's hook: kept current wherever the page is scrolled
            return str(driver.find_element(By.CSS_SELECTOR, '#graph g[data-node="b"]')
                       .get_attribute("data-status"))

        wait_until(lambda: node_b() == "RUNNING", "b RUNNING on the open page", timeout=20)
        # the node table, below the fold, catches up once it comes into view
        driver.execute_script("document.getElementById('run-nodes').scrollIntoView()")
        wait_until(lambda: driver.find_element(By.CSS_SELECTOR, 'tr[data-node="b"] .status')
                   .text == "RUNNING", "b RUNNING in the node table shown")
        driver.execute_script("window.scrollTo(0, 0)")  # the page's top for its screenshot
        page = driver.execute_script("return document.body.dataset.loaded = 'once'")
        run = daemon.call("GetRun", pb.GetRunRequest(run_id=run_id, include_graph=True)).run
        assert run.remarks == "from the browser"
        run_tab = driver.current_window_handle
        driver.switch_to.new_window("tab")  # b's page follows its log
        driver.get(f"{base}/runs/{run_id}/nodes/b")
        wait_until(lambda: "\n60" in driver.find_element(By.ID, "log").text,
                   "b's log on its page")
        at_end = ("const log = document.getElementById('log');"
                  " return log.scrollHeight > log.clientHeight"
                  " && log.scrollTop + log.clientHeight >= log.scrollHeight - 4")
        assert driver.execute_script(at_end)  # its end in view: the newest lines
        log_tab = driver.current_window_handle
        driver.switch_to.window(run_tab)
        (tmp_path / "go").touch()  # b's command waits for it
        wait_until(lambda: node_b() == "SUCCEEDED", "b SUCCEEDED without a reload", timeout=20)
        drawn = driver.find_element(By.CSS_SELECTOR, 'g[data-node="b"]')
        wait_until(lambda: drawn.get_attribute("data-status") == "SUCCEEDED",
                   "b SUCCEEDED in the run's graph")
        assert driver.execute_script("return document.body.dataset.loaded") == page  # no reload
        wait_until(lambda: driver.find_element(By.ID, "run-status").get_attribute(
            "data-status") == "SUCCEEDED", "the run SUCCEEDED on the page")
        assert not driver.find_elements(By.ID, "cancel")  # a finished run: nothing to cancel
        driver.save_screenshot(str(shots / "run.png"))
        driver.switch_to.window(log_tab)
        wait_until(lambda: driver.find_element(By.ID, "log").get_attribute("data-ended"),
                   "b's log followed to its end")
        assert driver.find_element(By.ID, "log").text.splitlines()[-1] == "finished"
        assert driver.execute_script(at_end)  # followed to its end
        wait_until(lambda: driver.find_element(By.CSS_SELECTOR, 'h1 [data-node="b"]').text
                   == "SUCCEEDED", "b's own page showing it SUCCEEDED")
        attempt = driver.find_element(By.CSS_SELECTOR, '#attempts tr[data-attempt="1"]')
        wait_until(lambda: attempt.find_element(By.CSS_SELECTOR, ".status").text
                   == "SUCCEEDED", "b's attempt row kept current without a reload")
        cells = [cell.text for cell in attempt.find_elements(By.TAG_NAME, "td")]
        assert cells[3].endswith(" UTC") and cells[4] == "0", cells  # finished, exit code 0
        driver.save_screenshot(str(shots / "node.png"))
        driver.close()
        driver.switch_to.window(run_tab)
        errors += browser_errors(driver)

        # a viewer: the same pages without a button, and its POSTs refused
        driver.delete_all_cookies()
        driver.get(base + "/login")
        driver.find_element(By.ID, "token").send_keys(TOKENS["viewer"])
        driver.find_element(By.ID, "login").click()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, '[data-workflow="chain"]'),
                   "the workflows page as a viewer")
        driver.get(f"{base}/runs/{run_id}")
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, 'tr[data-node="b"]'),
                   "the run page as a viewer")
        assert not driver.find_elements(By.CSS_SELECTOR, "#cancel, #resume, input[type=checkbox]")
        assert [b.text for b in driver.find_elements(By.CSS_SELECTOR, "form button")] == ["Log out"]
    finally:
        driver.quit()
    assert not errors, errors  # e.g. a CSP violation



W1 = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
    "workflows/w1.yaml": """
        name: w1
        params: {fail: "1"}
        nodes:
          - {name: J1, command: "echo J1"}
          - {name: J2, command: "exit ${params.fail}", upstream: [J1]}
          - {name: J3, command: "exit ${params.fail}", upstream: [J1]}
          - {name: J4, command: "echo J4", upstream: [J2]}
          - {name: J5, command: "echo J5", upstream: [J3]}
        """,
}


def test_resume_ticked_nodes_after_the_dry_run_without_tokens_on_loopback(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    """Glue's W1 fails at J2 and J3; ticking both shows the dry run, confirming lands on the
    new run, whose previous-run link leads back and whose J1 is copied. No token is
    configured: no login, yet every POST still needs the CSRF token."""
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo(W1), store)
    port = free_port()
    with running_daemon(store, state, extra=["--http", f"127.0.0.1:{port}"]) as daemon:
        first = daemon.call("StartRun", pb.StartRunRequest(workflow="w1")).run.run_id
        assert daemon.wait_run(first).status == pb.RUN_STATUS_FAILED
        local = Browser(port)
        status, _, page = local.request("GET", f"/runs/{first}")
        assert status == 200 and "HttpOnly" in local.set_cookie and 'id="resume"' in page
        assert re.search(r'data-node="J2" data-status="FAILED"', page)
        assert local.request("POST", f"/runs/{first}/resume", {"node": ["J2", "J3"]})[0] == 403
        csrf = local.csrf(f"/runs/{first}")
        status, _, page = local.request("POST", f"/runs/{first}/resume",
                                        {"csrf": csrf, "node": ["J2", "J3"]})
        assert status == 200 and 'id="confirm"' in page
        lists = {part: re.findall(r'<li data-node="(\w+)"', items) for part, items in
                 re.findall(r'<ul id="([a-z-]+)">(.*?)</ul>', page)}
        assert lists == {"will-start": ["J2", "J3"], "runs-again": ["J4", "J5"],
                         "copied": ["J1"]}, page
        assert daemon.call("ListRuns", pb.ListRunsRequest(workflow="w1")).runs[0].run_id == first
        status, headers, _ = local.request("POST", f"/runs/{first}/resume", {
            "csrf": csrf, "node": ["J2", "J3"], "confirm": "yes", "remarks": "fixed"})
        assert status == 303
        second = headers["location"].removeprefix("/runs/")
        assert second != first
        daemon.wait_run(second)
        _, _, page = local.request("GET", f"/runs/{second}")
        assert f'id="previous-run">{first}</a>' in page
        assert re.search(rf'data-node="J1"[^>]*>.*?class="copied">{first}</a>', page, re.S)
        _, _, history = local.request("GET", "/workflows/w1")
        half = (len(first) + 1) // 2  # an id may break in its middle in a narrow window
        assert f'href="/runs/{first}">{first[:half]}<wbr>{first[half:]}</a>' in history
        assert "/login" not in history and 'action="/logout"' not in history

        def answer(method: str, path: str, host: str) -> tuple[int, str]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            cookie = "; ".join(f"{k}={v}" for k, v in local.cookies.items())
            connection.request(method, path, body=urllib.parse.urlencode({"csrf": csrf}),
                               headers={"Host": host, "Cookie": cookie, "Content-Type":
                                        "application/x-www-form-urlencoded"})
            response = connection.getresponse()
            got = (response.status, response.getheader("Set-Cookie") or "")
            connection.close()
            return got

        # a page whose own name an attacker's DNS turns into 127.0.0.1 (DNS rebinding)
        # reaches nothing: no page, no cookie, no metrics, no action
        for host in ("rebind.attacker.example", f"rebind.attacker.example:{port}",
                     "127.0.0.1.nip.io"):
            for method, path in (("GET", "/"), ("GET", "/metrics"),
                                 ("POST", "/workflows/w1/runs")):
                assert answer(method, path, host) == (403, ""), (host, method, path)
        for host in (f"127.0.0.1:{port}", "localhost", f"LOCALHOST.:{port}", f"[::1]:{port}",
                     "flowplan.localhost"):
            assert answer("GET", "/metrics", host)[0] == 200, host
        assert len(daemon.call("ListRuns", pb.ListRunsRequest(workflow="w1")).runs) == 2


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver"
                    " (.ci/run installs them)")
def test_an_open_run_page_catches_up_after_the_daemon_restarts(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    """No tokens (loopback): the page's events reconnect to the restarted daemon, which
    adopted the running node, and show what happened meanwhile, without a reload."""
    store, state = tmp_path / "store", tmp_path / "state"
    gate = tmp_path / "go"
    publish(make_repo({k: v.replace("GATE", str(gate)) for k, v in FILES.items()}), store)
    port, http_port = free_port(), free_port()
    extra = ["--http", f"127.0.0.1:{http_port}"]
    driver = _driver()
    try:
        with running_daemon(store, state, port=port, extra=extra) as daemon:
            run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="chain")).run.run_id
            driver.get(f"http://127.0.0.1:{http_port}/runs/{run_id}")
            wait_until(lambda: _status(driver, "b") == "RUNNING", "b RUNNING", timeout=20)
            driver.execute_script("document.body.dataset.loaded = 'once'")
            assert daemon.stop() == 0
        gate.touch()  # b ends while no daemon runs
        with running_daemon(store, state, port=port, extra=extra):
            wait_until(lambda: _status(driver, "b") == "SUCCEEDED",
                       "b SUCCEEDED on the page after the restart", timeout=30)
            assert driver.execute_script("return document.body.dataset.loaded") == "once"
    finally:
        driver.quit()


def _driver() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = _chromium()
    assert found is not None
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    # The features: Chromium 156 gives each window two hidden WebUI omnibox popups whose
    # renderer draws for seconds after the window opens (~0.4 CPU a window on the test
    # machine), CPU the daemons under test would miss; no page of the console needs them.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1100,700",
                     "--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(found[1]))


def browser_errors(driver: Any, *, ignore: str = "") -> list[str]:
    """What the browser logged as SEVERE since the last look (a script's exception, a CSP
    violation, a failed request), but messages that contain `ignore` (when given)."""
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not (ignore and ignore in e["message"])]


def browser_login(driver: Any, base: str, token: str) -> None:
    """Log `driver` in to the console at `base` with `token`: on the Workflows page after."""
    from selenium.webdriver.common.by import By

    driver.get(base + "/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "[data-workflow]"),
               "the workflows page", timeout=30)


def _status(driver: Any, node: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, f'#graph g[data-node="{node}"]')
               .get_attribute("data-status"))


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver"
                    " (.ci/run installs them)")
def test_in_a_browser_resume_w1_by_ticking_j2_and_j3_in_the_graph(
        make_repo: MakeRepo, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo(W1), store)
    port = free_port()
    shots = screenshots(tmp_path)
    driver = _driver()
    try:
        with running_daemon(store, state, extra=["--http", f"127.0.0.1:{port}"]) as daemon:
            first = daemon.call("StartRun", pb.StartRunRequest(workflow="w1")).run.run_id
            daemon.wait_run(first)
            driver.get(f"http://127.0.0.1:{port}/runs/{first}")
            wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, '#graph[data-drawn="yes"]'),
                       "the run's graph")
            # a status in words reads at 4.5:1 on white: SKIPPED in dark grey, not EMR's
            assert driver.execute_script(
                "return getComputedStyle(document.querySelector("
                "'tr[data-node=\"J4\"] .status')).color") == "rgb(87, 96, 106)"
            for name in ("J2", "J3"):  # a click opens the node's panel, which ticks it
                assert driver.find_element(By.CSS_SELECTOR, f'g[data-node="{name}"]'
                                           ).get_attribute("data-status") == "FAILED"
                driver.find_element(By.CSS_SELECTOR, f'g[data-node="{name}"] text').click()
                wait_until(lambda name=name: driver.find_elements(
                    By.CSS_SELECTOR, f'#panel[data-node="{name}"] #panel-tick'),
                    f"{name}'s panel with its tick box")
                assert driver.current_url.endswith(f"#node={name}")
                driver.find_element(By.ID, "panel-tick").click()
            ticked = [t.get_attribute("value") for t in driver.find_elements(
                By.CSS_SELECTOR, 'input[name="node"]') if t.is_selected()]
            assert ticked == ["J2", "J3"]
            assert [g.get_attribute("data-node") for g in driver.find_elements(
                By.CSS_SELECTOR, "#graph g.ticked")] == ["J2", "J3"]
            driver.save_screenshot(str(shots / "resume-ticked.png"))
            driver.find_element(By.ID, "resume").click()
            wait_until(lambda: driver.find_elements(By.ID, "confirm"), "the dry run's answer")
            answer = {part: [li.get_attribute("data-node") for li in driver.find_elements(
                By.CSS_SELECTOR, f"#{part} li")] for part in ("will-start", "runs-again",
                                                               "copied")}
            assert answer == {"will-start": ["J2", "J3"], "runs-again": ["J4", "J5"],
                              "copied": ["J1"]}
            driver.find_element(By.ID, "confirm").click()
            wait_until(lambda: driver.find_elements(By.ID, "previous-run"), "the new run")
            assert driver.current_url.rsplit("/", 1)[1] != first
            assert driver.find_element(By.CSS_SELECTOR, 'tr[data-node="J1"] a.copied'
                                       ).text == first
            driver.find_element(By.ID, "previous-run").click()
            wait_until(lambda: driver.current_url.endswith(f"/runs/{first}"),
                       "the previous run's page")
    finally:
        driver.quit()


def test_a_flood_of_login_forms_does_not_push_out_who_logged_in(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from flowplan.daemon.server.auth import TokenInterceptor
    from flowplan.daemon.server.console import sessions as console
    from flowplan.daemon.server.roles import Grant, Role

    monkeypatch.setattr(console, "MAX_SESSIONS", 5)
    alice = Grant(name="alice", role=Role.VIEWER, token="t" * 20)
    sessions = console.Sessions(TokenInterceptor([alice]))
    logged_in, _ = sessions.new(alice)
    for _ in range(50):
        sessions.new(None)  # GET /login, again and again
    assert sessions.who(sessions.get(logged_in)) == alice
    assert sessions.who(sessions.get("not-a-session")) is None


def test_every_vendored_file_is_the_one_recorded_with_its_licence() -> None:
    """static/VENDORED.md names each vendored file with its sha256 and licence file: the
    files served are those bytes, unchanged, and no built file is there unrecorded."""
    static = ROOT / "daemon" / "server" / "static"
    rows = [line for line in (static / "VENDORED.md").read_text().splitlines()
            if line.startswith("| `")]
    recorded = {}
    for row in rows:
        name = re.match(r"\| `([^`]+)`", row)
        licence = re.search(r"\| [^|]*`([^`]+\.LICENSE)` \|", row)
        digest = re.search(r"\| `([0-9a-f]{64})`", row)
        assert name and licence and digest, row
        recorded[name[1]] = digest[1]
        assert (static / licence[1]).read_text().strip(), licence[1]
    assert set(recorded) == {p.name for p in static.glob("*.min.js")}
    for name, digest in recorded.items():
        assert hashlib.sha256((static / name).read_bytes()).hexdigest() == digest, name


def test_static_files_are_named_by_their_hash_and_kept(
        console: tuple[Daemon, int, Path]) -> None:
    """A page names each script by its content's hash: that URL may be kept a year; any
    other is revalidated (304 when unchanged); pages themselves are never stored."""
    _, port, _ = console
    operator = Browser(port)
    assert operator.login(TOKENS["operator"]) == 303
    status, headers, page = operator.request("GET", "/workflows/chain")
    assert status == 200 and headers["cache-control"] == "no-store"
    scripts = re.findall(r'<script src="(/static/[^"]+)"', page)
    assert {s.split("?")[0] for s in scripts} >= {"/static/console.js", "/static/graph.js",
                                                  "/static/d3-dag-1.2.2.min.js",
                                                  "/static/layout.js"}
    for url in scripts:
        status, headers, body = operator.request("GET", url)
        assert status == 200 and body, url
        assert headers["cache-control"] == "public, max-age=31536000, immutable", url
        assert "default-src 'self'" in headers["content-security-policy"]
        name = url.split("?")[0]
        status, headers, _ = operator.request("GET", name)
        assert (status, headers["cache-control"]) == (200, "no-cache"), name
        assert operator.request("GET", name + "?v=0123456789abcdef")[1]["cache-control"] \
            == "no-cache"
        status, headers, _ = operator.request(
            "GET", name, headers={"If-Modified-Since": headers["last-modified"]})
        assert (status, headers["cache-control"]) == (304, "no-cache"), name
    viewer = Browser(port)  # before a login too: the login page's style sheet
    status, _, page = viewer.request("GET", "/login")
    sheet = re.search(r'href="(/static/console\.css\?v=[0-9a-f]{16})"', page)
    assert sheet and viewer.request("GET", sheet.group(1))[0] == 200


def test_a_fault_of_a_handler_is_a_500_with_the_security_headers() -> None:
    """aiohttp answers a handler's exception itself, past the middleware: the backstop still
    gives that answer the Content-Security-Policy and the others."""
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    async def main() -> tuple[int, dict[str, str]]:
        app = web.Application()
        app.router.add_get("/", broken)
        app.on_response_prepare.append(backstop_headers)
        async with TestClient(TestServer(app)) as client:
            response = await client.get("/")
            return response.status, dict(response.headers)

    status, headers = asyncio.run(main())
    assert status == 500
    assert {k: headers.get(k) for k in SECURITY_HEADERS} == SECURITY_HEADERS
