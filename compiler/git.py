"""The edge where git is read: a commit's tree into a temporary folder, commit facts, fetches.

Every git command runs as a subprocess with an explicit, minimal environment (`Git.env`):
PATH, HOME and the git configuration switches, plus, only when asked, the quarantine
variables that git sets for a pre-receive hook (pushed objects are not in the repository
yet) or the variables a fetch over ssh or a proxy needs. Nothing else of the caller's
environment leaks in: no GIT_DIR, GIT_WORK_TREE or GIT_INDEX_FILE from a hook.

A commit is read from git objects (`ls-tree` and `cat-file --batch`), never from a working
copy, into a temporary folder that the compiler then reads like any repository. `git
archive` is not used: it applies `export-ignore` and `export-subst` attributes, so what it
writes is not always what was committed.

Publishing from git (`publish_branch`, `publish_from_git`) always publishes the branch's
head at the time the publish lock is held, whatever commit triggered it: see
docs/gitops.md, "Concurrency".
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from flowplan.compiler.compile import CompileResult, compile_repo
from flowplan.compiler.files import locked
from flowplan.compiler.repo import read_repo
from flowplan.compiler.store import PlanStore, PublishReport

SHA_RE: Final = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # sha1 or sha256 object names
PUBLISH_LOCK: Final = ".git-publish.lock"  # in the store: one git-driven publish at a time
CACHE_DIR: Final = ".git-cache"  # in the store: the bare mirror `publish_from_git` fetches
DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"
FETCH_TIMEOUT: Final = 300.0  # seconds

_CONFIG_ENV: Final = ("HOME", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL")
QUARANTINE_ENV: Final = ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
                         "GIT_QUARANTINE_PATH")
_NETWORK_ENV: Final = ("SSH_AUTH_SOCK", "GIT_SSH_COMMAND", "GIT_SSH", "HTTPS_PROXY",
                       "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")
_SYMLINK_MODE: Final = "120000"


class GitError(Exception):
    """A git command failed, or a repository or commit is not what it must be."""


def is_zero(sha: str) -> bool:
    """The all-zeros name git uses for "no object" (a created or deleted ref)."""
    return bool(sha) and set(sha) == {"0"}


@dataclass(frozen=True, slots=True)
class Git:
    """One repository (`git_dir`, bare or a `.git` folder) and the environment git runs in."""

    git_dir: Path
    env: Mapping[str, str]

    @classmethod
    def open(cls, git_dir: Path, *, quarantine: bool = False, network: bool = False) -> Git:
        """`quarantine`: pass the pre-receive object variables; `network`: ssh and proxies."""
        names = _CONFIG_ENV + (QUARANTINE_ENV if quarantine else ()) + (
            _NETWORK_ENV if network else ())
        env = {"PATH": os.environ.get("PATH") or DEFAULT_PATH, "LC_ALL": "C",
               "GIT_TERMINAL_PROMPT": "0"}
        env.update({name: os.environ[name] for name in names if os.environ.get(name)})
        return cls(git_dir.absolute(), env)

    def run(self, *args: str, timeout: float | None = None) -> str:
        """Stdout of `git --git-dir=<git_dir> ARGS`; `GitError` with git's message on failure."""
        return self.output(*args, timeout=timeout).decode("utf-8", "replace")

    def output(self, *args: str, timeout: float | None = None) -> bytes:
        """As `run`, undecoded."""
        try:
            done = subprocess.run(["git", f"--git-dir={self.git_dir}", *args], env=self.env,
                                  cwd=self.git_dir, capture_output=True, timeout=timeout,
                                  check=False)
        except FileNotFoundError as exc:
            raise GitError(f"git is not installed or not on PATH ({self.env['PATH']})") from exc
        except subprocess.TimeoutExpired as exc:
            raise GitError(f"git {args[0]} took more than {timeout:.0f}s") from exc
        except NotADirectoryError as exc:
            raise GitError(f"{self.git_dir}: not a directory") from exc
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"
            raise GitError(f"git {args[0]}: {message}")
        return done.stdout

    def is_bare(self) -> bool:
        """True for a bare repository; `GitError` when `git_dir` is no repository at all."""
        if not self.git_dir.is_dir():
            raise GitError(f"{self.git_dir}: not a directory")
        return self.run("rev-parse", "--is-bare-repository").strip() == "true"

    def hooks_dir(self) -> Path:
        """Where git looks for hooks (`core.hooksPath`, else `<git_dir>/hooks`)."""
        return self.git_dir / self.run("rev-parse", "--git-path", "hooks").strip()

    def resolve_commit(self, rev: str) -> str | None:
        """The commit sha that `rev` (a sha or a full ref name) names, or None."""
        try:
            found = self.run("rev-parse", "--verify", "--quiet", "--end-of-options",
                             f"{rev}^{{commit}}").strip()
        except GitError:
            return None
        return found if SHA_RE.fullmatch(found) else None

    def branch_head(self, branch: str) -> str | None:
        return self.resolve_commit(f"refs/heads/{branch}")

    def subject(self, commit: str) -> str:
        """The commit's subject line (its first paragraph, joined), as `git log` shows it."""
        _check_sha(commit)
        return self.run("log", "-1", "--no-show-signature", "--encoding=UTF-8", "--format=%s",
                        commit, "--").strip()

    def fetch_branch(self, url: str, branch: str, *, timeout: float = FETCH_TIMEOUT) -> None:
        """Update `refs/heads/<branch>` to the remote's, even when it was force-pushed."""
        self.run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--end-of-options",
                 url, f"+refs/heads/{branch}:refs/heads/{branch}", timeout=timeout)

    @contextlib.contextmanager
    def exported(self, commit: str) -> Iterator[Path]:
        """The commit's tree, written to a temporary folder that is removed afterwards."""
        _check_sha(commit)
        with tempfile.TemporaryDirectory(prefix="flowplan-commit-") as tmp:
            root = Path(tmp) / "tree"
            root.mkdir()
            self._write_tree(commit, root, outside=Path(tmp) / "outside")
            yield root

    def _write_tree(self, commit: str, root: Path, *, outside: Path) -> None:
        entries = []
        listing = self.output("ls-tree", "-r", "-z", "--full-tree", commit)
        # paths are bytes in git: surrogateescape writes back exactly the bytes committed
        for record in listing.decode("utf-8", "surrogateescape").split("\0"):
            if not record:
                continue
            meta, _, path = record.partition("\t")
            mode, kind, sha = meta.split(" ")
            if kind != "blob":  # a submodule (gitlink) has no content here
                continue
            entries.append((mode, sha, _safe_path(path)))
        # regular files first, symlinks last: no file is ever written through a link
        entries.sort(key=lambda entry: entry[0] == _SYMLINK_MODE)
        links: list[Path] = []
        with _BlobReader(self) as blobs:
            for mode, sha, path in entries:
                target = root / path
                try:
                    _make_parents(root, path)
                    data = blobs.read(sha)
                    if mode == _SYMLINK_MODE:
                        os.symlink(data, target)
                        links.append(target)
                    else:
                        target.write_bytes(data)
                        if int(mode, 8) & 0o111:
                            target.chmod(0o755)
                except (OSError, ValueError) as exc:
                    why = exc.strerror if isinstance(exc, OSError) else str(exc)
                    raise GitError(f"{commit[:12]}: cannot write {path!r}: {why}") from exc
        _confine_symlinks(root, links, outside)


class _BlobReader:
    """`git cat-file --batch`, one blob at a time (request, answer: no pipe deadlock)."""

    def __init__(self, git: Git) -> None:
        self._git = git
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _BlobReader:
        self._process = subprocess.Popen(
            ["git", f"--git-dir={self._git.git_dir}", "cat-file", "--batch"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=self._git.env, cwd=self._git.git_dir)
        return self

    def __exit__(self, *exc: object) -> None:
        process = self._process
        if process is None:
            return
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def read(self, sha: str) -> bytes:
        assert self._process is not None
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.write(sha.encode("ascii") + b"\n")
            self._process.stdin.flush()
        except BrokenPipeError as exc:
            raise GitError("git cat-file stopped early") from exc
        header = self._process.stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            raise GitError(f"object {sha} is missing or not a blob")
        size = int(header[2])
        data = self._process.stdout.read(size)
        if len(data) != size or self._process.stdout.read(1) != b"\n":
            raise GitError(f"object {sha}: short read from git cat-file")
        return data


def _check_sha(sha: str) -> None:
    if not SHA_RE.fullmatch(sha):
        raise GitError(f"not a full commit sha: {sha!r}")


def _safe_path(path: str) -> str:
    """A tree path that stays inside the folder it is written to (git fsck may be off)."""
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..", ".git") for p in parts):
        raise GitError(f"unsafe path in the commit's tree: {path!r}")
    return path


def _make_parents(root: Path, path: str) -> None:
    """Create the folders of `path` below `root`, refusing to go through a symlink."""
    folder = root
    for part in path.split("/")[:-1]:
        folder = folder / part
        if folder.is_symlink():
            raise GitError(f"{path!r} is below a symlink in the commit's tree")
        folder.mkdir(exist_ok=True)


def _confine_symlinks(root: Path, links: list[Path], outside: Path) -> None:
    """Point every symlink that resolves outside `root` at a missing path outside it.

    A job source behind such a link is still reported as resolving outside the repository,
    as `flowplan check` reports it, but nothing of the server's disk (`/etc/...`) is read.
    """
    real_root = os.path.realpath(root)
    for link in links:
        real = os.path.realpath(link)
        if real != real_root and not real.startswith(real_root + os.sep):
            link.unlink()
            os.symlink(outside / posixpath.basename(str(link)), link)


@dataclass(frozen=True, slots=True)
class GitPublishReport(PublishReport):
    """A publish from git: the store's report plus the commit it came from."""

    branch: str
    commit: str
    subject: str
    compiled: CompileResult


@contextlib.contextmanager
def publish_lock(store: Path) -> Iterator[None]:
    """Serialize git-driven publishes of one store (hooks and `publish_from_git`).

    Separate from the store's own `.lock`, which `PlanStore.publish` takes inside it (flock
    locks are per open file: taking `.lock` twice in one process would wait forever).
    """
    with _locked(store / PUBLISH_LOCK):
        yield


def check_branch_name(git: Git, branch: str) -> None:
    try:
        git.run("check-ref-format", f"refs/heads/{branch}")
    except GitError:
        raise GitError(f"not a valid branch name: {branch!r}") from None


def compile_commit(git: Git, commit: str, *, plans: bool = True,
                   workers: int = 1) -> CompileResult:
    """Compile a commit as `flowplan check`/`publish` compile a folder: its tree root is the
    repository root (a commit without `workflows/` has no workflows)."""
    with git.exported(commit) as root:
        return compile_repo(read_repo(root), plans=plans, workers=workers)


def publish_branch(git: Git, branch: str, store: Path, *,
                   now: datetime | None = None) -> GitPublishReport | None:
    """Publish the branch's head as it is once the publish lock is held; None if no branch.

    Reading the head under the lock, rather than publishing the commit that triggered the
    call, is what keeps concurrent publishes from putting an older commit over a newer one.
    """
    with publish_lock(store):
        commit = git.branch_head(branch)
        if commit is None:
            return None
        subject = git.subject(commit)
        result = compile_commit(git, commit)
        report = PlanStore(store).publish(
            result.plans, keep=result.failed, remove_missing=not result.uncertain_files,
            remarks=subject, commit=commit, now=now)
    return GitPublishReport(published=report.published, kept=report.kept, branch=branch,
                            commit=commit, subject=subject, compiled=result)


def local_url(url: str) -> str:
    """An existing local path made absolute (git runs in the cache folder); else unchanged."""
    return os.path.abspath(url) if os.path.exists(url) else url


@contextlib.contextmanager
def _cache_lock(cache: Path) -> Iterator[None]:
    with _locked(cache.with_name(cache.name + ".lock")):
        yield


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """`files.locked`, with an unusable lock file (a FIFO put there) as a `GitError`."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locked(path))
        except OSError as exc:
            raise GitError(f"cannot lock {path}: {exc.strerror or exc}") from exc
        yield


def publish_from_git(url: str, branch: str, store: Path, *, cache: Path | None = None,
                     timeout: float = FETCH_TIMEOUT,
                     now: datetime | None = None) -> GitPublishReport:
    """Fetch `branch` of `url` into a bare cache and publish its head: the pull alternative
    to the hooks, for `flowplan publish --git` and a daemon that syncs periodically.

    The cache defaults to `<store>/.git-cache`; it is created on first use. Idempotent:
    an unchanged head publishes nothing. Raises `GitError` when the fetch fails or the
    branch does not exist.
    """
    cache = Path(os.path.abspath(cache if cache is not None else store / CACHE_DIR))
    git = Git.open(cache, network=True)
    with _cache_lock(cache):  # one fetch at a time into the cache, then its publish
        if not (cache / "HEAD").is_file():
            cache.mkdir(parents=True, exist_ok=True)
            git.run("init", "--quiet", "--bare", str(cache))
        check_branch_name(git, branch)
        git.fetch_branch(local_url(url), branch, timeout=timeout)
        report = publish_branch(git, branch, store, now=now)
    if report is None:  # fetched, yet no ref: only if the cache was changed underneath us
        raise GitError(f"{url}: branch {branch!r} not found after fetching it")
    return report
