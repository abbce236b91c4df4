"""The Workflows list (`/`), a workflow's page (`/workflows/NAME`) and the diff of two of its
versions (`/workflows/NAME/diff?from=A&to=B`), with their actions: the scheduling switch,
Run, and Backfill (its dry run to confirm first)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

import grpc
from aiohttp import web
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from flowplan.daemon.server.console.diff import diff_versions
from flowplan.daemon.server.console.kit import (
    HTTP_STATUS,
    Kit,
    Refused,
    ServiceError,
    whole_number,
)
from flowplan.daemon.server.console.layouter import Layouter
from flowplan.daemon.server.console.layouts import source_query, workflow_graph
from flowplan.daemon.server.console.present import graph_json, schedule_words, struct_json
from flowplan.v1 import workflow_service_pb2 as pb

HISTORY_PAGE: Final = 20
LAST_RUNS: Final = 10  # a row's squares on the Workflows page


class WorkflowPages:
    def __init__(self, kit: Kit, layouts: Layouter) -> None:
        self._kit = kit
        self._layouts = layouts

    def mount(self, app: web.Application) -> None:
        routes = app.router
        routes.add_get("/", self.workflows)
        routes.add_get("/workflows/{name}", self.workflow)
        routes.add_get("/workflows/{name}/diff", self.diff)
        routes.add_post("/workflows/{name}/scheduling", self.set_scheduling)
        routes.add_post("/workflows/{name}/runs", self.start_run)
        routes.add_post("/workflows/{name}/backfills", self.start_backfill)
        # a refused form's page is shown at its POST's URL: reloaded, or shared, that URL
        # leads to the form's section
        routes.add_get("/workflows/{name}/runs", self.to_form)
        routes.add_get("/workflows/{name}/backfills", self.to_form)

    async def workflows(self, request: web.Request) -> web.StreamResponse:
        name_filter = request.query.get("name", "").strip()
        tag = request.query.get("tag", "").strip()
        rows = await self._all_workflows()
        if tag:
            rows = [w for w in rows if _tagged(w, tag)]
        if name_filter:
            rows = [w for w in rows if name_filter.lower() in w.name.lower()]
        names = [workflow.name for workflow in rows]
        # one read each for every row (a call per row took ~0.2 s at 1,000 workflows)
        runs = self._kit.read(self._kit.service.latest_runs, names, LAST_RUNS)
        versions = self._kit.read(self._kit.service.latest_versions, names)
        shown = [{"w": workflow, "schedule": schedule_words(workflow),
                  "runs": list(reversed(runs[workflow.name])),
                  "version": versions.get(workflow.name)}
                 for workflow in rows]
        return self._kit.page(request, "workflows.html", rows=shown, name=name_filter,
                              tag=tag, back=request.path_qs)

    async def _all_workflows(self) -> list[pb.Workflow]:
        found: list[pb.Workflow] = []
        token = ""
        while True:
            page = await self._kit.call("ListWorkflows", pb.ListWorkflowsRequest(
                page_size=1000, page_token=token))
            found.extend(page.workflows)
            token = page.next_page_token
            if not token:
                return found

    async def workflow(self, request: web.Request) -> web.StreamResponse:
        version = request.query.get("version", "")
        return await self._workflow_page(
            request, request.match_info["name"],
            version=whole_number(version, "version", "a version number") if version else 0,
            page_token=request.query.get("page", ""))

    async def _workflow_page(self, request: web.Request, name: str, *, version: int = 0,
                             page_token: str = "", refused: Refused | None = None,
                             status: int = 200) -> web.Response:
        call = self._kit.call
        answer = await call("GetWorkflow", pb.GetWorkflowRequest(workflow=name,
                                                                 plan_version=version))
        versions = await call("ListPlanVersions",
                              pb.ListPlanVersionsRequest(workflow=name, page_size=50))
        runs = await call("ListRuns", pb.ListRunsRequest(
            workflow=name, page_size=HISTORY_PAGE, page_token=page_token))
        params = struct_json(answer.workflow.params)
        return self._kit.page(
            request, "workflow.html", status=status, refused=refused, w=answer.workflow,
            schedule=schedule_words(answer.workflow), versions=versions.plan_versions,
            runs=runs.runs, next_page=runs.next_page_token, paged=bool(page_token),
            graph=graph_json([(n.name, None) for n in answer.workflow.nodes],
                             answer.workflow.edges),
            layout=self._layouts.page(workflow_graph(answer.workflow), source_query(
                workflow=name, version=answer.workflow.plan_version)),
            params=json.dumps(params, indent=2, sort_keys=True))

    async def diff(self, request: web.Request) -> web.StreamResponse:
        """What changed from version `from` to version `to` (either may be the newer)."""
        name = request.match_info["name"]
        numbers = [_version_number(request.query, key) for key in ("from", "to")]
        if numbers[0] == numbers[1]:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"from and to are both version {numbers[0]}: pick two"
                               " different versions")
        versions = await self._all_versions(name)
        for key, number in zip(("from", "to"), numbers, strict=True):
            if number not in versions:
                known = (f" (its versions are {min(versions)} to {max(versions)})"
                         if versions else "")
                raise ServiceError(grpc.StatusCode.NOT_FOUND,
                                   f"{key}: {name} has no version {number}{known}")
        old, new = [(await self._kit.call("GetWorkflow", pb.GetWorkflowRequest(
            workflow=name, plan_version=number))).workflow for number in numbers]
        return self._kit.page(
            request, "diff.html", name=name, old=versions[numbers[0]],
            new=versions[numbers[1]], diff=diff_versions(old, new),
            choices=sorted(versions, reverse=True))

    async def _all_versions(self, name: str) -> dict[int, pb.PlanVersion]:
        found: dict[int, pb.PlanVersion] = {}
        token = ""
        while True:
            page = await self._kit.call("ListPlanVersions", pb.ListPlanVersionsRequest(
                workflow=name, page_size=1000, page_token=token))
            found.update((v.version, v) for v in page.plan_versions)
            token = page.next_page_token
            if not token:
                return found

    async def set_scheduling(self, request: web.Request) -> web.StreamResponse:
        self._kit.require(request, "SetSchedulingStatus")
        form = await request.post()
        await self._kit.call("SetSchedulingStatus", pb.SetSchedulingStatusRequest(
            workflow=request.match_info["name"], enabled=form.get("enabled") == "on"))
        back = str(form.get("back", "/"))  # a path of this site: not `//host` nor `/\host`
        raise web.HTTPSeeOther(back if re.fullmatch(r"/(?![/\\])[^\s]*", back) else "/")

    async def to_form(self, request: web.Request) -> web.StreamResponse:
        section = "#run-section" if request.path.endswith("/runs") else "#backfill-section"
        raise web.HTTPSeeOther(f"/workflows/{quote(request.match_info['name'])}{section}")

    async def _refused(self, request: web.Request, name: str, form: str,
                       values: Mapping[str, str], error: ServiceError) -> web.Response:
        """The workflow's page again, the refused `form` showing `error` beside what was
        typed (the error page instead when that page cannot be shown or no longer has the
        form: the workflow was removed, or its schedule, since the form was sent)."""
        fields = _FORM_FIELDS[form]
        field = re.split(r"[.\[]", error.field)[0]  # params.region, failure_emails[2]
        refused = Refused(form=form, message=str(error), values=values,
                          focus=fields.get(field, next(iter(fields.values()))))
        try:
            workflow = (await self._kit.call("GetWorkflow", pb.GetWorkflowRequest(
                workflow=name))).workflow
            if workflow.tombstone or (form == "backfill" and not workflow.HasField("schedule")):
                raise error
            return await self._workflow_page(request, name, refused=refused,
                                             status=HTTP_STATUS.get(error.code, 500))
        except ServiceError:
            raise error from None

    async def start_run(self, request: web.Request) -> web.StreamResponse:
        self._kit.require(request, "StartRun")
        form = await request.post()
        values = {k: str(form.get(k, "")) for k in ("params", "queue", "remarks")}
        try:
            return await self._start_run(request.match_info["name"], values)
        except ServiceError as exc:
            return await self._refused(request, request.match_info["name"], "run", values,
                                       exc)

    async def _start_run(self, name: str, form: Mapping[str, str]) -> web.StreamResponse:
        params = struct_pb2.Struct()
        text = form["params"].strip()
        if text:
            try:
                json_format.Parse(text, params)
            except json_format.ParseError as exc:
                raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"params must be a JSON object: {exc}",
                                   field="params") from exc
        # The form shows the defaults as GetWorkflow does, secret values masked: a param sent
        # back as shown keeps the workflow's default (a masked one is not its value).
        shown = json_format.MessageToDict((await self._kit.call(
            "GetWorkflow", pb.GetWorkflowRequest(workflow=name))).workflow.params)
        given = json_format.MessageToDict(params)
        params = struct_pb2.Struct()
        params.update({key: value for key, value in given.items()
                       if key not in shown or shown[key] != value})
        answer = await self._kit.call("StartRun", pb.StartRunRequest(
            workflow=name, params=params, queue=form["queue"].strip(),
            remarks=form["remarks"]))
        raise web.HTTPSeeOther(f"/runs/{answer.run.run_id}")

    async def start_backfill(self, request: web.Request) -> web.StreamResponse:
        """Without `confirm`, the dry run's logical times to confirm; with it, the backfill.
        A viewer may see the dry run (a read, as in the API), not start it."""
        form = await request.post()
        confirm = form.get("confirm") == "yes"
        self._kit.require(request, "StartBackfill" if confirm else "GetBackfill")
        name = request.match_info["name"]
        fields = {k: str(form.get(k, "")).strip() for k in _FORM_FIELDS["backfill"].values()}
        try:
            return await self._start_backfill(request, name, fields, confirm=confirm)
        except ServiceError as exc:
            return await self._refused(request, name, "backfill", fields, exc)

    async def _start_backfill(self, request: web.Request, name: str,
                              fields: Mapping[str, str], *, confirm: bool
                              ) -> web.StreamResponse:
        reprocess = {"": pb.REPROCESS_UNSPECIFIED, "all": pb.REPROCESS_ALL,
                     "missing": pb.REPROCESS_MISSING, "failed": pb.REPROCESS_FAILED}
        if fields["reprocess"] not in reprocess:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               "reprocess must be all, missing or failed", field="reprocess")
        parallel = whole_number(fields["parallel"] or "0", "parallel runs", "a whole number"
                                " (0: the workflow's max_active_runs)", field="parallel")
        backfill = pb.StartBackfillRequest(
            workflow=name, start_time=form_time(fields["start"], "start"),
            end_time=form_time(fields["end"], "end", day_end=True), queue=fields["queue"],
            remarks=fields["remarks"], max_parallel_runs=parallel, dry_run=not confirm,
            reprocess=reprocess[fields["reprocess"]],
            failure_emails=[e.strip() for e in fields["emails"].split(",") if e.strip()])
        answer = await self._kit.call("StartBackfill", backfill)
        if confirm:
            raise web.HTTPSeeOther(f"/backfills/{answer.backfill_id}")
        return self._kit.page(
            request, "backfill_preview.html", workflow=name, fields=fields,
            times=[t.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                   for t in answer.logical_times])


# a refused form's inputs by the request field an error names (the console's own errors
# name the input itself); the first is focused when the error names none of them
_FORM_FIELDS: Final[Mapping[str, Mapping[str, str]]] = {
    "run": {"params": "params", "queue": "queue", "remarks": "remarks"},
    "backfill": {"start_time": "start", "start": "start", "end_time": "end", "end": "end",
                 "queue": "queue", "max_parallel_runs": "parallel", "parallel": "parallel",
                 "reprocess": "reprocess", "remarks": "remarks",
                 "failure_emails": "emails", "emails": "emails"}}


def _tagged(workflow: pb.Workflow, tag: str) -> bool:
    """ListRuns' tag rule: `KEY` or `KEY=VALUE` on the workflow or one of its nodes."""
    key, sep, value = tag.partition("=")
    return any(key in tags and (not sep or tags[key] == value)
               for tags in [workflow.tags, *(n.tags for n in workflow.nodes)])


def _version_number(query: Mapping[str, str], key: str) -> int:
    """The query's version number `key` (INVALID_ARGUMENT naming it when it is not one)."""
    text = query.get(key, "")
    if not re.fullmatch(r"[0-9]{1,9}", text) or int(text) == 0:
        raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"{key} must be a version number such as 3, not"
                           f" '{text[:20]}'")
    return int(text)


def form_time(text: str, name: str, *, day_end: bool = False) -> timestamp_pb2.Timestamp:
    """A form's time: ISO 8601 with a zone (`2026-01-31T02:00:00Z`); a date or a time
    without a zone is UTC (what `<input type=datetime-local>` sends). With `day_end`, a
    date alone is the end of that day, as `flowplan backfill --to` reads it."""
    try:
        value = datetime.fromisoformat(text)
        if day_end and re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", text):
            value = value.replace(hour=23, minute=59, second=59, microsecond=999999)
    except ValueError:
        raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"{name} must be a time such as 2026-01-31T02:00:00Z (a time"
                           " without a zone is UTC)", field=name) from None
    stamp = timestamp_pb2.Timestamp()
    try:
        stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    except (OverflowError, ValueError):  # its zone takes it off the calendar
        raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"{name} must be a time from 0001-01-01T00:00:00Z to"
                           " 9999-12-31T23:59:59Z", field=name) from None
    return stamp
