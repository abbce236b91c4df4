"""The attempt supervisor ("shim"): one small long-lived process per daemon that starts the
attempts' processes, reaps them and records how they ended.

    python -I -S shim.py flowplan-shim FD

FD is the shim's end of a Unix stream socket whose other end the daemon holds
(daemon/engine/launcher.py starts it, in a session of its own so that it outlives a
`kill -9` of the daemon). Messages both ways are `marshal`ed tuples, each after its length
(4 bytes, little-endian). Only the standard library is used, and nothing is imported from
the daemon: the interpreter starts in a few milliseconds, once per daemon.

Requests:
    (SPAWN, token, argv, env, cwd, attempt_dir)   answered by STARTED or FAILED
    (KILL, pid, signal)                           signal the process group of a child of ours
Reports:
    (STARTED, token, pid, start)   start: field 22 of /proc/PID/stat (against pid reuse)
    (FAILED, token, errno, strerror, filename)
    (EXITED, pid, code)            code: the exit status, 128 + N when signal N ended it

A spawn, in this order: `cwd` (created with its folders if missing: a run's workspace, at its
first node) becomes the shim's working directory (it is single-threaded); `<attempt_dir>/log`
is created with O_EXCL (the claim: a second launch of the same attempt fails instead of running
it twice), with its folders if missing; the command starts with `posix_spawn` in a new session
(its own process group), every signal at its default and none blocked, stdin /dev/null, stdout
and stderr to the log; once the requests read together are all spawned, for each: its start
time is read from /proc, `pid` is written (the node's pid, with that start time as the file's
modification time: see `write_record`), then the answer. A command that cannot be executed is
reported as a shell would (a message in the log; exit status 127 if not found, 126 if not
executable), by a stand-in `/bin/sh`, so that every started attempt has a process, a pid file
and an exit file.

When a child ends (SIGCHLD wakes the loop), the shim SIGKILLs what is left of its process
group (a background process the node left behind, children that ignored a TERM), then reaps
it, writes `exit` (temporary file, then rename: a reader never sees half of it; the file's
modification time is the attempt's end, which a restarted daemon reads), then
reports: an attempt that ended leaves nothing of its group behind. The one exception: a node
that was sent a TERM (a timeout or cancel) and ended while other members of its group still
run is held, unreaped and unreported, until they have ended too or the KILL that follows the
grace arrives; so a child that handles TERM gets the grace, and a child that ignores it is
killed. A KILL for a process that is already reaped is ignored: its pid may belong to someone
else by now.

Why signalling the group id is safe: the node is its group's leader (a new session; a session
leader cannot leave its group), and the shim signals the group only while the node is its
unreaped child, alive or a zombie. A zombie keeps its pid, and Linux hands out no pid that is
still in use as a process id, group id or session id; so while the node is unreaped its id
names its own group and nobody else's. A process that left the group (`setsid`, or
`setpgid` to another group) is not reached by the group's signals; the cgroup is for those.

A cgroup (v2) per attempt, where the machine lets the shim make them: at its start the shim
makes `flowplan-shim-<pid>` under its own cgroup and checks that it can move itself into a
cgroup there and back (not with FLOWPLAN_CGROUPS=off in its environment). Then every node
starts in a cgroup of its own, `<that folder>/<n>` (the shim moves itself in for the
`posix_spawn`, so the node is born there, and back out), whose path is written to the
attempt's `cgroup` file; a node's end kills that cgroup too (`cgroup.kill`: processes that
left the group with `setsid` included), and it is removed once empty. A held node's group is
in use while its cgroup is populated (else: while /proc shows a live member). Where that is
not possible, the process group alone does all this.

When the daemon's end of the socket closes (it stopped, or was killed), the shim starts nothing
more (a request still in the socket is dropped: a restarted daemon finds no log and launches it
itself), keeps reaping and recording its children, and exits when none is left.
Held nodes are then finished at once (nobody would send their KILL), and none is held after.
"""

from __future__ import annotations

import contextlib
import errno
import marshal
import os
import select
import signal
import socket
import sys
import time
from typing import Any

NAME = "flowplan-shim"  # in the command line: how a restarted daemon recognises a shim
SPAWN, KILL = 0, 1
STARTED, FAILED, EXITED = 0, 1, 2
SIGNAL_EXIT_BASE = 128
NOT_FOUND, NOT_EXECUTABLE = 127, 126
LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
# A node starts with every signal at its default and none blocked, as under systemd, whatever
# the shim inherited: Python ignores SIGPIPE and SIGXFSZ, a daemon started with `&` from a
# script ignores SIGQUIT (SIGINT too, where it does not handle it), nohup makes it ignore
# SIGHUP, and what started it may block signals; exec keeps all of that. (glibc's posix_spawn
# itself sets its two internal signals, 32 and 33, which no program may use, to ignored.)
DEFAULTED = tuple(sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}))
RECORD_MODULUS = 2**31
STAND_IN = ("/bin/sh", "-c", 'printf "%s\\n" "$1" >&2; exit "$2"', NAME)
NOT_FOUND_ERRORS = (errno.ENOENT, errno.ENOTDIR)
EXEC_ERRORS = (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ENOEXEC, errno.EPERM,
               errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.ETXTBSY)
ENDED = os.WEXITED | os.WNOHANG | os.WNOWAIT  # look at an ended child, leave it a zombie
HOLD_POLL = 0.05  # seconds between looks at the groups of held nodes
CGROUP_SWITCH = "FLOWPLAN_CGROUPS"  # "off": process groups only


def frame(message: tuple[Any, ...]) -> bytes:
    data = marshal.dumps(message)
    return len(data).to_bytes(4, "little") + data


def unframe(buffer: bytearray) -> list[Any]:
    """Take the whole messages off the front of `buffer` (a partial one stays)."""
    messages = []
    at = 0
    with memoryview(buffer) as view:
        while len(view) - at >= 4:
            size = int.from_bytes(view[at:at + 4], "little")
            if len(view) - at - 4 < size:
                break
            messages.append(marshal.loads(view[at + 4:at + 4 + size]))
            at += 4 + size
    del buffer[:at]
    return messages


def process_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def spawn(path: str, argv: tuple[str, ...], env: dict[str, str],
          actions: tuple[tuple[int, int, int], ...]) -> int:
    """posix_spawn in a new session, every signal at its default: the child's pid."""
    return os.posix_spawn(path, argv, env, file_actions=actions, setsid=True,
                          setsigdef=DEFAULTED, setsigmask=())


def make_folder(path: str) -> None:
    """The attempt's folder: `<run>/<node>/<n>`; `<node>` is new for a node's first attempt."""
    parent = os.path.dirname(path)
    try:
        os.mkdir(parent)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(parent, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path)


def write_record(path: str, pid: int, start: int | None) -> None:
    """The pid file: the pid as text; the file's times: the start time (clock ticks since
    boot, modulo 2**31 so that any file system holds it, as seconds since the epoch).

    One file, one inode: creating an inode is most of what writing a file costs. Written under
    a temporary name, then renamed: a reader that sees the pid sees its start time.
    """
    fd = os.open(path + ".tmp", FILE_FLAGS, 0o666)
    try:
        os.write(fd, f"{pid}\n".encode())
        if start is not None:
            os.utime(fd, (start % RECORD_MODULUS, start % RECORD_MODULUS))
    finally:
        os.close(fd)
    os.rename(path + ".tmp", path)


def groups_in_use(pgids: set[int]) -> set[int]:
    """Those of `pgids` whose group has a live member other than its leader (from /proc)."""
    used = set()
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            pgrp = int(fields[2])
            if pgrp in pgids and pgrp != int(entry.name) and fields[0] != b"Z":
                used.add(pgrp)
    return used


def cgroup_home() -> str | None:
    """The folder of this process's cgroup v2, if cgroup2 is mounted where it can be seen."""
    try:
        with open("/proc/self/cgroup") as lines:
            own = next(line[3:].rstrip("\n") for line in lines if line.startswith("0::"))
        with open("/proc/self/mountinfo") as lines:
            for line in lines:
                fields = line.split()
                if fields[fields.index("-") + 1] == "cgroup2":
                    root, mount = fields[3], fields[4]
                    if own == root or own.startswith(root.rstrip("/") + "/"):
                        return os.path.normpath(f"{mount}/{own[len(root):]}")
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return None


def make_cgroups() -> tuple[str, str] | None:
    """(the shim's folder for its attempts' cgroups, the cgroup.procs file of its own cgroup),
    or None when they cannot be used here."""
    home = cgroup_home()
    if home is None or os.environ.get(CGROUP_SWITCH) == "off":
        return None
    base = f"{home}/{NAME}-{os.getpid()}"
    try:
        os.mkdir(base)
    except OSError:
        return None
    try:  # can we move into a cgroup there and back, and kill one?
        os.mkdir(base + "/probe")
        write_file(base + "/probe/cgroup.procs", "0")
        write_file(home + "/cgroup.procs", "0")
        os.rmdir(base + "/probe")
        if not os.path.exists(base + "/cgroup.kill"):
            raise OSError(errno.ENOTSUP, "no cgroup.kill (Linux before 5.14)")
    except OSError:
        with contextlib.suppress(OSError):
            write_file(home + "/cgroup.procs", "0")
        with contextlib.suppress(OSError):
            os.rmdir(base + "/probe")
        with contextlib.suppress(OSError):
            os.rmdir(base)
        return None
    return base, home + "/cgroup.procs"


def populated(cgroup: str) -> bool:
    try:
        with open(cgroup + "/cgroup.events", "rb") as events:
            return b"populated 1" in events.read()
    except OSError:
        return False


def write_file(path: str, text: str) -> None:
    fd = os.open(path, FILE_FLAGS, 0o666)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def executable(name: str, env: dict[str, str]) -> str:
    """`name` looked up in the node's PATH, as subprocess and the shell do."""
    if "/" in name:
        return name
    for folder in env.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(folder or ".", name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    raise FileNotFoundError(errno.ENOENT, "not found", name)


class Shim:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock_fd = sock.fileno()
        self.connected = True
        self.received = bytearray()
        self.unsent = bytearray()
        self.children: dict[int, str] = {}  # pid -> attempt folder, until it is reaped
        self.starting: list[tuple[int, int, str]] = []  # spawned, unreported: token, pid, dir
        self.stopping: set[int] = set()  # children sent a signal other than SIGKILL
        self.held: dict[int, int] = {}  # ended children left unreaped: pid -> exit status
        self.next_look = 0.0  # when to look at the held children's groups again
        self.cgroups = make_cgroups()  # (our attempts' folder, our own cgroup.procs) or None
        self.cgroup_count = 0
        self.cgroup_of: dict[int, str] = {}  # pid -> its attempt's cgroup, until it is reaped
        self.emptying: set[str] = set()  # killed cgroups to remove once empty
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.writable = False  # watching for room in the socket to send the rest
        self.epoll = select.epoll()
        self.epoll.register(self.sock_fd, select.EPOLLIN | select.EPOLLRDHUP)
        # a child's end: SIGCHLD writes a byte to this pipe (no file descriptor per child)
        self.wakeup, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.epoll.register(self.wakeup, select.EPOLLIN)
        self.hangup = select.poll()  # did the daemon go away since the last look?
        self.hangup.register(self.sock_fd, select.POLLRDHUP)

    def serve(self) -> None:
        while self.connected or self.children:
            timeout = (max(0.0, self.next_look - time.monotonic())
                       if self.held or self.emptying else -1)
            for fd, events in self.epoll.poll(timeout):
                if fd == self.wakeup:
                    self.reap()
                elif fd == self.sock_fd:
                    if events & select.EPOLLOUT:
                        self.flush()
                    if events & (select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP
                                 | select.EPOLLERR):
                        self.receive()
            if (self.held or self.emptying) and time.monotonic() >= self.next_look:
                self.look_at_held()
            if self.unsent and self.connected:
                self.flush()

    # ---- the channel ------------------------------------------------------------------------

    def receive(self) -> None:
        try:
            data = self.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.disconnect()
            return
        self.received += data
        for message in unframe(self.received):
            try:
                self.handle(message)
            except Exception as exc:  # never die: the children need us
                if message[0] == SPAWN:
                    self.report((FAILED, message[1], 0, f"shim: {exc!r}", None))
        self.record_started()

    def report(self, message: tuple[Any, ...]) -> None:
        if self.connected:
            self.unsent += frame(message)

    def flush(self) -> None:
        try:
            sent = self.sock.send(self.unsent)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.disconnect()
            return
        del self.unsent[:sent]
        if bool(self.unsent) != self.writable:
            self.writable = not self.writable
            self.epoll.modify(self.sock_fd, select.EPOLLIN | select.EPOLLRDHUP
                              | (select.EPOLLOUT if self.writable else 0))

    def disconnect(self) -> None:
        if self.connected:
            self.connected = False
            self.epoll.unregister(self.sock_fd)
            self.sock_fd = -1
            self.sock.close()
            self.received.clear()
            self.unsent.clear()
            for pid in list(self.held):  # nobody would send the KILL that ends the grace
                self.finish(pid)

    def daemon_gone(self) -> bool:
        return bool(self.hangup.poll(0))

    # ---- requests ---------------------------------------------------------------------------

    def handle(self, message: tuple[Any, ...]) -> None:
        if message[0] == SPAWN:
            _, token, argv, env, cwd, attempt_dir = message
            if not self.connected or self.daemon_gone():
                return  # nobody would learn of it: a restarted daemon launches it itself
            try:
                pid = self.spawn(argv, env, cwd, attempt_dir)
            except OSError as exc:
                self.report((FAILED, token, exc.errno or 0, exc.strerror or str(exc),
                             exc.filename))
            else:
                self.starting.append((token, pid, attempt_dir))
        elif message[0] == KILL:
            _, pid, signum = message
            if pid not in self.children:
                return  # reaped: its pid may name another process and group by now
            if signum == signal.SIGKILL:
                self.stopping.discard(pid)
            else:
                self.stopping.add(pid)
            # unreaped (alive, or a zombie held): the group is still the node's
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signum)
            if pid in self.held and signum == signal.SIGKILL:
                self.finish(pid)

    def spawn(self, argv: tuple[str, ...], env: dict[str, str], cwd: str, attempt_dir: str
              ) -> int:
        try:
            os.chdir(cwd)  # every time: the same path may be a new folder by now
        except FileNotFoundError:  # here, not in the daemon's event loop (1-2 ms here)
            os.makedirs(cwd, exist_ok=True)
            os.chdir(cwd)
        make_folder(attempt_dir)
        log = os.open(attempt_dir + "/log", LOG_FLAGS, 0o666)
        actions = ((os.POSIX_SPAWN_DUP2, self.devnull, 0), (os.POSIX_SPAWN_DUP2, log, 1),
                   (os.POSIX_SPAWN_DUP2, log, 2))
        cgroup = self.enter_cgroup()
        try:
            try:
                pid = spawn(executable(argv[0], env), argv, env, actions)
            except OSError as exc:
                if exc.errno not in EXEC_ERRORS:
                    raise
                code = NOT_FOUND if exc.errno in NOT_FOUND_ERRORS else NOT_EXECUTABLE
                pid = spawn(STAND_IN[0], (*STAND_IN, f"flowplan: {argv[0]}:"
                                          f" {exc.strerror}", str(code)), env, actions)
        except BaseException:
            if cgroup is not None and self.leave_cgroup(cgroup):
                with contextlib.suppress(OSError):
                    os.rmdir(cgroup)
            raise
        finally:
            os.close(log)
        self.children[pid] = attempt_dir
        if cgroup is not None and self.leave_cgroup(cgroup):
            self.cgroup_of[pid] = cgroup
            with contextlib.suppress(OSError):
                write_file(attempt_dir + "/cgroup", cgroup + "\n")
        return pid

    def record_started(self) -> None:
        """Record and report the nodes spawned for the requests just read.

        Their start times are read from /proc/PID/stat, the record a restarted daemon compares
        with; the boot clock read around a spawn is not that record (on a virtual machine here
        it once gave a start 63 s after the kernel's, and a node recorded so is not adopted
        after a restart). The read waits for the child's exec to finish, so it comes after all
        of a batch's spawns: their execs overlap instead of each waiting in turn. A child is
        reaped only later in the loop, so its /proc entry is still there.
        """
        for token, pid, attempt_dir in self.starting:
            start = process_start(pid)
            with contextlib.suppress(OSError):  # else the folder went away under us
                write_record(attempt_dir + "/pid", pid, start)
            self.report((STARTED, token, pid, start))
        self.starting.clear()

    def enter_cgroup(self) -> str | None:
        """Move the shim into a new cgroup, so that the node it spawns next is born there."""
        if self.cgroups is None:
            return None
        self.cgroup_count += 1
        cgroup = f"{self.cgroups[0]}/{self.cgroup_count}"
        try:
            os.mkdir(cgroup)
            write_file(cgroup + "/cgroup.procs", "0")
        except OSError:
            with contextlib.suppress(OSError):
                os.rmdir(cgroup)
            return None  # this node gets its process group only
        return cgroup

    def leave_cgroup(self, cgroup: str) -> bool:
        """Back to the shim's own cgroup. If that fails, the node's cgroup is never killed (the
        shim is in it) and cgroups are used no more."""
        assert self.cgroups is not None
        try:
            write_file(self.cgroups[1], "0")
        except OSError:
            self.cgroups = None
            return False
        return True

    def reap(self) -> None:
        """Finish every child that ended, or hold it (see the module's docstring)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wakeup, 512):
                pass
        while self.children:
            ended = self.next_ended()
            if ended is None:
                break
            pid = ended.si_pid
            code = ended.si_status
            if ended.si_code != os.CLD_EXITED:  # killed, or dumped core
                code += SIGNAL_EXIT_BASE
            if pid not in self.children:  # not a node of ours: just reap it
                with contextlib.suppress(ChildProcessError):
                    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG)
                continue
            self.held[pid] = code
            if pid not in self.stopping or not self.connected or not self.in_use(pid):
                self.finish(pid)
            else:
                self.next_look = time.monotonic() + HOLD_POLL

    def next_ended(self) -> os.waitid_result | None:
        """An ended child not held yet, left unreaped (a zombie keeps its pid and group id)."""
        if not self.held:  # the common case: one system call
            try:
                return os.waitid(os.P_ALL, 0, ENDED)
            except ChildProcessError:
                return None
        for pid in self.children:  # P_ALL would return a held one again and again
            if pid not in self.held:
                with contextlib.suppress(ChildProcessError):
                    ended = os.waitid(os.P_PID, pid, ENDED)
                    if ended is not None:
                        return ended
        return None

    def in_use(self, pid: int) -> bool:
        """Does an ended child's group (or cgroup) still have a live member?"""
        cgroup = self.cgroup_of.get(pid)
        return populated(cgroup) if cgroup is not None else bool(groups_in_use({pid}))

    def look_at_held(self) -> None:
        """Finish the held children whose groups have emptied; remove emptied cgroups."""
        with_cgroups = [pid for pid in self.held if pid in self.cgroup_of]
        others = {pid for pid in self.held if pid not in self.cgroup_of}
        in_use = groups_in_use(others) if others else set()
        for pid in with_cgroups:
            if not populated(self.cgroup_of[pid]):
                self.finish(pid)
        for pid in others - in_use:
            self.finish(pid)
        for cgroup in list(self.emptying):
            self.remove_cgroup(cgroup)
        self.next_look = time.monotonic() + HOLD_POLL

    def remove_cgroup(self, cgroup: str) -> None:
        try:
            os.rmdir(cgroup)
        except OSError as exc:
            if exc.errno == errno.EBUSY:  # its killed processes are still exiting
                if cgroup not in self.emptying:
                    self.emptying.add(cgroup)
                    self.next_look = time.monotonic() + HOLD_POLL
                return
        self.emptying.discard(cgroup)

    def close(self) -> None:
        """Remove the shim's cgroups before it exits (waiting a little for killed ones)."""
        deadline = time.monotonic() + 1.0
        while self.emptying and time.monotonic() < deadline:
            for cgroup in list(self.emptying):
                self.remove_cgroup(cgroup)
            time.sleep(0.01)
        if self.cgroups is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self.cgroups[0])

    def finish(self, pid: int) -> None:
        """Kill what is left of an ended child's group, then reap, record and report it."""
        code = self.held.pop(pid)
        self.stopping.discard(pid)
        cgroup = self.cgroup_of.pop(pid, None)
        if cgroup is not None:  # the processes that left the group too
            with contextlib.suppress(OSError):
                write_file(cgroup + "/cgroup.kill", "1")
            self.remove_cgroup(cgroup)
        # the child is a zombie until the waitid below: its id names its group only (see the
        # module's docstring)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, pid, os.WEXITED)
        attempt_dir = self.children.pop(pid)
        # now, not later: the file's modification time is the attempt's end (a restarted
        # daemon's finished_at)
        with contextlib.suppress(OSError):  # else the folder went away under us
            write_file(attempt_dir + "/exit.tmp", f"{code}\n")
            os.rename(attempt_dir + "/exit.tmp", attempt_dir + "/exit")
        self.report((EXITED, pid, code))


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] != NAME:
        print(f"usage: {argv[0]} {NAME} FD", file=sys.stderr)
        return 2
    sock = socket.socket(fileno=int(argv[2]))
    sock.set_inheritable(False)
    sock.setblocking(False)
    shim = Shim(sock)
    try:
        shim.serve()
    finally:
        shim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
