"""Reading a file that someone else put on disk: a regular file only, never blocking, capped.

A FIFO opened for reading waits for a writer, forever; a device may never end. Every file
the compiler or a plan reader opens by a name found on disk (workflow files, flowplan.yaml,
job sources, plan versions) goes through `read_regular`, which opens without blocking,
checks on the open descriptor that it is a regular file, and reads at most `limit + 1`
bytes, so that the caller can tell "over the limit" without reading the rest.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path


class NotRegularFileError(OSError):
    """The path is a FIFO, a socket, a device or a directory; `strerror` says which."""


def kind_of(mode: int) -> str:
    """What a non-regular file is, for a message: 'a FIFO', 'a directory'..."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "of an unknown kind"


def read_regular(path: str | Path, *, limit: int, follow_symlinks: bool = True,
                 known_regular: bool = False) -> bytes:
    """At most `limit + 1` bytes of the regular file `path`.

    Raises `NotRegularFileError` for anything else (without opening a device: it is
    checked before opening, unless the caller has just seen a regular file there, and on
    the open descriptor), and `OSError` as `open` does.
    """
    if not known_regular:
        mode = os.stat(path, follow_symlinks=follow_symlinks).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(0, f"not a regular file ({kind_of(mode)})", str(path))
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else
                                                          os.O_NOFOLLOW)
    fd = os.open(path, flags)  # replaced by a FIFO since the stat: still does not block
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFileError(0, f"not a regular file ({kind_of(info.st_mode)})",
                                      str(path))
        chunks: list[bytes] = []
        remaining, step = limit + 1, info.st_size + 1  # the whole file, then its end
        while remaining > 0 and (chunk := os.read(fd, min(remaining, step))):
            chunks.append(chunk)
            remaining, step = remaining - len(chunk), 1 << 16  # it grew since the fstat
        return b"".join(chunks)
    finally:
        os.close(fd)


class FileLock:
    """An exclusive `flock` held on a lock file: the one lock helper of flowplan (the plan
    store's publishers, git-driven publishes and fetch caches, one daemon per state folder).

    The kernel drops the lock when its holder dies (`kill -9` included), so a crash never
    leaves a stale lock; the descriptor is not inheritable, so child processes never hold it.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, *, wait: bool = True, mode: int = 0o666) -> FileLock:
        """Lock `path` (created if missing, with `mode` less the umask, as every other file:
        a store shared by a group is locked by each of its members). `wait=False` raises
        `BlockingIOError` instead of waiting while another holder has it. A FIFO or another
        non-regular file there raises `NotRegularFileError` instead of a traceback from
        `open` (a FIFO is not seekable) or a wait."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, mode)
        try:
            mode_found = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode_found):
                raise NotRegularFileError(
                    0, f"not a regular file ({kind_of(mode_found)}); remove it", str(path))
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def note(self, text: str) -> None:
        """Record who holds the lock (e.g. a pid) in the file, for whoever is refused."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text.encode(), 0)

    def release(self) -> None:
        """Give the lock up (closing the only descriptor drops the flock); idempotent."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def lock_note(path: Path) -> str:
    """What the holder of the lock file `path` recorded with `FileLock.note` ("" if unknown)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            return os.pread(fd, 200, 0).decode().strip()
        finally:
            os.close(fd)
    return ""


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the `FileLock` on `path` (its folder and the file created if missing) for the
    `with` block, waiting for another holder to give it up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock.acquire(path):
        yield
