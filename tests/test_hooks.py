"""Publish on git push, reject invalid pushes, and the pull alternative: real git, real bare
repositories, real `git push` from a clone, the hooks run by git as on a server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import FLOWPLAN, ROOT

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.diagnostics import Code
from flowplan.compiler.git import Git, compile_commit, publish_from_git
from flowplan.compiler.hooks import BACKUP_SUFFIX, install_hooks
from flowplan.compiler.repo import read_repo
from flowplan.compiler.store import PlanStore, PublishReport

WF = """\
name: tiny
nodes:
  - name: a
    command: echo {word}
"""
BAD = """\
name: bad
nodes:
  - name: a
    command: echo done
    retires: 2
"""
GIT_DIR = os.path.dirname(shutil.which("git") or "/usr/bin/git")


@pytest.fixture(autouse=True)
def git_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of our own: test identity, main as the default branch, no system config."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Flow Tester\n\temail = tester@example.com\n"
        "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    return home


def git(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["git", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def flowplan(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWPLAN, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


@dataclass
class Server:
    bare: Path
    store: Path
    clone: Path

    def commit(self, message: str, files: dict[str, str] | None = None) -> str:
        for relative, content in (files or {}).items():
            (self.clone / relative).parent.mkdir(parents=True, exist_ok=True)
            (self.clone / relative).write_text(content)
        git("add", "--all", cwd=self.clone)  # a scratch clone: everything in it
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.clone)
        return git("rev-parse", "HEAD", cwd=self.clone).stdout.strip()

    def push(self, *refspecs: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
        return git("push", self.bare, *(refspecs or ("HEAD:main",)), cwd=self.clone, env=env,
                   check=False)

    def head(self, branch: str = "main") -> str | None:
        done = git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", cwd=self.bare,
                   check=False)
        return done.stdout.strip() or None

    def snapshot(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.store)): p.read_bytes()
                for p in sorted(self.store.rglob("*.json"))}


def make_server(tmp_path: Path, *, hooks: bool = True) -> Server:
    """A bare repository with hooks, and a clone holding the example workflows + `tiny`."""
    bare, store, clone = tmp_path / "flows.git", tmp_path / "store", tmp_path / "clone"
    git("init", "--quiet", "--bare", bare, cwd=tmp_path)
    if hooks:
        install_hooks(bare, store)
    git("init", "--quiet", clone, cwd=tmp_path)
    shutil.copytree(ROOT / "workflows", clone / "workflows",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "flowplan.yaml", clone / "flowplan.yaml")
    (clone / "workflows" / "tiny.yaml").write_text(WF.format(word="one"))
    return Server(bare, store, clone)


@pytest.fixture
def server(tmp_path: Path) -> Server:
    srv = make_server(tmp_path)
    srv.commit("Add the example workflows", {"README": "flows\n"})
    done = srv.push()
    assert done.returncode == 0, done.stderr
    return srv


def test_valid_push_publishes_next_version_with_subject_and_sha(server: Server):
    store = PlanStore(server.store)
    assert store.versions("tiny") == [1]
    first = store.load("tiny", 1)
    assert first.remarks == "Add the example workflows" and first.commit == server.head()
    # the plans compiled from git objects are the plans of the same files on disk
    on_disk = compile_repo(read_repo(server.clone))
    assert {p.workflow: p.digest for p in on_disk.plans} == {
        w: store.latest(w).digest for w in store.workflows()}  # type: ignore[union-attr]

    sha = server.commit("Say two\n\nThe body is not the subject.",
                        {"workflows/tiny.yaml": WF.format(word="two")})
    done = server.push()
    assert done.returncode == 0, done.stderr
    assert "remote: tiny: version 2 (updated)" in done.stderr
    assert "remote: daily_sales: unchanged (version 1)" in done.stderr
    plan = store.load("tiny", 2)
    assert (plan.remarks, plan.commit) == ("Say two", sha)
    assert plan.content.nodes[0].command == "echo two"  # type: ignore[union-attr]
    assert store.versions("daily_sales") == [1]


def test_invalid_push_is_rejected_with_file_line_column_and_store_unchanged(server: Server):
    before, head = server.snapshot(), server.head()
    server.commit("Break it", {"workflows/bad.yaml": BAD,
                               "workflows/tiny.yaml": WF.format(word="changed")})
    done = server.push()
    assert done.returncode != 0
    assert ("remote: workflows/bad.yaml:5:5: error FP101 unknown key 'retires'"
            " (did you mean 'retries'?)") in done.stderr
    assert "remote: 1 error in 1 file" in done.stderr
    assert "pre-receive hook declined" in done.stderr
    assert server.head() == head
    assert server.snapshot() == before


def test_a_file_name_that_is_not_utf8_is_rejected_not_published_half(server: Server):
    before, head = server.snapshot(), server.head()
    latin1 = "workflows/" + b"\xe9t\xe9".decode("utf-8", "surrogateescape") + ".yaml"
    server.commit("Add a Latin-1 name", {latin1: WF.format(word="accent")})
    done = server.push()
    assert done.returncode != 0
    assert ("remote: workflows/\\xe9t\\xe9.yaml:1:1: error FP012 cannot read the workflow"
            " file: its name is not UTF-8; rename it with a UTF-8 name") in done.stderr
    assert server.head() == head
    assert server.snapshot() == before


def test_same_content_in_a_new_commit_publishes_nothing(server: Server):
    before = server.snapshot()
    server.commit("Touch the README only", {"README": "flows, again\n"})
    done = server.push()
    assert done.returncode == 0, done.stderr
    assert "remote: tiny: unchanged (version 1)" in done.stderr
    assert server.snapshot() == before


def test_two_pushes_in_quick_succession_leave_the_newer_commit_published(server: Server):
    older = server.commit("Older", {"workflows/tiny.yaml": WF.format(word="older")})
    newer = server.commit("Newer", {"workflows/tiny.yaml": WF.format(word="newer")})
    pushes = [subprocess.Popen(["git", "push", str(server.bare), f"{sha}:refs/heads/main"],
                               cwd=server.clone, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
              for sha in (older, newer)]
    for push in pushes:
        push.communicate(timeout=60)  # one may lose the race for the ref: git rejects it
    store = PlanStore(server.store)
    assert store.latest("tiny").commit == server.head()  # type: ignore[union-attr]
    if server.head() != newer:  # the newer push lost: its author pushes again
        assert server.push(f"{newer}:refs/heads/main").returncode == 0
    latest = store.latest("tiny")
    assert latest is not None and (latest.commit, latest.remarks) == (newer, "Newer")
    assert latest.content.nodes[0].command == "echo newer"  # type: ignore[union-attr]

    # the older push's post-receive running last (it was slow) cannot go back in time
    before = server.snapshot()
    hook = server.bare / "hooks" / "post-receive"
    late = subprocess.run([str(hook)], input=f"{'0' * 40} {older} refs/heads/main\n",
                          cwd=server.bare, env={"PATH": GIT_DIR, "GIT_DIR": "."},
                          capture_output=True, text=True, timeout=60)
    assert late.returncode == 0, late.stderr
    assert f"moved on to {newer[:12]}" in late.stderr
    assert server.snapshot() == before


def test_push_to_another_branch_passes_without_publishing(server: Server):
    before = server.snapshot()
    server.commit("Work in progress", {"workflows/bad.yaml": BAD})
    done = server.push("HEAD:refs/heads/feature")
    assert done.returncode == 0, done.stderr
    assert "remote:" not in done.stderr
    assert server.head("feature") is not None
    assert server.snapshot() == before


def test_deleting_main_is_refused(server: Server):
    done = server.push(":main")
    assert done.returncode != 0
    assert "remote: flowplan: deleting main is refused" in done.stderr
    assert server.head() is not None


def test_hooks_work_with_a_minimal_environment(server: Server, git_home: Path):
    """As `env -i`: no python on PATH, no PYTHONPATH, no virtualenv; git and /bin/sh only."""
    server.commit("Minimal", {"workflows/tiny.yaml": WF.format(word="minimal")})
    done = server.push(env={"PATH": GIT_DIR, "HOME": str(git_home)})
    assert done.returncode == 0, done.stderr
    assert "remote: tiny: version 2 (updated)" in done.stderr


def test_install_is_idempotent_and_never_overwrites_a_foreign_hook(tmp_path: Path):
    bare = tmp_path / "flows.git"
    git("init", "--quiet", "--bare", bare, cwd=tmp_path)
    first = flowplan("hooks", "install", bare, "--store", tmp_path / "store")
    assert first.returncode == 0, first.stderr
    hooks = {name: (bare / "hooks" / name).read_bytes() for name in ("pre-receive",
                                                                     "post-receive")}
    assert str(tmp_path / "store") in hooks["post-receive"].decode()
    assert sys.executable in hooks["pre-receive"].decode()
    again = flowplan("hooks", "install", bare, "--store", tmp_path / "store")
    assert again.returncode == 0 and again.stdout.count(": unchanged") == 2
    assert {n: (bare / "hooks" / n).read_bytes() for n in hooks} == hooks

    other = tmp_path / "other.git"
    git("init", "--quiet", "--bare", other, cwd=tmp_path)
    foreign = other / "hooks" / "pre-receive"
    foreign.write_text("#!/bin/sh\nexit 0\n")
    refused = flowplan("hooks", "install", other, "--store", tmp_path / "store")
    assert refused.returncode == 1
    assert "not written by flowplan" in refused.stderr and "--force" in refused.stderr
    assert foreign.read_text() == "#!/bin/sh\nexit 0\n"
    assert not (other / "hooks" / "post-receive").exists()  # all or nothing
    forced = flowplan("hooks", "install", other, "--store", tmp_path / "store", "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"{foreign}: replaced" in forced.stdout
    assert (other / "hooks" / f"pre-receive{BACKUP_SUFFIX}").read_text() == "#!/bin/sh\nexit 0\n"


def test_install_refuses_a_repository_that_is_not_bare(tmp_path: Path):
    git("init", "--quiet", tmp_path / "work", cwd=tmp_path)
    for target in (tmp_path / "work", tmp_path / "work" / ".git", tmp_path / "nothing"):
        done = flowplan("hooks", "install", target, "--store", tmp_path / "store")
        assert done.returncode == 2
        assert "bare repository" in done.stderr or "not a git repository" in done.stderr


def test_publish_git_from_a_path_publishes_head_and_is_idempotent(tmp_path: Path):
    srv = make_server(tmp_path, hooks=False)
    sha = srv.commit("First from git", {"README": "x\n"})
    assert srv.push().returncode == 0
    store = tmp_path / "pulled"
    done = flowplan("publish", "--git", srv.bare, "--branch", "main", "--store", store)
    assert done.returncode == 0, done.stderr
    assert "tiny: version 1 (new)" in done.stdout
    plan = PlanStore(store).load("tiny", 1)
    assert (plan.remarks, plan.commit) == ("First from git", sha)
    files = sorted(store.rglob("*.json"))

    report = publish_from_git(str(srv.bare), "main", store)
    assert isinstance(report, PublishReport) and report.written == ()
    assert report.commit == sha and sorted(store.rglob("*.json")) == files

    newer = srv.commit("Second", {"workflows/tiny.yaml": WF.format(word="two")})
    assert srv.push().returncode == 0
    report = publish_from_git(str(srv.bare), "main", store)
    assert [(p.workflow, p.version) for p in report.written] == [("tiny", 2)]
    assert PlanStore(store).load("tiny", 2).commit == newer

    missing = flowplan("publish", "--git", srv.bare, "--branch", "nope", "--store", store)
    assert missing.returncode == 1 and "nope" in missing.stderr


def test_a_commit_is_read_from_objects_with_modes_and_confined_symlinks(tmp_path: Path):
    srv = make_server(tmp_path, hooks=False)
    (srv.clone / "jobs").mkdir()
    (srv.clone / "jobs" / "run.sh").write_text("echo hi\n")
    (srv.clone / "jobs" / "run.sh").chmod(0o755)
    os.symlink("run.sh", srv.clone / "jobs" / "alias.sh")
    os.symlink("/etc/hostname", srv.clone / "jobs" / "escape.sh")
    (srv.clone / "workflows").mkdir(exist_ok=True)
    os.symlink("/etc/passwd", srv.clone / "workflows" / "stolen.yaml")
    srv.commit("Links", {"workflows/links.yaml": (
        "name: links\nnodes:\n  - source: jobs/alias.sh\n  - source: jobs/escape.sh\n")})
    sha = git("rev-parse", "HEAD", cwd=srv.clone).stdout.strip()
    repo = Git.open(srv.clone / ".git")
    with repo.exported(sha) as tree:
        assert tree.read("jobs/alias.sh") == b"echo hi\n"
        assert os.access(tree.root / "jobs" / "run.sh", os.X_OK)
        assert not (tree.root / "jobs" / "escape.sh").exists()  # points nowhere on this disk
    result = compile_commit(repo, sha)
    assert [(d.code, d.line) for d in result.diagnostics] == [
        (Code.SOURCE_OUTSIDE, 4), (Code.UNREADABLE_FILE, 1)]
    assert str(result.diagnostics[1]) == (  # as `flowplan check` says it of a working tree
        "workflows/stolen.yaml:1:1: FP012 cannot read the workflow file: it resolves outside"
        " the repository (symlink); a workflow file or flowplan.yaml must be inside it")


def test_a_job_source_committed_through_git_lfs_is_rejected(server: Server):
    """The commit holds the LFS pointer, not the script: publishing it would run the pointer."""
    before, head = server.snapshot(), server.head()
    pointer = ("version https://git-lfs.github.com/spec/v1\n"
               "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
               "size 48213\n")
    server.commit("Track jobs with LFS", {
        ".gitattributes": "jobs/*.py filter=lfs diff=lfs merge=lfs -text\n",
        "jobs/train.py": pointer,  # what `git lfs` commits; no git-lfs here to do it
        "workflows/train.yaml": "name: train\nnodes:\n  - source: jobs/train.py\n"})
    done = server.push()
    assert done.returncode != 0
    assert ("remote: workflows/train.yaml:3:13: error FP305 source 'jobs/train.py' is a Git LFS"
            " pointer, not the file it stands for: flowplan reads sources from the commit's"
            " objects, where Git LFS keeps only the pointer; commit the source itself, not"
            " through Git LFS (no `filter=lfs` for it in .gitattributes)") in done.stderr
    assert server.head() == head
    assert server.snapshot() == before
