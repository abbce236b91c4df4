"""The plan store: versions written once, idempotent publish, tombstones, tamper checks."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import wait_until

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.plan import PlanError, load_plan
from flowplan.compiler.repo import read_repo
from flowplan.compiler.report import print_publish_report
from flowplan.compiler.store import Change, Kept, PlanStore

WF = """
name: {name}
nodes:
  - name: a
    command: echo {word}
"""
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _publish(repo: Path, store: PlanStore, **kwargs: object):  # type: ignore[no-untyped-def]
    result = compile_repo(read_repo(repo))
    return result, store.publish(result.plans, keep=result.failed, now=NOW, **kwargs)


def test_publish_writes_version_one_then_nothing_when_unchanged(make_repo, tmp_path):
    repo = make_repo({"workflows/a.yaml": WF.format(name="alpha", word="hi")})
    store = PlanStore(tmp_path / "store")
    _, report = _publish(repo, store, remarks="first", commit="abc123")
    assert [(p.workflow, p.change, p.version) for p in report.published] == [
        ("alpha", Change.NEW, 1)]
    plan = store.load("alpha", 1)
    assert (plan.version, plan.remarks, plan.commit, plan.published_at) == (
        1, "first", "abc123", NOW)
    _, again = _publish(repo, store)
    assert [(p.change, p.version) for p in again.published] == [(Change.UNCHANGED, 1)]
    assert store.versions("alpha") == [1]


def test_what_a_publisher_killed_mid_write_left_goes_with_the_next_publish(make_repo,
                                                                           tmp_path):
    """A publisher killed while it wrote a version (kill -9, a power cut) leaves its
    temporary file, never the version: the next publish, holding the lock, removes it."""
    repo = make_repo({"workflows/a.yaml": WF.format(name="alpha", word="hi")})
    store = PlanStore(tmp_path / "store")
    _publish(repo, store)
    left = store.root / "alpha" / ".2.json.0123456789ab.tmp"
    left.write_bytes(b'{"schema_version": 1, "work')  # as the killed one left it
    assert store.versions("alpha") == [1] and store.latest("alpha").version == 1
    make_repo({"workflows/a.yaml": WF.format(name="alpha", word="bye")})
    _, report = _publish(repo, store)
    assert [(p.change, p.version) for p in report.published] == [(Change.UPDATED, 2)]
    assert sorted(p.name for p in (store.root / "alpha").iterdir()) == ["1.json", "2.json"]


def test_changed_content_gets_next_version_and_old_one_stays(make_repo, tmp_path):
    repo = make_repo({"workflows/a.yaml": WF.format(name="alpha", word="hi")})
    store = PlanStore(tmp_path / "store")
    _publish(repo, store)
    first = (store.root / "alpha" / "1.json").read_bytes()
    make_repo({"workflows/a.yaml": WF.format(name="alpha", word="bye")})
    _, report = _publish(repo, store)
    assert [(p.change, p.version) for p in report.published] == [(Change.UPDATED, 2)]
    assert (store.root / "alpha" / "1.json").read_bytes() == first
    assert store.latest("alpha").content.nodes[0].command == "echo bye"  # type: ignore[union-attr]


def test_removed_workflow_gets_tombstone_and_readding_is_new(make_repo, tmp_path):
    repo = make_repo({"workflows/a.yaml": WF.format(name="alpha", word="hi"),
                      "workflows/b.yaml": WF.format(name="beta", word="hi")})
    store = PlanStore(tmp_path / "store")
    _publish(repo, store)
    (repo / "workflows/b.yaml").unlink()
    _, report = _publish(repo, store)
    assert [(p.workflow, p.change, p.version) for p in report.written] == [
        ("beta", Change.REMOVED, 2)]
    tomb = store.load("beta", 2)
    assert tomb.tombstone and tomb.content is None
    _, again = _publish(repo, store)
    assert again.written == ()  # a tombstone is not written twice
    make_repo({"workflows/b.yaml": WF.format(name="beta", word="hi")})
    _, back = _publish(repo, store)
    assert [(p.workflow, p.change, p.version) for p in back.written] == [
        ("beta", Change.NEW, 3)]


def test_a_removed_workflow_whose_latest_version_is_unreadable_gets_its_tombstone(
        make_repo, tmp_path):
    """Else the daemon, skipping the unreadable version, would go on running the one before
    it of a workflow that no longer exists."""
    repo = make_repo({"workflows/a.yaml": WF.format(name="alpha", word="hi"),
                      "workflows/b.yaml": WF.format(name="beta", word="one")})
    store = PlanStore(tmp_path / "store")
    _publish(repo, store)
    make_repo({"workflows/b.yaml": WF.format(name="beta", word="two")})
    _publish(repo, store)
    store.path("beta", 2).write_text('{"broken": true}')
    (repo / "workflows/b.yaml").unlink()
    _, report = _publish(repo, store)
    assert [(p.workflow, p.change, p.version) for p in report.written] == [
        ("beta", Change.REMOVED, 3)]
    assert store.load("beta", 3).tombstone


def test_invalid_workflow_keeps_last_good_version_and_others_publish(make_repo, tmp_path):
    repo = make_repo({"workflows/a.yaml": WF.format(name="alpha", word="hi"),
                      "workflows/b.yaml": WF.format(name="beta", word="hi")})
    store = PlanStore(tmp_path / "store")
    _publish(repo, store)
    make_repo({"workflows/a.yaml": WF.format(name="alpha", word="changed"),
               "workflows/b.yaml": "name: beta\nnodes:\n  - name: a\n    comand: x\n"})
    result, report = _publish(repo, store)
    assert result.failed == ("beta",)
    assert [(p.workflow, p.version) for p in report.written] == [("alpha", 2)]
    assert report.kept == (Kept("beta", 1),)
    assert store.versions("beta") == [1]


def test_an_invalid_workflow_whose_latest_version_removed_it_stays_removed(make_repo,
                                                                          tmp_path, capsys):
    repo = make_repo({"workflows/a.yaml": WF.format(name="alpha", word="hi"),
                      "workflows/b.yaml": WF.format(name="beta", word="hi")})
    store = PlanStore(tmp_path / "store")
    _publish(repo, store)
    (repo / "workflows" / "b.yaml").unlink()
    _, removed = _publish(repo, store)
    assert [(p.workflow, p.version, p.change) for p in removed.written] == [
        ("beta", 2, Change.REMOVED)]
    make_repo({"workflows/b.yaml": "name: beta\nnodes:\n  - name: a\n    comand: x\n"})
    _, report = _publish(repo, store)
    assert report.kept == (Kept("beta", 2, removed=True),)
    print_publish_report(report)
    assert capsys.readouterr().out.splitlines() == [
        "alpha: unchanged (version 1)", "beta: not published, invalid; it stays removed"
        " (version 2)"]


def test_no_tombstone_while_a_file_name_is_unreadable(make_repo, tmp_path):
    repo = make_repo({"workflows/a.yaml": WF.format(name="alpha", word="hi"),
                      "workflows/file.yaml": WF.format(name="beta", word="hi")})
    store = PlanStore(tmp_path / "store")
    _publish(repo, store)
    make_repo({"workflows/file.yaml": "name: beta\nnodes: [\n"})  # syntax error
    result = compile_repo(read_repo(repo))
    assert result.uncertain_files == ("workflows/file.yaml",)
    report = store.publish(result.plans, keep=result.failed,
                           remove_missing=not result.uncertain_files)
    assert report.written == ()
    assert store.versions("beta") == [1]


@pytest.mark.parametrize("name", ["daily sales", "9lives"])
def test_no_tombstone_while_a_name_is_invalid(make_repo, tmp_path, name):
    """A typo in `name:` must not remove the workflow the file really names."""
    repo = make_repo({"workflows/a.yaml": WF.format(name="daily", word="hi")})
    store = PlanStore(tmp_path / "store")
    _publish(repo, store)
    make_repo({"workflows/a.yaml": WF.format(name=f"'{name}'", word="hi")})
    result = compile_repo(read_repo(repo))
    assert result.uncertain_files == ("workflows/a.yaml",)
    report = store.publish(result.plans, keep=result.failed,
                           remove_missing=not result.uncertain_files)
    assert report.written == ()
    assert store.versions("daily") == [1]


def test_tampered_plan_is_refused(make_repo, tmp_path):
    repo = make_repo({"workflows/a.yaml": WF.format(name="alpha", word="hi")})
    store = PlanStore(tmp_path / "store")
    _publish(repo, store)
    path = store.path("alpha", 1)
    raw = json.loads(path.read_text())
    raw["content"]["nodes"][0]["command"] = "rm -rf /"
    path.write_text(json.dumps(raw))
    with pytest.raises(PlanError, match="digest mismatch"):
        load_plan(path)


def test_unknown_schema_version_is_refused_with_upgrade_hint(make_repo, tmp_path):
    repo = make_repo({"workflows/a.yaml": WF.format(name="alpha", word="hi")})
    store = PlanStore(tmp_path / "store")
    _publish(repo, store)
    path = store.path("alpha", 1)
    raw = json.loads(path.read_text())
    raw["schema_version"] = 99
    path.write_text(json.dumps(raw))
    with pytest.raises(PlanError, match=r"schema_version 99 is not supported.*upgrade"):
        load_plan(path)


@pytest.mark.parametrize(("raw", "message"), [
    ({}, "not a plan file: schema_version must be a positive whole number, found None"),
    ({"schema_version": "1"}, "not a plan file: schema_version must be a positive whole"
                              " number, found '1'"),
    ({"schema_version": True}, "not a plan file: schema_version must be a positive whole"
                               " number, found True"),
    ({"schema_version": 0}, "not a plan file: schema_version must be a positive whole"
                            " number, found 0"),
])
def test_a_file_without_a_schema_version_is_not_a_plan(tmp_path, raw, message):
    path = tmp_path / "1.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(PlanError) as refused:
        load_plan(path)
    assert str(refused.value) == f"{path}: {message}"
    assert "upgrade" not in str(refused.value)  # an upgrade would not help


def test_moved_plan_file_is_refused(make_repo, tmp_path):
    repo = make_repo({"workflows/a.yaml": WF.format(name="alpha", word="hi")})
    store = PlanStore(tmp_path / "store")
    _publish(repo, store)
    store.path("alpha", 1).rename(store.root / "alpha" / "7.json")
    with pytest.raises(PlanError, match="must not be moved"):
        store.load("alpha", 7)


def test_version_file_is_never_overwritten(make_repo, tmp_path):
    repo = make_repo({"workflows/a.yaml": WF.format(name="alpha", word="hi")})
    store = PlanStore(tmp_path / "store")
    _publish(repo, store)
    with pytest.raises(FileExistsError):
        store._write_once(store.path("alpha", 1), b"{}")
    assert not list((store.root / "alpha").glob(".*.tmp"))


def test_concurrent_publishes_never_share_a_version(make_repo, tmp_path):
    store = PlanStore(tmp_path / "store")
    repos = [make_repo({"workflows/a.yaml": WF.format(name="alpha", word=f"w{i}")},
                       root=tmp_path / f"repo{i}") for i in range(8)]
    results = [compile_repo(read_repo(r)) for r in repos]
    threads = [threading.Thread(target=store.publish, args=(r.plans,)) for r in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.versions("alpha") == list(range(1, 9))
    digests = {store.load("alpha", v).digest for v in range(1, 9)}
    assert len(digests) == 8


def _refusal_within(seconds: float, load: Callable[[], object]) -> str:
    """The PlanError message of `load()`, failing (not hanging) if it blocks."""
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            load()
            outcome.append(None)
        except BaseException as exc:  # handed to the test's thread
            outcome.append(exc)

    threading.Thread(target=attempt, daemon=True).start()
    wait_until(lambda: outcome, "the load to return", timeout=seconds)
    assert isinstance(outcome[0], PlanError), outcome
    return str(outcome[0])


def test_a_version_that_is_not_a_regular_file_is_refused_unread(make_repo, tmp_path):
    repo = make_repo({"workflows/a.yaml": WF.format(name="alpha", word="hi")})
    store = PlanStore(tmp_path / "store")
    _publish(repo, store)
    os.mkfifo(store.path("alpha", 2))  # opened for reading, it would wait for a writer
    assert _refusal_within(10, lambda: store.load("alpha", 2)).endswith(
        "2.json: cannot read plan: not a regular file (a FIFO)")
    store.path("alpha", 3).symlink_to(store.path("alpha", 1))  # publish never links
    assert _refusal_within(10, lambda: store.load("alpha", 3)).endswith(
        "3.json: cannot read plan: not a regular file (a symlink)")
    assert store.load("alpha", 1).version == 1


def test_a_store_shared_by_a_group_is_writable_by_the_group(make_repo, tmp_path):
    """With umask 002 every file publish makes, its lock files included, is the group's to
    write: another member of the group can publish next (docs/gitops.md)."""
    repo = make_repo({"workflows/a.yaml": WF.format(name="alpha", word="hi")})
    old = os.umask(0o002)
    try:
        _publish(repo, PlanStore(tmp_path / "store"))
    finally:
        os.umask(old)
    made = [path for path in (tmp_path / "store").rglob("*")]
    assert any(path.name.endswith(".lock") for path in made)
    assert all(path.stat().st_mode & 0o020 for path in made), [
        (str(path), oct(path.stat().st_mode)) for path in made if not path.stat().st_mode & 0o020]
