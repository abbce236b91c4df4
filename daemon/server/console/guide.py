"""The getting-started walk (`/getting-started`): the steps of docs/getting-started.md in
the console's own terms, each with the CLI command that does the same, and links into this
daemon's pages: the docs' example workflows when it serves them (`flowplan up` in flowplan's
own clone), else its own first ones; its latest run and latest failed run."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from flowplan.daemon.server.console.kit import Kit
from flowplan.v1 import workflow_service_pb2 as pb

FIRST_RUN: Final = "daily_sales"  # the docs' first run, and their scheduled workflow
FAILING_RUN: Final = "reindex"  # the docs' run that fails, is fixed and resumed


class GuidePages:
    def __init__(self, kit: Kit) -> None:
        self._kit = kit

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/getting-started", self.getting_started)

    async def getting_started(self, request: web.Request) -> web.StreamResponse:
        call = self._kit.call
        listed = await call("ListWorkflows", pb.ListWorkflowsRequest(page_size=1000))
        served = {w.name: w for w in listed.workflows if not w.tombstone}
        example = served.get(FIRST_RUN)
        first = example or next(iter(served.values()), None)
        if example is None or not example.HasField("schedule"):
            example = next((w for w in served.values() if w.HasField("schedule")), None)
        latest = (await call("ListRuns", pb.ListRunsRequest(page_size=1))).runs
        failed = (await call("ListRuns", pb.ListRunsRequest(
            status=pb.RUN_STATUS_FAILED, page_size=1))).runs
        return self._kit.page(
            request, "getting_started.html", count=len(served), first=first,
            failing=served.get(FAILING_RUN), scheduled=example,
            latest=latest[0] if latest else None, failed=failed[0] if failed else None)
