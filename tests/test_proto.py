"""The wire contract `flowplan.v1`: the checked-in generated code matches the .proto files,
the proto follows buf's STANDARD lint rules and our API conventions, messages survive the
binary and JSON encodings, and docs/api.md covers every RPC, message, enum and field."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import os
import re
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from conftest import ROOT
from google.protobuf import descriptor_pb2, descriptor_pool, json_format
from google.protobuf.descriptor_pb2 import FieldDescriptorProto as FieldProto
from google.protobuf.timestamp_pb2 import Timestamp

from flowplan.v1 import workflow_service_pb2 as pb

PROTO_DIR = ROOT / "proto" / "flowplan" / "v1"
GENERATE = ROOT / "proto" / "generate.sh"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
REGENERATE = "run `proto/generate.sh` (with the grpcio-tools pinned in pyproject.toml) and commit"

PASCAL = re.compile(r"^[A-Z][a-zA-Z0-9]*$")
LOWER_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$")
VERSIONED_PACKAGE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.v[1-9][0-9]*"
                               r"((alpha|beta)[0-9]*)?$")


def _proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def _modules() -> list[ModuleType]:
    return [importlib.import_module(f"flowplan.v1.{path.stem}_pb2") for path in _proto_files()]


def _file_protos() -> list[descriptor_pb2.FileDescriptorProto]:
    protos = []
    for module in _modules():
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        protos.append(proto)
    return protos


def _generated_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())
            if path.name.endswith(GENERATED_SUFFIXES)}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _requirement(requirements: list[str], name: str) -> tuple[str, str]:
    for requirement in requirements:
        found = re.fullmatch(rf"{re.escape(name)}\s*(==|>=)\s*([0-9.]+)(\s*,\s*<[0-9.]+)?",
                             requirement.strip())
        if found:
            return found.group(1), found.group(2)
    raise AssertionError(f"pyproject.toml has no `{name}==` or `{name}>=` requirement")


# --- the generated code is what the .proto files and the pinned generator produce ----------

def test_installed_generator_is_the_pinned_one():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    op, pinned = _requirement(project["optional-dependencies"]["test"], "grpcio-tools")
    assert op == "==", "pin grpcio-tools exactly: the drift test compares bytes"
    installed = importlib.metadata.version("grpcio-tools")
    assert installed == pinned, (
        f"grpcio-tools {installed} is installed but pyproject.toml pins {pinned}: run"
        " `pip install -e '.[test]'`")


def test_checked_in_code_matches_the_proto(tmp_path):
    subprocess.run(["bash", str(GENERATE), str(tmp_path)], check=True, capture_output=True,
                   env={**os.environ, "PYTHON": sys.executable})
    fresh = _generated_files(tmp_path / "flowplan" / "v1")
    assert fresh, "proto/generate.sh produced nothing"
    checked_in = _generated_files(PROTO_DIR)
    assert sorted(checked_in) == sorted(fresh), f"generated files differ in name: {REGENERATE}"
    stale = [name for name in fresh if checked_in[name] != fresh[name]]
    assert not stale, f"{', '.join(stale)} out of date with the .proto files: {REGENERATE}"


def test_dependency_floors_cover_the_generated_code():
    dependencies = tomllib.loads(
        (ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    for path in _proto_files():
        gencode = (PROTO_DIR / f"{path.stem}_pb2.py").read_text(encoding="utf-8")
        found = re.search(r"ValidateProtobufRuntimeVersion\(\s*\S+,\s*(\d+),\s*(\d+),\s*(\d+),",
                          gencode)
        assert found, "the protobuf gencode no longer states its version: read it anew"
        protobuf_needed = tuple(int(part) for part in found.groups())
        grpc_code = (PROTO_DIR / f"{path.stem}_pb2_grpc.py").read_text(encoding="utf-8")
        found = re.search(r"GRPC_GENERATED_VERSION = '([0-9.]+)'", grpc_code)
        assert found, "the gRPC gencode no longer states its version: read it anew"
        grpc_needed = _version(found.group(1))
        for name, needed in (("protobuf", protobuf_needed), ("grpcio", grpc_needed),
                             ("grpcio-health-checking", grpc_needed),
                             ("grpcio-reflection", grpc_needed),
                             ("grpcio-status", grpc_needed)):
            op, floor = _requirement(dependencies, name)
            assert op == ">=" and _version(floor) >= needed, (
                f"{path.stem}: the generated code needs {name}>={'.'.join(map(str, needed))};"
                f" pyproject.toml says {name}{op}{floor}")


# --- buf lint STANDARD, over the descriptors --------------------------------------------------

def _upper_snake(pascal: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", pascal).upper()


def _messages(
    messages: list[descriptor_pb2.DescriptorProto], prefix: str,
) -> Iterator[tuple[str, descriptor_pb2.DescriptorProto]]:
    for message in messages:
        if message.options.map_entry:
            continue
        yield f"{prefix}{message.name}", message
        yield from _messages(list(message.nested_type), f"{prefix}{message.name}.")


def _enums(file: descriptor_pb2.FileDescriptorProto) -> Iterator[
        tuple[str, descriptor_pb2.EnumDescriptorProto]]:
    for enum in file.enum_type:
        yield enum.name, enum
    for path, message in _messages(list(file.message_type), ""):
        for enum in message.enum_type:
            yield f"{path}.{enum.name}", enum


def lint(files: list[descriptor_pb2.FileDescriptorProto]) -> list[str]:
    """buf's STANDARD rules that apply to a proto3 package, plus AIP-158 pagination."""
    problems: list[str] = []
    io_types: Counter[str] = Counter()
    for file in files:
        where = file.name
        if file.syntax != "proto3":
            problems.append(f"{where}: SYNTAX_SPECIFIED: use proto3")
        if not VERSIONED_PACKAGE.match(file.package):
            problems.append(f"{where}: PACKAGE_VERSION_SUFFIX: {file.package!r}")
        if str(Path(file.name).parent) != file.package.replace(".", "/"):
            problems.append(f"{where}: PACKAGE_DIRECTORY_MATCH: package {file.package}")
        if not LOWER_SNAKE.match(Path(file.name).stem):
            problems.append(f"{where}: FILE_LOWER_SNAKE_CASE")
        if file.public_dependency or file.weak_dependency:
            problems.append(f"{where}: IMPORT_NO_PUBLIC / IMPORT_NO_WEAK")
        used_types = {field.type_name.lstrip(".") for _, message in
                      _messages(list(file.message_type), "") for field in message.field}
        used_types |= {name.lstrip(".") for service in file.service for method in service.method
                       for name in (method.input_type, method.output_type)}
        pool = descriptor_pool.Default()
        for dependency in file.dependency:
            imported = pool.FindFileByName(dependency)
            names = {*imported.message_types_by_name.values(),
                     *imported.enum_types_by_name.values()}
            if not {d.full_name for d in names} & used_types:
                problems.append(f"{where}: IMPORT_USED: {dependency} is not used")
        for path, message in _messages(list(file.message_type), ""):
            if not PASCAL.match(message.name):
                problems.append(f"{where}: MESSAGE_PASCAL_CASE: {path}")
            for field in message.field:
                if not LOWER_SNAKE.match(field.name):
                    problems.append(f"{where}: FIELD_LOWER_SNAKE_CASE: {path}.{field.name}")
                if field.name == "descriptor":
                    problems.append(f"{where}: FIELD_NO_DESCRIPTOR: {path}.{field.name}")
            for oneof in message.oneof_decl:
                if not LOWER_SNAKE.match(oneof.name.lstrip("_")):
                    problems.append(f"{where}: ONEOF_LOWER_SNAKE_CASE: {path}.{oneof.name}")
        for path, enum in _enums(file):
            prefix = _upper_snake(enum.name) + "_"
            if not PASCAL.match(enum.name):
                problems.append(f"{where}: ENUM_PASCAL_CASE: {path}")
            if enum.options.allow_alias:
                problems.append(f"{where}: ENUM_NO_ALLOW_ALIAS: {path}")
            first = enum.value[0]
            if first.number != 0:
                problems.append(f"{where}: ENUM_FIRST_VALUE_ZERO: {path}.{first.name}")
            if first.name != f"{prefix}UNSPECIFIED":
                problems.append(f"{where}: ENUM_ZERO_VALUE_SUFFIX: {path}.{first.name}"
                                f" should be {prefix}UNSPECIFIED")
            for value in enum.value:
                if not UPPER_SNAKE.match(value.name):
                    problems.append(f"{where}: ENUM_VALUE_UPPER_SNAKE_CASE: {value.name}")
                if not value.name.startswith(prefix):
                    problems.append(f"{where}: ENUM_VALUE_PREFIX: {value.name} lacks {prefix}")
        messages = {f".{file.package}.{path}": m for f in files
                    for path, m in _messages(list(f.message_type), "")}
        for service in file.service:
            if not PASCAL.match(service.name):
                problems.append(f"{where}: SERVICE_PASCAL_CASE: {service.name}")
            if not service.name.endswith("Service"):
                problems.append(f"{where}: SERVICE_SUFFIX: {service.name}")
            for method in service.method:
                rpc = f"{service.name}.{method.name}"
                if not PASCAL.match(method.name):
                    problems.append(f"{where}: RPC_PASCAL_CASE: {rpc}")
                if method.input_type != f".{file.package}.{method.name}Request":
                    problems.append(f"{where}: RPC_REQUEST_STANDARD_NAME: {rpc} takes"
                                    f" {method.input_type}")
                if method.output_type != f".{file.package}.{method.name}Response":
                    problems.append(f"{where}: RPC_RESPONSE_STANDARD_NAME: {rpc} returns"
                                    f" {method.output_type}")
                if method.client_streaming:
                    problems.append(f"{where}: no client streaming: {rpc}")
                io_types.update([method.input_type, method.output_type])
                if method.name.startswith("List"):
                    problems += _pagination(where, rpc, messages.get(method.input_type),
                                            messages.get(method.output_type))
    problems += [f"RPC_REQUEST_RESPONSE_UNIQUE: {name} is used by {count} RPCs"
                 for name, count in io_types.items() if count > 1]
    return problems


def _pagination(where: str, rpc: str, request: descriptor_pb2.DescriptorProto | None,
                response: descriptor_pb2.DescriptorProto | None) -> list[str]:
    if request is None or response is None:
        return []
    fields_in = {f.name: f for f in request.field}
    fields_out = {f.name: f for f in response.field}
    wanted = ((fields_in, "page_size", FieldProto.TYPE_INT32),
              (fields_in, "page_token", FieldProto.TYPE_STRING),
              (fields_out, "next_page_token", FieldProto.TYPE_STRING))
    problems = [f"{where}: AIP-158: {rpc} needs {name} ({FieldProto.Type.Name(kind)})"
                for fields, name, kind in wanted
                if name not in fields or fields[name].type != kind
                or fields[name].label == FieldProto.LABEL_REPEATED]
    repeated = [f for f in response.field if f.label == FieldProto.LABEL_REPEATED]
    if len(repeated) != 1:
        problems.append(f"{where}: AIP-158: {rpc} returns one repeated field of results")
    return problems


def test_proto_follows_the_lint_rules():
    assert lint(_file_protos()) == []


def test_lint_catches_bad_additions():
    file = _file_protos()[0]
    bad = file.message_type.add(name="bad_message")
    bad.field.add(name="BadField", number=1, type=FieldProto.TYPE_STRING,
                  label=FieldProto.LABEL_OPTIONAL)
    color = file.enum_type.add(name="Color")
    color.value.add(name="RED", number=0)
    color.value.add(name="COLOR_BLUE", number=1)
    file.service.add(name="Things").method.add(
        name="GetThing", input_type=".flowplan.v1.GetRunRequest",
        output_type=".flowplan.v1.ListRunsResponse")
    file.service[0].method.add(name="ListThings", input_type=".flowplan.v1.ListThingsRequest",
                               output_type=".flowplan.v1.ListThingsResponse")
    file.message_type.add(name="ListThingsRequest")
    file.message_type.add(name="ListThingsResponse")
    found = "\n".join(lint([file]))
    for rule in ("MESSAGE_PASCAL_CASE: bad_message",
                 "FIELD_LOWER_SNAKE_CASE: bad_message.BadField",
                 "ENUM_ZERO_VALUE_SUFFIX: Color.RED", "ENUM_VALUE_PREFIX: RED lacks COLOR_",
                 "SERVICE_SUFFIX: Things", "RPC_REQUEST_STANDARD_NAME: Things.GetThing",
                 "RPC_RESPONSE_STANDARD_NAME: Things.GetThing",
                 "RPC_REQUEST_RESPONSE_UNIQUE: .flowplan.v1.GetRunRequest",
                 "AIP-158: WorkflowService.ListThings needs page_size",
                 "AIP-158: WorkflowService.ListThings needs next_page_token"):
        assert rule in found, f"{rule!r} not reported in:\n{found}"


def _uncommented(file: descriptor_pb2.FileDescriptorProto) -> list[str]:
    comments = {tuple(loc.path): loc.leading_comments.strip()
                for loc in file.source_code_info.location}
    # (descriptor path, name) of everything that wants a comment; the path numbers are the
    # field numbers of FileDescriptorProto / DescriptorProto / EnumDescriptorProto / ...
    wanted: list[tuple[tuple[int, ...], str]] = []

    def walk(messages: list[descriptor_pb2.DescriptorProto], path: tuple[int, ...],
             prefix: str) -> None:
        for i, message in enumerate(messages):
            if message.options.map_entry:
                continue
            here, name = (*path, i), f"{prefix}{message.name}"
            wanted.append((here, name))
            wanted.extend(((*here, 2, j), f"{name}.{f.name}") for j, f in enumerate(message.field))
            for j, enum in enumerate(message.enum_type):
                wanted.append(((*here, 4, j), f"{name}.{enum.name}"))
                wanted.extend(((*here, 4, j, 2, k), v.name) for k, v in enumerate(enum.value))
            walk(list(message.nested_type), (*here, 3), f"{name}.")

    walk(list(file.message_type), (4,), "")
    for i, enum in enumerate(file.enum_type):
        wanted.append(((5, i), enum.name))
        wanted.extend(((5, i, 2, j), value.name) for j, value in enumerate(enum.value))
    for i, service in enumerate(file.service):
        wanted.append(((6, i), service.name))
        wanted.extend(((6, i, 2, j), f"{service.name}.{method.name}")
                      for j, method in enumerate(service.method))
    return [name for path, name in wanted if not comments.get(path)]


def test_every_element_of_the_proto_has_a_comment(tmp_path):
    """The comments are the API reference: every message, field, enum, value, service and
    RPC has one."""
    from grpc_tools import protoc

    out = tmp_path / "set.pb"
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    code = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"-I{well_known}",
                        "--include_source_info", f"--descriptor_set_out={out}",
                        *map(str, _proto_files())])
    assert code == 0
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    missing = [name for file in descriptor_set.file for name in _uncommented(file)]
    assert not missing, f"add a comment to: {', '.join(missing)}"


# --- the names clients rely on ------------------------------------------------------------

CONTRACT = {
    "Run": ["run_id", "workflow", "plan_version", "status", "trigger", "logical_time", "params",
            "remarks", "previous_run_id", "backfill_id", "created_at", "started_at",
            "finished_at", "nodes", "edges"],
    "NodeRun": ["name", "status", "queue", "attempts", "copied_from_run_id"],
    "Attempt": ["number", "status", "plan_version", "started_at", "finished_at", "exit_code",
                "error"],
    "Edge": ["upstream", "downstream"],
    "ResumeRunRequest": ["run_id", "node_names", "plan_version", "dry_run"],
    "ResumeRunResponse": ["run_id", "node_names"],
    "StartBackfillRequest": ["workflow", "start_time", "end_time", "queue", "remarks",
                             "failure_emails", "max_parallel_runs", "dry_run", "reprocess"],
    "StartBackfillResponse": ["backfill_id", "logical_times", "run_ids"],
    "Backfill": ["backfill_id", "workflow", "status", "start_time", "end_time",
                 "max_parallel_runs", "queue", "remarks", "failure_emails", "reprocess",
                 "created_at", "finished_at", "progress"],
    "BackfillProgress": ["total", "succeeded", "failed", "running", "pending", "cancelled"],
    "Workflow": ["name", "description", "latest_version", "tombstone", "timezone", "queue",
                 "max_active_runs", "tags", "schedule", "scheduling_enabled", "next_tick",
                 "nodes", "edges"],
    "Schedule": ["kind", "at", "every_seconds", "window_start", "window_end", "cron",
                 "timezone", "start", "enabled_in_git", "catchup"],
    "NodeDefinition": ["name", "type", "queue", "retries", "timeout_seconds", "trigger",
                       "upstream", "tags"],
    "PlanVersion": ["workflow", "version", "digest", "published_at", "remarks", "commit",
                    "compiler_version", "tombstone"],
    "StartRunRequest": ["workflow", "params", "queue", "remarks", "logical_time"],
    "StartRunResponse": ["run"],
    "SetSchedulingStatusRequest": ["workflow", "enabled"],
    "GetRunRequest": ["run_id", "include_graph"],
    "ListRunsRequest": ["workflow", "status", "trigger", "tag", "backfill_id"],
    "WatchRunRequest": ["run_id", "after_sequence"],
    "WatchRunResponse": ["sequence"],
    "GetNodeLogRequest": ["run_id", "node_name", "attempt", "offset", "follow"],
    "GetNodeLogResponse": ["offset", "data"],
}

ENUMS = {
    "RunStatus": ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"],
    "NodeStatus": ["PENDING", "RUNNING", "RETRYING", "SUCCEEDED", "FAILED", "SKIPPED",
                   "CANCELLED"],
    "RunTrigger": ["MANUAL", "SCHEDULE", "BACKFILL", "DEBUG", "RESUME"],
    "AttemptStatus": ["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"],
    "BackfillStatus": ["RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"],
    "Reprocess": ["MISSING", "FAILED", "ALL"],
}

RPCS = ["ListWorkflows", "GetWorkflow", "ListPlanVersions", "SetSchedulingStatus", "StartRun",
        "StartBackfill", "GetBackfill", "ListBackfills", "GetRun", "ListRuns", "CancelRun",
        "CancelBackfill", "ResumeRun", "WatchRun", "GetNodeLog", "ListNotifications"]


def test_contract_names_stay():
    for message, fields in CONTRACT.items():
        have = [f.name for f in pb.DESCRIPTOR.message_types_by_name[message].fields]
        assert have[:len(fields)] == fields, f"{message}: fields clients rely on changed"
    assert pb.DESCRIPTOR.message_types_by_name["Attempt"].fields_by_name[
        "exit_code"].has_presence, "exit_code must tell 0 from unset (proto3 optional)"
    for enum, values in ENUMS.items():
        prefix = _upper_snake(enum)
        have = [v.name for v in pb.DESCRIPTOR.enum_types_by_name[enum].values]
        assert have == [f"{prefix}_UNSPECIFIED"] + [f"{prefix}_{v}" for v in values], enum
    service = pb.DESCRIPTOR.services_by_name["WorkflowService"]
    assert service.full_name == "flowplan.v1.WorkflowService"
    assert [m.name for m in service.methods] == RPCS
    streams = {m.name for m in service.methods if m.server_streaming}
    assert streams == {"WatchRun", "GetNodeLog"}


# --- encodings ----------------------------------------------------------------------------

def _ts(text: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromJsonString(text)
    return stamp


def _sample_run() -> pb.Run:
    run = pb.Run(
        run_id="wr_01JD0000000000000000000000", workflow="daily_sales", plan_version=3,
        status=pb.RUN_STATUS_FAILED, trigger=pb.RUN_TRIGGER_RESUME,
        logical_time=_ts("2026-01-02T02:00:00Z"), remarks="after the fix",
        previous_run_id="wr_01JC0000000000000000000000", created_at=_ts("2026-01-02T03:00:00Z"),
        started_at=_ts("2026-01-02T03:00:01.250Z"), finished_at=_ts("2026-01-02T03:10:00Z"),
        plan_digest="ab" * 32, queue="heavy", tags={"team": "sales"}, last_sequence=9,
        edges=[pb.Edge(upstream="ingest", downstream="transform"),
               pb.Edge(upstream="transform", downstream="report")],
    )
    run.params.update({"region": "eu", "days": 3, "dry": False, "tables": ["a", "b"],
                       "API_TOKEN": "***"})
    run.nodes.add(name="ingest", status=pb.NODE_STATUS_SUCCEEDED, queue="default",
                  copied_from_run_id="wr_01JC0000000000000000000000", plan_version=2,
                  attempts=[pb.Attempt(number=1, status=pb.ATTEMPT_STATUS_SUCCEEDED,
                                       plan_version=2, started_at=_ts("2026-01-01T02:00:00Z"),
                                       finished_at=_ts("2026-01-01T02:01:00Z"), exit_code=0,
                                       log_path="/logs/ingest/1.log",
                                       copied_from_run_id="wr_01JC0000000000000000000000")])
    transform = run.nodes.add(name="transform", status=pb.NODE_STATUS_FAILED, queue="heavy",
                              plan_version=3)
    transform.attempts.add(number=1, status=pb.ATTEMPT_STATUS_FAILED, plan_version=3,
                           started_at=_ts("2026-01-02T03:00:01Z"),
                           finished_at=_ts("2026-01-02T03:10:00Z"),
                           error="timed out after 600s")  # no exit code: killed
    run.nodes.add(name="report", status=pb.NODE_STATUS_SKIPPED, queue="default",
                  skip_reason="upstream transform failed", plan_version=3)
    return run


def test_run_round_trips_through_bytes():
    run = _sample_run()
    again = pb.Run.FromString(run.SerializeToString())
    assert again == run
    assert again.nodes[0].attempts[0].HasField("exit_code")
    assert again.nodes[0].attempts[0].exit_code == 0
    assert not again.nodes[1].attempts[0].HasField("exit_code")
    assert [(e.upstream, e.downstream) for e in again.edges] == [
        ("ingest", "transform"), ("transform", "report")]


def test_run_round_trips_through_json():
    run = _sample_run()
    text = json_format.MessageToJson(run, preserving_proto_field_name=True)
    assert json_format.Parse(text, pb.Run()) == run
    data = json_format.MessageToDict(run, preserving_proto_field_name=True)
    assert data["status"] == "RUN_STATUS_FAILED"
    assert data["trigger"] == "RUN_TRIGGER_RESUME"
    assert data["logical_time"] == "2026-01-02T02:00:00Z"
    assert data["started_at"] == "2026-01-02T03:00:01.250Z"
    assert data["params"] == {"region": "eu", "days": 3, "dry": False, "tables": ["a", "b"],
                              "API_TOKEN": "***"}
    assert data["previous_run_id"].startswith("wr_")
    first, second = (node["attempts"][0] for node in data["nodes"][:2])
    assert first["exit_code"] == 0 and "exit_code" not in second
    assert data["nodes"][2]["status"] == "NODE_STATUS_SKIPPED"
    assert data["edges"][0] == {"upstream": "ingest", "downstream": "transform"}


# --- docs/api.md --------------------------------------------------------------------------

def test_api_docs_cover_the_proto():
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    names: list[str] = []
    for file in _file_protos():
        for service in file.service:
            names.append(f"{file.package}.{service.name}")
            names += [method.name for method in service.method]
        for path, message in _messages(list(file.message_type), ""):
            names.append(path)
            names += [field.name for field in message.field]
        for path, enum in _enums(file):
            names.append(path)
            names += [value.name for value in enum.value]
    missing = sorted({name for name in names if f"`{name}`" not in text})
    assert not missing, f"docs/api.md does not mention: {', '.join(missing)}"


@pytest.mark.parametrize("rpc", RPCS)
def test_api_docs_have_a_section_per_rpc(rpc):
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert re.search(rf"^### `?{rpc}`?$", text, re.MULTILINE), f"docs/api.md: no ### {rpc}"
