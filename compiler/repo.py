"""The edge where a workflow repository is read: from disk, or from memory (tests, git trees).

    flowplan.yaml        optional settings
    workflows/**.y(a)ml  one workflow each
    any other file       a job source, by path from the root
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from flowplan.compiler.diagnostics import Code
from flowplan.compiler.files import NotRegularFileError, read_regular
from flowplan.compiler.parsing import MAX_FILE_BYTES

SETTINGS_FILE: Final = "flowplan.yaml"
WORKFLOWS_DIR: Final = "workflows"
MAX_SOURCE_BYTES: Final = 8 * 1024 * 1024
# all the sources one workflow's nodes embed (each node its own copy): with JSON's escapes
# at their worst, its plan stays within the size a plan file may have (MAX_PLAN_BYTES)
MAX_EMBEDDED_BYTES: Final = 32 * 1024 * 1024


class RepoError(Exception):
    """The path given is not a workflow repository."""


@dataclass(frozen=True, slots=True)
class SourceProblem:
    code: Code
    message: str


class SourceReader(Protocol):
    """Reads job sources by repository path; says why when a path is not a usable source."""

    def read(self, path: str) -> bytes | SourceProblem: ...


@dataclass(frozen=True, slots=True)
class RepoSnapshot:
    """Everything the compiler reads, as contents: pass it to `compile_repo`."""

    settings: bytes | None
    workflows: Mapping[str, bytes]
    sources: SourceReader
    unreadable: Mapping[str, str] = field(default_factory=dict)  # path -> why not


def normalize_source_path(path: str) -> str | SourceProblem:
    """The repository-relative form of a source path, or why it leaves the repository."""
    if "\0" in path:
        return SourceProblem(Code.SOURCE_MISSING, f"source {path!r} contains a NUL character")
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        return SourceProblem(Code.SOURCE_OUTSIDE,
                             f"source '{path}' is absolute; give a path from the repository root")
    normalized = posixpath.normpath(path.replace("\\", "/"))
    if normalized == ".." or normalized.startswith("../"):
        return SourceProblem(Code.SOURCE_OUTSIDE, f"source '{path}' is outside the repository")
    return normalized


def check_source_size(path: str, size: int) -> SourceProblem | None:
    """Why a source of `size` bytes is not embedded, or None when it can be."""
    if size > MAX_SOURCE_BYTES:
        return SourceProblem(Code.SOURCE_NOT_TEXT,
                             f"source '{path}' is {size} bytes; at most {MAX_SOURCE_BYTES} bytes"
                             " are embedded in a plan")
    return None


def _inside(real_root: str, real: str) -> bool:
    return real == real_root or real.startswith(real_root + os.sep)


@dataclass(slots=True)
class DiskSources:
    """Sources from a directory; symlinks may point anywhere inside the repository only."""

    root: Path
    _real_root: str = field(init=False)

    def __post_init__(self) -> None:
        self._real_root = os.path.realpath(self.root)

    def read(self, path: str) -> bytes | SourceProblem:
        normalized = normalize_source_path(path)
        if isinstance(normalized, SourceProblem):
            return normalized
        real = os.path.realpath(os.path.join(self._real_root, normalized))
        if not _inside(self._real_root, real):
            return SourceProblem(Code.SOURCE_OUTSIDE,
                                 f"source '{path}' resolves outside the repository (symlink)")
        try:
            info = os.stat(real)
        except FileNotFoundError:
            return SourceProblem(Code.SOURCE_MISSING, f"source '{path}' does not exist")
        except OSError as exc:
            return SourceProblem(Code.SOURCE_MISSING, f"source '{path}' cannot be read:"
                                 f" {exc.strerror}")
        if not stat.S_ISREG(info.st_mode):
            return SourceProblem(Code.SOURCE_NOT_FILE, f"source '{path}' is not a regular file")
        if problem := check_source_size(path, info.st_size):
            return problem
        try:
            data = read_regular(real, limit=MAX_SOURCE_BYTES)
        except NotRegularFileError:  # replaced by a FIFO or a folder since the stat
            return SourceProblem(Code.SOURCE_NOT_FILE, f"source '{path}' is not a regular file")
        except OSError as exc:
            return SourceProblem(Code.SOURCE_MISSING, f"source '{path}' cannot be read:"
                                 f" {exc.strerror}")
        return check_source_size(path, len(data)) or data


@dataclass(frozen=True, slots=True)
class MemorySources:
    """Sources from a mapping of path -> bytes (a git tree, a test)."""

    files: Mapping[str, bytes]

    def read(self, path: str) -> bytes | SourceProblem:
        normalized = normalize_source_path(path)
        if isinstance(normalized, SourceProblem):
            return normalized
        if normalized in self.files:
            data = self.files[normalized]
            return check_source_size(path, len(data)) or data
        prefix = normalized.rstrip("/") + "/"
        if any(name.startswith(prefix) for name in self.files):
            return SourceProblem(Code.SOURCE_NOT_FILE, f"source '{path}' is not a regular file")
        return SourceProblem(Code.SOURCE_MISSING, f"source '{path}' does not exist")


def find_root(path: Path) -> Path:
    """The repository root for a REPO argument: the root itself, or its `workflows/` folder."""
    if not path.is_dir():
        raise RepoError(f"{path}: not a directory")
    if (path / WORKFLOWS_DIR).is_dir() or (path / SETTINGS_FILE).is_file():
        return path
    if path.name == WORKFLOWS_DIR:
        return path.parent
    if Path(os.path.abspath(path)).name == WORKFLOWS_DIR:  # `.`, `./` or `x/..` inside it
        return Path(os.path.abspath(path)).parent
    raise RepoError(f"{path}: not a workflow repository (no {WORKFLOWS_DIR}/ folder and no"
                    f" {SETTINGS_FILE})")


def read_repo(root: Path) -> RepoSnapshot:
    """Read a repository from disk: settings and workflow files now, sources on demand.

    Only regular files inside the repository are read (a symlink may point anywhere inside
    it), at most `MAX_FILE_BYTES + 1` bytes each; any other file is `unreadable`, with why.
    """
    real_root = os.path.realpath(root)
    unreadable: dict[str, str] = {}

    def read(full: str, relative: str, *, resolve: bool, regular: bool) -> bytes | None:
        if resolve and not _inside(real_root, os.path.realpath(full)):
            unreadable[relative] = ("it resolves outside the repository (symlink); a workflow"
                                    " file or flowplan.yaml must be inside it")
            return None
        try:  # past the cap, the parser only needs to know
            return read_regular(full, limit=MAX_FILE_BYTES, known_regular=regular)
        except OSError as exc:  # a dangling symlink, no read permission, a FIFO
            unreadable[relative] = exc.strerror or str(exc)
            return None

    settings_path = os.path.join(root, SETTINGS_FILE)
    settings = (read(settings_path, SETTINGS_FILE, resolve=True, regular=False)
                if os.path.lexists(settings_path) else None)
    workflows: dict[str, bytes] = {}
    base = os.path.join(root, WORKFLOWS_DIR)
    confined = _inside(real_root, os.path.realpath(base))  # else every file is resolved
    for entry in _yaml_entries(base):
        relative = os.path.relpath(entry.path, root).replace(os.sep, "/")
        if not _utf8(relative):  # a plan names its file: it must be text
            unreadable[relative.encode("utf-8", "surrogateescape").decode(
                "utf-8", "backslashreplace")] = ("its name is not UTF-8; rename it with a UTF-8"
                                                 " name")
            continue
        symlink = entry.is_symlink()
        data = read(entry.path, relative, resolve=symlink or not confined,
                    regular=not symlink and entry.is_file(follow_symlinks=False))
        if data is not None:
            workflows[relative] = data
    return RepoSnapshot(settings=settings, workflows=dict(sorted(workflows.items())),
                        sources=DiskSources(root), unreadable=dict(sorted(unreadable.items())))


def _utf8(path: str) -> bool:
    """Whether a path read from the file system (undecodable bytes kept as surrogates) is
    UTF-8 text."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _yaml_entries(folder: str) -> Iterator[os.DirEntry[str]]:
    """`*.yaml`/`*.yml` entries below `folder`, not in hidden folders nor through symlinked
    folders; folders that cannot be listed are skipped, as `os.walk` skips them."""
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            yield from _yaml_entries(entry.path)
        elif entry.name.endswith((".yaml", ".yml")):
            yield entry
