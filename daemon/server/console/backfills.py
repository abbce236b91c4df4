"""A backfill's page (`/backfills/ID`: its progress and runs) and its Cancel."""

from __future__ import annotations

from aiohttp import web

from flowplan.daemon.server.console.kit import Kit
from flowplan.v1 import workflow_service_pb2 as pb


class BackfillPages:
    def __init__(self, kit: Kit) -> None:
        self._kit = kit

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/backfills/{backfill_id}", self.backfill)
        app.router.add_post("/backfills/{backfill_id}/cancel", self.cancel_backfill)

    async def backfill(self, request: web.Request) -> web.StreamResponse:
        backfill_id = request.match_info["backfill_id"]
        answer = await self._kit.call("GetBackfill",
                                      pb.GetBackfillRequest(backfill_id=backfill_id))
        runs = await self._kit.call("ListRuns", pb.ListRunsRequest(backfill_id=backfill_id,
                                                                   page_size=1000))
        return self._kit.page(request, "backfill.html", b=answer.backfill, runs=runs.runs)

    async def cancel_backfill(self, request: web.Request) -> web.StreamResponse:
        self._kit.require(request, "CancelBackfill")
        backfill_id = request.match_info["backfill_id"]
        await self._kit.call("CancelBackfill",
                             pb.CancelBackfillRequest(backfill_id=backfill_id))
        raise web.HTTPSeeOther(f"/backfills/{backfill_id}")
