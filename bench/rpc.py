"""RPC benchmark: `GetRun(include_graph)` latency against a daemon started as a process, while
it executes a steady background load of short nodes, next to the floor measured in the same
run: a trivial unary RPC on a bare `grpc.aio` server on this machine, called the same way.

    python bench/rpc.py [--calls N] [--json FILE] [--strict]

Figures (targets from the issue): p50 and p99 of GetRun(include_graph=true) for a finished
20-node and a finished 1,000-node run, with 1 and with 8 concurrent clients (asyncio tasks,
each on its own channel, in one client process), while the daemon runs a 5-node workflow of
`sleep 0.05` nodes back to back. Targets: 20 nodes p50 within 2x of the floor (1 client);
1,000 nodes p99 <= 10 ms with 8 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from flowplan.v1 import workflow_service_pb2 as pb
from flowplan.v1 import workflow_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent


def repo(folder: Path) -> Path:
    (folder / "workflows").mkdir(parents=True)
    (folder / "flowplan.yaml").write_text("queues:\n  default: {concurrency: 16}\n")
    for name, count in (("small", 20), ("large", 1000)):
        lines = [f"name: {name}", "nodes:"]
        lines += [f"  - {{name: n{i}, command: 'true'"
                  + (f", upstream: [n{i // 10}]" if i else "") + "}" for i in range(count)]
        (folder / "workflows" / f"{name}.yaml").write_text("\n".join(lines) + "\n")
    background = ["name: load", "max_active_runs: 4", "nodes:"] + [
        f"  - {{name: s{i}, command: 'sleep 0.05'}}" for i in range(5)]
    (folder / "workflows" / "load.yaml").write_text("\n".join(background) + "\n")
    return folder


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(address: str, call: Any, clients: int, calls: int) -> list[float]:
    """Latencies (ms) of `calls` calls per client, `clients` at once, each on its own channel."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(clients)]
    latencies: list[float] = []

    async def client(channel: grpc.aio.Channel) -> None:
        for _ in range(20):  # warm up
            await call(channel)
        for _ in range(calls):
            began = time.perf_counter()
            await call(channel)
            latencies.append((time.perf_counter() - began) * 1000)

    await asyncio.gather(*(client(c) for c in channels))
    for c in channels:
        await c.close()
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def floor(clients: int, calls: int) -> list[float]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    async def call(channel: grpc.aio.Channel) -> None:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())

    try:
        return await measure(f"127.0.0.1:{port}", call, clients, calls)
    finally:
        await server.stop(None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per client")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flowplan-rpc-"))
    store, state = work / "store", work / "state"
    port = free_port()
    address = f"127.0.0.1:{port}"
    daemon = None
    stop_load = threading.Event()
    try:
        subprocess.run([sys.executable, "-m", "daemon.cli", "publish", str(repo(work / "repo")),
                        "--store", str(store)], check=True, capture_output=True, cwd=ROOT)
        daemon = subprocess.Popen([sys.executable, "-m", "daemon.cli", "serve", "--store",
                                   str(store), "--state", str(state), "--listen", address],
                                  stderr=subprocess.DEVNULL, cwd=ROOT)
        channel = grpc.insecure_channel(address)
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = pb_grpc.WorkflowServiceStub(channel)
        run_ids = {}
        for name in ("small", "large"):
            run_id = stub.StartRun(pb.StartRunRequest(workflow=name)).run.run_id
            while stub.GetRun(pb.GetRunRequest(run_id=run_id)).run.status in (
                    pb.RUN_STATUS_PENDING, pb.RUN_STATUS_RUNNING):
                time.sleep(0.1)
            run_ids[name] = run_id

        def load() -> None:  # a steady stream of short nodes in the daemon
            while not stop_load.is_set():
                active = stub.ListRuns(pb.ListRunsRequest(workflow="load",
                                                          status=pb.RUN_STATUS_RUNNING)).runs
                if len(active) < 3:
                    stub.StartRun(pb.StartRunRequest(workflow="load"))
                stop_load.wait(0.05)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(1.0)
        results: dict[str, Any] = {}
        verdicts = []
        print(f"{'figure':<40} {'p50 ms':>8} {'p99 ms':>8}   target")
        for clients in (1, 8):
            base = asyncio.run(floor(clients, args.calls))
            results[f"floor_{clients}"] = base
            print(f"{f'floor: bare aio unary, {clients} client(s)':<40}"
                  f" {statistics.median(base):>8.3f} {percentile(base, 0.99):>8.3f}")
            for name, nodes in (("small", 20), ("large", 1000)):
                request = pb.GetRunRequest(run_id=run_ids[name], include_graph=True)

                async def call(channel: grpc.aio.Channel, request: Any = request) -> None:
                    await pb_grpc.WorkflowServiceStub(channel).GetRun(request)

                values = asyncio.run(measure(address, call, clients, args.calls))
                p50, p99 = statistics.median(values), percentile(values, 0.99)
                results[f"getrun_{nodes}_{clients}"] = {"p50": p50, "p99": p99}
                verdict = ""
                if nodes == 20 and clients == 1:
                    ok = p50 <= 2 * statistics.median(base)
                    verdicts.append(ok)
                    verdict = (f"p50 <= 2x floor: {'PASS' if ok else 'MISS'}"
                               f" ({p50 / statistics.median(base):.2f}x)")
                if nodes == 1000 and clients == 8:
                    ok = p99 <= 10
                    verdicts.append(ok)
                    verdict = f"p99 <= 10 ms: {'PASS' if ok else 'MISS'}"
                print(f"{f'GetRun {nodes:,} nodes, {clients} client(s)':<40} {p50:>8.3f}"
                      f" {p99:>8.3f}   {verdict}")
        stop_load.set()
        loaded = stub.ListRuns(pb.ListRunsRequest(workflow="load", page_size=1000)).runs
        print(f"background load: {len(loaded)} runs of 5 nodes started during the measurement")
        if args.json:
            args.json.write_text(json.dumps({k: v for k, v in results.items()
                                             if not k.startswith("floor")}, indent=2))
        return 1 if args.strict and not all(verdicts) else 0
    finally:
        stop_load.set()
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
