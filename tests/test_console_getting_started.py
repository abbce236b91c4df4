"""The console's getting-started walk (`/getting-started`) kept true, against a real
`flowplan serve` on flowplan's own workflows/ (what `flowplan up` serves in the clone): every
CLI command the page shows is one of docs/getting-started.md (run ids aside), the read-only
ones run as written against this daemon (the backfill's dry run printing what the docs
show), the failed run the walk describes fails as it says, and every link of the page opens
a page of this daemon. In Chromium: docs/console/getting-started.png, with no error in the
browser's console."""

from __future__ import annotations

import html
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import FLOWPLAN, ROOT, wait_until
from daemon_harness import free_port, pb, publish, running_daemon
from google.protobuf import struct_pb2
from test_web_console import Browser, _chromium, _driver, browser_errors, screenshots

DOCS = ROOT / "docs" / "getting-started.md"
RUN_ID = re.compile(r"\bwr_[0-9A-Z]{26}\b")
CHANGES_THINGS = {"up", "run", "resume", "debug"}  # shown, not run here


def _commands(page: str) -> list[str]:
    return [html.unescape(c) for c in re.findall(r'<code class="cli">([^<]*)</code>', page)]


def _links(page: str) -> list[str]:
    return sorted({html.unescape(h) for h in re.findall(r'href="([^"]+)"', page)})


def test_the_walk_says_what_the_docs_say_and_its_links_resolve(tmp_path: Path) -> None:
    store, state = tmp_path / "store", tmp_path / "state"
    publish(ROOT, store)
    port = free_port()
    docs = RUN_ID.sub("RUN_ID", DOCS.read_text())
    with running_daemon(store, state, extra=["--http", f"127.0.0.1:{port}"]) as daemon:
        browser = Browser(port)
        _, _, workflows = browser.request("GET", "/")
        assert 'id="getting-started-hint"' in workflows  # no run yet: the walk is offered
        assert 'href="/getting-started">Getting started</a></nav>' in workflows
        status, _, page = browser.request("GET", "/getting-started")
        assert status == 200
        commands = _commands(page)
        assert {"flowplan up", "flowplan run daily_sales --wait", "flowplan runs",
                "flowplan run reindex --param batch_size=0 --wait",
                "flowplan resume RUN_ID --node build --dry-run",
                "flowplan backfill daily_sales --from 2026-01-01 --to 2026-01-04 --dry-run",
                } <= set(commands), commands
        assert [c for c in commands if c not in docs] == []

        env = {**os.environ, "FLOWPLAN_ADDRESS": daemon.address, "NO_COLOR": "1"}
        for command in sorted(set(commands)):
            words = shlex.split(command)
            if "RUN_ID" in words or words[1] in CHANGES_THINGS:
                continue
            done = subprocess.run([*FLOWPLAN, *words[1:]], cwd=ROOT, env=env, text=True,
                                  capture_output=True, timeout=60)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            if words[1] == "backfill":  # the docs show its output
                assert f"$ {command}\n{done.stdout}" in DOCS.read_text(), done.stdout

        # the failed run of the walk, its data kept under tmp_path
        params = struct_pb2.Struct()
        params.update({"batch_size": "0", "work_dir": str(tmp_path / "search")})
        run_id = daemon.call("StartRun", pb.StartRunRequest(workflow="reindex",
                                                            params=params)).run.run_id
        run = daemon.wait_run(run_id)
        assert run.status == pb.RUN_STATUS_FAILED
        assert {n.name: (n.status, len(n.attempts)) for n in run.nodes} == {
            "snapshot": (pb.NODE_STATUS_SUCCEEDED, 1), "build": (pb.NODE_STATUS_FAILED, 2),
            "publish": (pb.NODE_STATUS_SKIPPED, 0)}
        _, _, workflows = browser.request("GET", "/")
        assert 'id="getting-started-hint"' not in workflows
        _, _, page = browser.request("GET", "/getting-started")
        assert page.count(f'data-run="{run_id}"') == 2  # the latest run, the latest failed

        links = _links(page)
        for expected in ("/workflows/daily_sales", "/workflows/reindex",
                         "/workflows/daily_sales#backfill-form", f"/runs/{run_id}"):
            assert expected in links, links
        for link in links:
            if not link.startswith("/"):
                continue
            path, _, anchor = link.partition("#")
            status, _, target = browser.request("GET", path)
            assert status == 200, link
            assert not anchor or f'id="{anchor}"' in target, link


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium and chromium-driver"
                    " (.ci/run installs them)")
def test_in_a_browser_the_walk_opens_from_the_menu(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    store, state = tmp_path / "store", tmp_path / "state"
    publish(ROOT, store)
    port = free_port()
    shots = screenshots(tmp_path)
    driver = _driver()
    try:
        with running_daemon(store, state, extra=["--http", f"127.0.0.1:{port}"]):
            driver.get(f"http://127.0.0.1:{port}/")
            driver.find_element(By.LINK_TEXT, "Getting started").click()
            wait_until(lambda: driver.find_elements(By.ID, "walk"), "the walk")
            steps = driver.find_elements(By.CSS_SELECTOR, "#walk > li h2")
            assert [s.text for s in steps][:3] == [
                "What flowplan up serves", "Open a workflow", "Run it"]
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1100, height + 140)  # the whole walk in one picture
            driver.save_screenshot(str(shots / "getting-started.png"))
            driver.find_element(By.CSS_SELECTOR, '#step-open a[data-workflow]').click()
            wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, '#graph[data-drawn="yes"]'),
                       "the first workflow's page")
            assert driver.current_url.endswith("/workflows/daily_sales")
            errors = browser_errors(driver)
            assert not errors, errors
    finally:
        driver.quit()
