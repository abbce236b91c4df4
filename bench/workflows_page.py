"""The console's Workflows page (`/`) with many workflows: what the daemon takes to answer it.

    python bench/workflows_page.py [--workflows N] [--runs R] [--loads L] [--json FILE]

A `flowplan serve --http` daemon on loopback serves N (default 1,000) workflows of two nodes,
each with a daily schedule and a tag, and R (default 3) finished runs of each. The page is
one row per workflow: its schedule, next tick, switch, latest version with its remarks, the
status of its last 10 runs as squares, its tags. It is loaded L times (default 20) by an HTTP
client after a warm-up load: p50 and the max, from the request to the whole answer read.

Floor: ListWorkflows over gRPC from the same client, every workflow in pages of 1,000 (the
rows' own data, without their runs and versions, and no HTML), p50 of as many calls.
No target is set for this page; the figures say what it costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from engine import Figure, table  # bench/engine.py
from web import Daemon, publish  # bench/web.py

from flowplan.v1 import workflow_service_pb2 as pb


def workflow(index: int) -> str:
    name = f"w{index:04d}"
    return (f"name: {name}\ndescription: workflow number {index}\n"
            f"tags: {{team: t{index % 7}}}\n"
            f"schedule: {{every: day, at: '0{index % 10}:30', start: 2026-01-01T00:00:00,"
            " catchup: none}\n"
            "nodes:\n  - {name: a, command: 'true'}\n"
            "  - {name: b, command: 'true', upstream: [a]}\n")


async def bench(work: Path, count: int, runs: int, loads: int,
                say: Callable[[str], None]) -> list[Figure]:
    repo = work / "repo"
    (repo / "workflows").mkdir(parents=True)
    (repo / "flowplan.yaml").write_text("queues: {default: {concurrency: 16}}\n")
    for index in range(count):
        (repo / "workflows" / f"w{index:04d}.yaml").write_text(workflow(index))
    say(f"publishing {count} workflows")
    publish(repo, work / "store")
    daemon = Daemon(work, "list", work / "store")
    try:
        await daemon.ready()
        say(f"starting {count * runs} runs")
        started = [await daemon.start(f"w{index:04d}")
                   for index in range(count) for _ in range(runs)]
        for run_id in started:
            await daemon.finish(run_id)
        async with aiohttp.ClientSession() as session:
            page: list[float] = []
            size = 0
            for load in range(loads + 1):
                began = time.perf_counter()
                async with session.get(daemon.url + "/") as answer:
                    body = await answer.read()
                    if answer.status != 200:
                        sys.exit(f"bench: GET / answered {answer.status}")
                if load:  # the first one warms up
                    page.append(time.perf_counter() - began)
                size = len(body)
        floor: list[float] = []
        for _ in range(loads):
            began = time.perf_counter()
            token = ""
            while True:
                listed = await daemon.stub.ListWorkflows(pb.ListWorkflowsRequest(
                    page_size=1000, page_token=token))
                token = listed.next_page_token
                if not token:
                    break
            floor.append(time.perf_counter() - began)
    finally:
        await daemon.stop()
    say(f"the page: {size / 1e6:.2f} MB of HTML, {count} rows")
    low = statistics.median(floor) * 1e3
    return [Figure(f"Workflows page, {count} workflows, p50 (floor: ListWorkflows)",
                   statistics.median(page) * 1e3, "ms", low),
            Figure(f"Workflows page, {count} workflows, max", max(page) * 1e3, "ms", low)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    began = time.monotonic()

    def say(text: str) -> None:
        print(f"{time.monotonic() - began:7.1f} s  {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="flowplan-bench-") as work:
        figures = asyncio.run(bench(Path(work), args.workflows, args.runs, args.loads, say))
    print(table(figures))
    if args.json:
        args.json.write_text(json.dumps([f.__dict__ for f in figures], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
