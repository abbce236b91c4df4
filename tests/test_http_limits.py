"""The HTTP listener's (`serve --http`) connection limits against a real `flowplan serve`:
the connection cap, a client that never finishes its request's headers or body, the idle
keep-alive timeout, and the console's event streams that outlive it."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from certificates import certificates
from conftest import MakeRepo, wait_until
from daemon_harness import Daemon, flowplan, free_port, publish, read_head, running_daemon

from flowplan.v1 import workflow_service_pb2 as pb

FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
    "workflows/slow.yaml": "name: slow\nnodes:\n"
                           "  - {name: nap, command: 'echo before; sleep 3; echo after'}\n",
}


@pytest.fixture
def deployed(make_repo: MakeRepo, tmp_path: Path) -> tuple[Path, Path]:
    publish(make_repo(FILES), tmp_path / "store")
    return tmp_path / "store", tmp_path / "state"


@contextmanager
def http_daemon(deployed: tuple[Path, Path], *settings: str) -> Iterator[tuple[Daemon, int]]:
    store, state = deployed
    port = free_port()
    with running_daemon(store, state, extra=["--http", f"127.0.0.1:{port}", *settings]) as d:
        yield d, port


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the daemon closed `sock` (whatever it answered before)."""
    sock.setblocking(False)
    try:
        while data := sock.recv(65536):
            del data
        return True
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def metrics_answer(port: int) -> bool:
    """GET /metrics on a new connection answers 200 (False: refused or closed)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/metrics")
        return connection.getresponse().status == 200
    except OSError:  # closed by the daemon: over the cap
        return False
    finally:
        connection.close()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_connections_beyond_the_cap_are_closed_at_once(deployed: tuple[Path, Path]) -> None:
    with http_daemon(deployed, "--http-max-connections", "5") as (d, port):
        assert '"http_max_connections": 5' in d.output()
        held = [connect(port) for _ in range(5)]
        try:
            wait_until(lambda: not metrics_answer(port), "the cap refusing a sixth connection")
            fds = open_fds(d.process.pid)
            extra = [connect(port) for _ in range(50)]
            wait_until(lambda: all(closed_by_peer(s) for s in extra),
                       "every connection beyond the cap closed", timeout=5)
            assert open_fds(d.process.pid) <= fds + 2  # not one per refused connection
            for sock in extra:
                sock.close()
        finally:
            for sock in held:
                sock.close()
        wait_until(lambda: metrics_answer(port), "an answer once the held connections closed")
        assert d.process.poll() is None


def test_a_client_that_never_finishes_its_headers_or_body_is_closed(
        deployed: tuple[Path, Path]) -> None:
    limits = ("--handshake-timeout", "1s", "--idle-timeout", "60s")
    with http_daemon(deployed, *limits) as (d, port):
        silent = connect(port)  # sends nothing at all
        dripping = connect(port)  # a header line every 0.2 s, never the blank line
        dripping.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n")
        body = connect(port)  # headers whole, 10 bytes of a 100-byte body
        body.sendall(b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n\r\ntoken=abcd")
        started = time.monotonic()

        def dripped_and_closed() -> bool:
            try:
                dripping.sendall(b"X-Drip: 1\r\n")
            except OSError:
                return True
            time.sleep(0.2)
            return closed_by_peer(dripping)

        wait_until(dripped_and_closed, "the dripping client closed", timeout=10)
        wait_until(lambda: closed_by_peer(silent), "the silent client closed", timeout=5)
        answer = b""

        def body_refused() -> bool:
            nonlocal answer
            body.setblocking(False)
            try:
                while chunk := body.recv(65536):
                    answer += chunk
                return True  # closed after its answer
            except BlockingIOError:
                return False
            except OSError:
                return True

        wait_until(body_refused, "the client with a short body answered and closed", timeout=10)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"--handshake-timeout" in answer
        assert time.monotonic() - started < 8  # 1 s each, not the 60 s idle timeout
        for sock in (silent, dripping, body):
            sock.close()
        assert metrics_answer(port) and d.process.poll() is None


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/x-www-form-urlencoded", b"csrf=\xff"),  # not UTF-8
    ("application/x-www-form-urlencoded; charset=nope", b"csrf=x"),  # no such charset
    ("multipart/form-data", b"csrf=x"),  # no boundary
], ids=["not-utf-8", "unknown-charset", "no-boundary"])
def test_a_form_body_no_one_can_read_is_a_400_not_a_traceback(
        deployed: tuple[Path, Path], content_type: str, body: bytes) -> None:
    kind = f"Content-Type: {content_type}\r\n"
    with http_daemon(deployed) as (d, port):
        sock = connect(port)
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     + f"{kind}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        answer = read_head(sock)
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert b"is not a form this server can read" in answer
        assert b"Content-Security-Policy:" in answer  # an answer of the console's
        assert "Traceback" not in d.output() and '"level": "error"' not in d.output()
        assert metrics_answer(port) and d.process.poll() is None


def test_an_idle_keep_alive_connection_is_closed(deployed: tuple[Path, Path]) -> None:
    with http_daemon(deployed, "--idle-timeout", "1s") as (d, port):
        sock = connect(port)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 ") and b"Connection: close" not in head
        opened = time.monotonic()
        wait_until(lambda: closed_by_peer(sock), "the idle connection closed", timeout=10)
        assert time.monotonic() - opened >= 0.5
        sock.close()
        assert d.process.poll() is None


def test_the_consoles_event_streams_outlive_the_idle_timeout(
        deployed: tuple[Path, Path]) -> None:
    with http_daemon(deployed, "--idle-timeout", "1s") as (d, port):
        run = d.call("StartRun", pb.StartRunRequest(workflow="slow")).run
        wait_until(lambda: d.call("GetRun", pb.GetRunRequest(run_id=run.run_id)).run.status
                   == pb.RUN_STATUS_RUNNING and flowplan(
                       "logs", run.run_id, "nap", "--address", d.address).stdout,
                   "the node running and writing its log")
        streams = {}
        for path in (f"/runs/{run.run_id}/events", f"/runs/{run.run_id}/nodes/nap/log"):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            connection.request("GET", path, headers={"Accept": "text/event-stream"})
            response = connection.getresponse()
            assert response.status == 200, (path, response.read())
            streams[path] = (connection, response)
        deadline = time.monotonic() + 60  # keep-alives every 15 s: a read never times out
        for path, (connection, response) in streams.items():  # each to its end, > 3 s later
            lines = []
            while (line := response.readline()) and line != b"event: end\n":
                assert time.monotonic() < deadline, (path, lines)
                lines.append(line)
            assert line == b"event: end\n", (path, lines)
            connection.close()
        assert d.wait_run(run.run_id).status == pb.RUN_STATUS_SUCCEEDED
        log_lines = b"".join(lines)
        assert b"after" in log_lines  # written 3 s after the stream opened


def test_the_two_caps_share_the_open_file_budget(deployed: tuple[Path, Path]) -> None:
    store, state = deployed
    port = free_port()
    # 256 files keep 128 for the daemon's own: 1000 + 100 wanted become 117 + 11
    with running_daemon(store, state, extra=["--http", f"127.0.0.1:{port}"],
                        open_files=(256, 256)) as d:
        assert '"max_connections": 117' in d.output()
        assert '"http_max_connections": 11' in d.output()
        assert ("allows 128 connections, not --max-connections 1000 and"
                " --http-max-connections 100") in d.output()
        assert metrics_answer(port)


def test_over_tls_a_handshake_or_request_that_never_comes_is_closed(
        deployed: tuple[Path, Path], tmp_path: Path) -> None:
    store, state = deployed
    pki = tmp_path / "pki"
    pems = certificates(pki)
    port = free_port()
    with running_daemon(store, state, credentials=grpc.ssl_channel_credentials(pems["ca"]),
                        extra=["--http", f"127.0.0.1:{port}", "--handshake-timeout", "1s",
                               "--idle-timeout", "60s", "--tls-cert", str(pki / "server_cert.pem"),
                               "--tls-key", str(pki / "server_key.pem")]) as d:
        context = ssl.create_default_context(cafile=pki / "ca.pem")
        no_handshake = connect(port)  # never begins TLS
        no_request = context.wrap_socket(connect(port), server_hostname="127.0.0.1")
        opened = time.monotonic()

        def tls_closed() -> bool:
            no_request.setblocking(False)
            try:
                return no_request.recv(4096) == b""
            except (ssl.SSLWantReadError, BlockingIOError):
                return False
            except OSError:
                return True

        wait_until(lambda: closed_by_peer(no_handshake), "the client without a handshake"
                   " closed", timeout=10)
        wait_until(tls_closed, "the client without a request closed", timeout=10)
        assert time.monotonic() - opened < 8  # 1 s, not the 60 s idle timeout
        no_handshake.close()
        no_request.close()
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                                 context=context)
        connection.request("GET", "/metrics")
        assert connection.getresponse().status == 200
        connection.close()
        assert d.process.poll() is None
