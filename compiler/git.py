"""The edge where git is read: a commit's tree into a temporary folder, commit facts, fetches.

Every git command runs as a subprocess with an explicit, minimal environment (`Git.env`):
PATH, HOME and the git configuration switches, plus, only when asked, the quarantine
variables that git sets for a pre-receive hook (pushed objects are not in the repository
yet) or the variables a fetch over ssh or a proxy needs. Nothing else of the caller's
environment leaks in: no GIT_DIR, GIT_WORK_TREE or GIT_INDEX_FILE from a hook.

A commit is read from git objects (`ls-tree` and `cat-file`), never from a working copy,
into a temporary folder that the compiler then reads like any repository (`CommitTree`):
only what it reads is written, and of a file no more than the compiler reads. `git archive`
is not used: it applies `export-ignore` and `export-subst` attributes, so what it writes is
not always what was committed, and it writes every file of the tree.

Publishing from git (`publish_branch`, `publish_from_git`) always publishes the branch's
head at the time the publish lock is held, whatever commit triggered it: see
docs/gitops.md, "Concurrency".
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import os
import posixpath
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, BinaryIO, Final, NamedTuple

from flowplan.compiler.compile import CompileResult, compile_repo
from flowplan.compiler.files import locked
from flowplan.compiler.parsing import MAX_FILE_BYTES
from flowplan.compiler.repo import (
    MAX_SOURCE_BYTES,
    SETTINGS_FILE,
    WORKFLOWS_DIR,
    DiskSources,
    RepoSnapshot,
    SourceProblem,
    check_source_size,
    normalize_source_path,
    read_repo,
)
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
READ_LIMIT: Final = max(MAX_FILE_BYTES, MAX_SOURCE_BYTES)  # the most the compiler reads of a file
_MAX_LINK: Final = 4096  # PATH_MAX: no longer symlink target can be written
_CHUNK: Final = 1 << 16
STOP_POLL_SECONDS: Final = 0.1  # how soon a stoppable git command sees its stop
DRAIN_SECONDS: Final = 1.0  # the most an ended git command's pipes are read after its end


class GitError(Exception):
    """A git command failed, or a repository or commit is not what it must be."""


def _drain(process: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """The rest of an ended process's stdout and stderr, read for DRAIN_SECONDS at most: a
    helper it started that made a session of its own (a credential cache's daemon) may hold
    the pipes open for as long as it lives."""
    try:
        return process.communicate(timeout=DRAIN_SECONDS)
    except subprocess.TimeoutExpired as exc:  # what came so far
        return exc.output or b"", exc.stderr or b""


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

    def run(self, *args: str, timeout: float | None = None,
            stop: threading.Event | None = None) -> str:
        """Stdout of `git --git-dir=<git_dir> ARGS`; `GitError` with git's message on failure
        (or once `stop` is set: git and what it started, ssh, are killed)."""
        return self.output(*args, timeout=timeout, stop=stop).decode("utf-8", "replace")

    def output(self, *args: str, timeout: float | None = None,
               stop: threading.Event | None = None) -> bytes:
        """As `run`, undecoded."""
        try:
            if stop is None:
                done = subprocess.run(["git", f"--git-dir={self.git_dir}", *args],
                                      env=self.env, cwd=self.git_dir, capture_output=True,
                                      timeout=timeout, check=False)
            else:
                done = self._stoppable(list(args), timeout, stop)
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

    def _stoppable(self, args: list[str], timeout: float | None, stop: threading.Event
                   ) -> subprocess.CompletedProcess[bytes]:
        """`subprocess.run` that also ends when `stop` is set: in a session of its own, so
        that the kill reaches what git started (ssh) too."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with subprocess.Popen(["git", f"--git-dir={self.git_dir}", *args], env=self.env,
                              cwd=self.git_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True) as process:
            while True:
                try:
                    out, err = process.communicate(timeout=STOP_POLL_SECONDS)
                except subprocess.TimeoutExpired:
                    if process.poll() is not None:  # git ended; a helper holds its pipes
                        out, err = _drain(process)
                    else:
                        late = deadline is not None and time.monotonic() > deadline
                        if not (late or stop.is_set()):
                            continue
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(process.pid, signal.SIGKILL)
                        _drain(process)
                        if late:
                            raise subprocess.TimeoutExpired(process.args, timeout or 0) from None
                        raise GitError(f"git {args[0]}: stopped (the daemon is stopping)"
                                       ) from None
                return subprocess.CompletedProcess(process.args, process.returncode, out, err)

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

    def fetch_branch(self, url: str, branch: str, *, timeout: float = FETCH_TIMEOUT,
                     stop: threading.Event | None = None) -> None:
        """Update `refs/heads/<branch>` to the remote's, even when it was force-pushed."""
        self.run("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--end-of-options",
                 url, f"+refs/heads/{branch}:refs/heads/{branch}", timeout=timeout, stop=stop)

    @contextlib.contextmanager
    def exported(self, commit: str) -> Iterator[CommitTree]:
        """The commit's tree, as far as the compiler reads it, in a temporary folder that is
        removed afterwards: see `CommitTree`."""
        _check_sha(commit)
        with tempfile.TemporaryDirectory(prefix="flowplan-commit-") as tmp:
            tree = CommitTree(self, commit, Path(tmp))
            try:
                tree.write_for_read_repo()
                yield tree
            finally:
                tree.close()


class _Blob(NamedTuple):
    mode: str
    sha: str
    size: int


class CommitTree:
    """A commit's tree in a folder (`root`), written only as far as the compiler reads it.

    Every symlink is written first, so that a path resolves on disk as in a working tree
    (one that leaves the repository is confined, see `_confine_symlinks`); `flowplan.yaml`
    and the workflow files next (`write_for_read_repo`), and a job source when it is read
    (`read`: this is the snapshot's `SourceReader`). A file that nothing reads costs
    a line of `ls-tree`, and of a file that is read, no more than `READ_LIMIT + 1` bytes are
    written or held in memory: past that, the compiler only needs to know it is too large.
    Picklable: the workers of `compile_repo` read sources through their copy.
    """

    def __init__(self, git: Git, commit: str, folder: Path) -> None:
        self.root = folder / "tree"
        self._git, self._commit = git, commit
        self._staging = folder / "staging"  # files are written here, then renamed into place
        self._outside = folder / "outside"
        self.root.mkdir()
        self._staging.mkdir()
        self._real_root = os.path.realpath(self.root)
        self._disk = DiskSources(self.root)
        self._owner = os.getpid()
        self._reader: _BlobReader | None = None
        self._files, self._links = _list_tree(git, commit)
        self._folders = _folders(commit, self._files, self._links)

    def __getstate__(self) -> dict[str, object]:
        # a worker reads with `git cat-file blob`: a `--batch` of its own would outlive it
        return {**self.__dict__, "_reader": None}

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def snapshot(self) -> RepoSnapshot:
        """What `read_repo` reads of the folder, with job sources read through the tree."""
        return dataclasses.replace(read_repo(self.root), sources=self)

    def write_for_read_repo(self) -> None:
        """Every symlink, then `flowplan.yaml` and every `*.yaml`/`*.yml` below `workflows/`,
        wherever symlinks lead: more than `read_repo` reads (not hidden ones), never less."""
        self._write_links()
        self._materialize(self._resolve(SETTINGS_FILE))
        base = self._resolve(WORKFLOWS_DIR)
        if base is None:
            return
        prefix = "" if base == "." else base + "/"
        for path in [*self._files, *self._links]:
            if path.startswith(prefix) and path.endswith((".yaml", ".yml")):
                self._materialize(self._resolve(path))

    def read(self, path: str) -> bytes | SourceProblem:
        """A job source, as `DiskSources` reads it from a working tree of the commit."""
        normalized = normalize_source_path(path)
        if isinstance(normalized, SourceProblem):
            return normalized
        real = self._resolve(normalized)
        blob = self._files.get(real) if real is not None else None
        if blob is not None and (problem := check_source_size(path, blob.size)):
            return problem  # its size on disk would be the bytes written, not the blob's
        self._materialize(real)
        return self._disk.read(path)

    def _resolve(self, path: str) -> str | None:
        """The path that `path` (from the root) resolves to through the tree's symlinks;
        None when it leaves the repository."""
        real = os.path.realpath(os.path.join(self._real_root, path))
        if real == self._real_root:
            return "."
        if real.startswith(self._real_root + os.sep):
            return real[len(self._real_root) + 1:]
        return None

    def _materialize(self, real: str | None) -> None:
        """Write the file at the resolved path `real`, or the file it is below (a read
        there fails as on a working tree), or make the folder it is."""
        if real is None:
            return
        parts = real.split("/")
        for end in range(1, len(parts) + 1):
            path = "/".join(parts[:end])
            if (blob := self._files.get(path)) is not None:
                self._write_file(path, blob)
                return
        if real in self._folders:
            try:
                (self.root / real).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise GitError(f"{self._commit[:12]}: cannot write {real!r}:"
                               f" {exc.strerror}") from exc

    def _write_file(self, path: str, blob: _Blob) -> None:
        target = self.root / path
        if os.path.lexists(target):  # written already, maybe by another worker
            return
        try:
            _make_parents(self.root, path)
            fd, staged = tempfile.mkstemp(dir=self._staging)
            with open(fd, "wb") as out:
                self._copy(blob, out)
            os.chmod(staged, 0o755 if int(blob.mode, 8) & 0o111 else 0o644)
            os.replace(staged, target)  # whole or absent, for a worker reading it now
        except OSError as exc:
            raise GitError(f"{self._commit[:12]}: cannot write {path!r}:"
                           f" {exc.strerror}") from exc

    def _copy(self, blob: _Blob, out: BinaryIO) -> None:
        if blob.size <= READ_LIMIT and os.getpid() == self._owner:
            if self._reader is None:
                self._reader = _BlobReader(self._git)
            self._reader.copy(blob.sha, blob.size, out)
        else:
            _copy_blob_prefix(self._git, blob, READ_LIMIT + 1, out)

    def _write_links(self) -> None:
        written: list[Path] = []
        for path, blob in self._links.items():
            target = self.root / path
            try:
                if blob.size > _MAX_LINK:
                    raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG))
                _make_parents(self.root, path)
                data = io.BytesIO()
                self._copy(blob, data)
                os.symlink(data.getvalue(), target)
                written.append(target)
            except (OSError, ValueError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else str(exc)
                raise GitError(f"{self._commit[:12]}: cannot write {path!r}: {why}") from exc
        _confine_symlinks(self.root, written, self._outside)


def _list_tree(git: Git, commit: str) -> tuple[dict[str, _Blob], dict[str, _Blob]]:
    """The commit's files and its symlinks, by path; a submodule has no content here."""
    files: dict[str, _Blob] = {}
    links: dict[str, _Blob] = {}
    listing = git.output("ls-tree", "-r", "-l", "-z", "--full-tree", commit)
    # paths are bytes in git: surrogateescape writes back exactly the bytes committed
    for record in listing.decode("utf-8", "surrogateescape").split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, kind, sha, size = meta.split()
        if kind != "blob":
            continue
        found = links if mode == _SYMLINK_MODE else files
        found[_safe_path(path)] = _Blob(mode, sha, int(size))
    return files, links


def _folders(commit: str, files: Mapping[str, _Blob], links: Mapping[str, _Blob]) -> set[str]:
    """The folders of the tree (of its files and symlinks, as a working tree has them)."""
    folders: set[str] = set()
    for path in [*files, *links]:
        parts = path.split("/")
        folders.update("/".join(parts[:end]) for end in range(1, len(parts)))
    if clash := sorted(folders & (files.keys() | links.keys())):  # only a crafted tree has one
        raise GitError(f"{commit[:12]}: {clash[0]!r} is both a file and a folder in the"
                       " commit's tree")
    return folders


class _BlobReader:
    """`git cat-file --batch`, one blob at a time (request, answer: no pipe deadlock)."""

    def __init__(self, git: Git) -> None:
        self._process = subprocess.Popen(
            ["git", f"--git-dir={git.git_dir}", "cat-file", "--batch"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=git.env, cwd=git.git_dir)

    def close(self) -> None:
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        process.stdout.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def copy(self, sha: str, size: int, out: BinaryIO) -> None:
        """The blob `sha` of `size` bytes into `out`, a chunk at a time."""
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(sha.encode("ascii") + b"\n")
            stdin.flush()
        except BrokenPipeError as exc:
            raise GitError("git cat-file stopped early") from exc
        header = stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob" or int(header[2]) != size:
            raise GitError(f"object {sha} is missing or not a blob of {size} bytes")
        if _copy_exactly(stdout, out, size) != size or stdout.read(1) != b"\n":
            raise GitError(f"object {sha}: short read from git cat-file")


def _copy_blob_prefix(git: Git, blob: _Blob, limit: int, out: BinaryIO) -> None:
    """The first `limit` bytes of `blob` into `out`, from `git cat-file blob`, which streams
    a blob (`--batch` inflates all of it first); the rest is never read."""
    wanted = min(blob.size, limit)
    with subprocess.Popen(["git", f"--git-dir={git.git_dir}", "cat-file", "blob", blob.sha],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=git.env,
                          cwd=git.git_dir) as process:
        assert process.stdout is not None
        copied = _copy_exactly(process.stdout, out, wanted)
        process.kill()
    if copied != wanted:
        raise GitError(f"object {blob.sha}: short read from git cat-file")


def _copy_exactly(source: IO[bytes], out: BinaryIO, count: int) -> int:
    """Copy `count` bytes (fewer at the end of `source`); the number copied."""
    copied = 0
    while copied < count and (chunk := source.read(min(count - copied, _CHUNK))):
        out.write(chunk)
        copied += len(chunk)
    return copied


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
    with git.exported(commit) as tree:
        return compile_repo(tree.snapshot(), plans=plans, workers=workers)


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
                     timeout: float = FETCH_TIMEOUT, now: datetime | None = None,
                     stop: threading.Event | None = None) -> GitPublishReport:
    """Fetch `branch` of `url` into a bare cache and publish its head: the pull alternative
    to the hooks, for `flowplan publish --git` and a daemon that syncs periodically (which
    sets `stop` when it stops: the fetch is killed rather than waited for).

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
        git.fetch_branch(local_url(url), branch, timeout=timeout, stop=stop)
        report = publish_branch(git, branch, store, now=now)
    if report is None:  # fetched, yet no ref: only if the cache was changed underneath us
        raise GitError(f"{url}: branch {branch!r} not found after fetching it")
    return report
