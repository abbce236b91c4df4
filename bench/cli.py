"""CLI start-up benchmark: what a client command (`flowplan status RUN`) pays before it sends
its request, next to the floor measured in the same run: the bare cost of a gRPC client in
Python, `python -c "import grpc; from flowplan.v1 import workflow_service_pb2_grpc"`.

    python bench/cli.py [--repeat N] [--json FILE] [--strict]

Every figure is a real subprocess, best and median of N runs (21 by default), run in turn
so that a burst of load on the machine touches them alike. What isolates start-up: the
client command is pointed at a TCP listener of this process that records when the first
byte of the connection arrives (the HTTP/2 preface, written right after the connect, when
the command has parsed its options, read its environment and built its channel and
request); that moment minus the moment the process was spawned is the command's start-up.
The listener then closes the connection, the command exits 3 (UNAVAILABLE), and its whole
wall time is shown too. Target: start-up <= 1.3x the floor (PASS/MISS).

Also shown: `python -c pass` (the interpreter alone), `flowplan --version`, and, for
comparison, `import flowplan.daemon.cli` plus the modules the whole parser needs (the compiler, the
server, the engine: what every command paid before the client commands had a parser of
their own).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.3
FLOOR_CODE = "import grpc; from flowplan.v1 import workflow_service_pb2_grpc"
FULL_PARSER_CODE = "from flowplan.daemon import cli; cli.build_parser()"


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    best: float
    median: float
    target: str = ""


def flowplan_command() -> list[str]:
    found = shutil.which("flowplan", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "flowplan.daemon.cli"]


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


class FirstByte:
    """A loopback listener that records when the first byte of each connection arrives,
    then closes it."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.socket.getsockname()[1]}"
        self.arrived: float | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            with conn:
                if conn.recv(1):
                    if self.arrived is None:
                        self.arrived = time.perf_counter()
                    self._ready.set()

    def startup(self, argv: list[str], env: dict[str, str]) -> tuple[float, float]:
        """(spawn to first byte, whole wall time) of `argv`."""
        self.arrived = None
        self._ready.clear()
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False)
        end = time.perf_counter()
        if not self._ready.wait(5) or self.arrived is None:
            sys.exit(f"bench: {' '.join(argv)} sent nothing (exit {done.returncode}):\n"
                     + done.stderr.decode(errors="replace")[-2000:])
        return self.arrived - start, end - start

    def close(self) -> None:
        self.socket.close()


def measure(repeat: int) -> list[Figure]:
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("FLOWPLAN_TOKEN_FILE", None)
    listener = FirstByte()
    flowplan = flowplan_command()
    python = [sys.executable]
    status = [*flowplan, "status", "wr_bench", "--address", listener.address]
    runs: dict[str, Callable[[], float]] = {
        "python -c pass": lambda: wall([*python, "-c", "pass"], env),
        "floor: import grpc + stubs": lambda: wall([*python, "-c", FLOOR_CODE], env),
        "flowplan --version": lambda: wall([*flowplan, "--version"], env),
        "before: import flowplan.daemon.cli + whole parser": lambda: wall(
            [*python, "-c", FULL_PARSER_CODE], env),
    }
    samples: dict[str, list[float]] = {name: [] for name in runs}
    samples["flowplan status: start-up (spawn to request)"] = []
    samples["flowplan status: whole run (exit 3)"] = []
    try:
        for run in runs.values():  # warm the page cache and the .pyc files
            run()
        listener.startup(status, env)
        for _ in range(repeat):
            for name, run in runs.items():
                samples[name].append(run())
            first, whole = listener.startup(status, env)
            samples["flowplan status: start-up (spawn to request)"].append(first)
            samples["flowplan status: whole run (exit 3)"].append(whole)
    finally:
        listener.close()
    floor = min(samples["floor: import grpc + stubs"])
    figures = []
    for name, values in samples.items():
        target = ""
        if name.startswith("flowplan status: start-up"):
            ratio = min(values) / floor
            verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
            target = f"<= {TARGET_RATIO}x floor: {ratio:.2f}x {verdict}"
        figures.append(Figure(name, min(values), statistics.median(values), target))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="runs of each figure (21)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures")
    parser.add_argument("--strict", action="store_true", help="exit 1 on a MISS")
    args = parser.parse_args()
    figures = measure(args.repeat)
    floor = next(f for f in figures if f.name.startswith("floor"))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs,"
          f" best / median of {args.repeat} runs")
    width = max(len(f.name) for f in figures)
    print(f"{'figure':<{width}}  {'best':>8}  {'median':>8}  {'x floor':>7}  target")
    for f in figures:
        print(f"{f.name:<{width}}  {f.best * 1000:6.1f}ms  {f.median * 1000:6.1f}ms"
              f"  {f.best / floor.best:6.2f}x  {f.target}")
    if args.json:
        args.json.write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")
    missed = any(f.target.endswith("MISS") for f in figures)
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
