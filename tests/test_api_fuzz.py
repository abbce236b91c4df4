"""Any request to any RPC, against `flowplan serve` as a real process: the answer is OK or a
documented refusal (INVALID_ARGUMENT naming the field, NOT_FOUND, FAILED_PRECONDITION), never
INTERNAL, UNKNOWN or a dead daemon. Requests are drawn from the proto's own descriptors, with
field values mixing real names and ids with junk and extremes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from daemon_harness import Daemon, publish
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowplan.v1 import workflow_service_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["WorkflowService"]
REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.FAILED_PRECONDITION}
REPO = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
    "workflows/chain.yaml": "name: chain\ntags: {team: data}\nparams: {code: '0'}\nnodes:\n"
                            "  - {name: a, command: 'echo a'}\n"
                            "  - {name: b, command: 'exit ${params.code}', upstream: [a]}\n",
    "workflows/daily.yaml": "name: daily\nschedule: {every: day, at: '02:00', timezone: UTC}\n"
                            "nodes:\n  - {name: day, command: 'echo ${ds}'}\n",
}
NODES = ["a", "b", "day"]
INT_RANGES = {FieldDescriptor.CPPTYPE_INT32: (-2**31, 2**31 - 1),
              FieldDescriptor.CPPTYPE_INT64: (-2**63, 2**63 - 1),
              FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
              FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1)}
# Timestamp seconds: the epoch, around now, and the ends of (and beyond) the valid range
SECONDS = st.one_of(st.sampled_from([0, -1, 1_795_000_000, -62_135_596_800, 253_402_300_799,
                                     -62_135_596_801, 253_402_300_800, -2**63, 2**63 - 1]),
                    st.integers(1_795_000_000 - 10 * 86_400, 1_795_000_000 + 10 * 86_400))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Daemon, dict[str, list[str]]]]:
    root = tmp_path_factory.mktemp("fuzz")
    for relative, text in REPO.items():
        (root / "repo" / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / "repo" / relative).write_text(text)
    publish(root / "repo", root / "store")
    d = Daemon(root / "store", root / "state")
    runs = [d.call("StartRun", pb.StartRunRequest(workflow=w)).run.run_id
            for w in ("chain", "daily")]
    for run_id in runs:
        d.wait_run(run_id)
    backfill = d.call("StartBackfill", pb.StartBackfillRequest(
        workflow="daily", start_time=timestamp_pb2.Timestamp(seconds=1_795_000_000),
        end_time=timestamp_pb2.Timestamp(seconds=1_795_000_000 + 2 * 86_400))).backfill_id
    pools = {"workflow": ["chain", "daily", "nope", ""], "run_id": [*runs, "wr_nope", ""],
             "backfill_id": [backfill, "bf_nope", ""]}
    try:
        yield d, pools
    finally:
        assert d.stop() == 0  # still alive, and stops cleanly


def text_for(field: FieldDescriptor, pools: dict[str, list[str]]) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=20)
    junk = st.text(max_size=24)
    for key, pool in pools.items():
        if key in field.name:
            return st.one_of(st.sampled_from(pool), junk)
    if "node" in field.name:
        return st.one_of(st.sampled_from(NODES), junk)
    return junk


def value_for(field: FieldDescriptor, pools: dict[str, list[str]], depth: int
              ) -> st.SearchStrategy[Any]:
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_STRING:
        return text_for(field, pools)
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        return st.one_of(st.integers(-3, 20).filter(lambda n: low <= n), st.integers(low, high))
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        return st.integers(-1, len(field.enum_type.values) + 1)  # open enums: unknown values too
    if kind in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return st.floats(width=32 if kind == FieldDescriptor.CPPTYPE_FLOAT else 64)
    return message_for(field.message_type, pools, depth + 1)


def message_for(descriptor: Descriptor, pools: dict[str, list[str]], depth: int = 0
                ) -> st.SearchStrategy[Any]:
    """A strategy for a message of `descriptor` (Timestamp and Struct as their own kinds)."""
    if descriptor.full_name == "google.protobuf.Timestamp":
        return st.builds(lambda s, n: timestamp_pb2.Timestamp(seconds=s, nanos=n), SECONDS,
                         st.one_of(st.just(0), st.integers(-1, 1_000_000_000)))
    if descriptor.full_name == "google.protobuf.Struct":
        values = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False),
                           st.text(max_size=12))
        return st.dictionaries(st.one_of(st.sampled_from(["code", "seconds"]),
                                         st.text(max_size=8)), values, max_size=3)
    if depth > 2:
        return st.just({})
    fields = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], \
                field.message_type.fields_by_name["value"]
            fields[field.name] = st.dictionaries(value_for(key, pools, depth),
                                                 value_for(value, pools, depth), max_size=3)
        elif field.is_repeated:
            fields[field.name] = st.lists(value_for(field, pools, depth), max_size=3)
        else:
            fields[field.name] = value_for(field, pools, depth)
    return st.fixed_dictionaries({}, optional=fields)


def build(cls: type[Message], values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is None:
                target.update(value)
        elif isinstance(value, list):
            if field.message_type is None:
                with contextlib.suppress(ValueError):  # a value the runtime refuses
                    target.extend(value)
            else:
                for item in value:
                    _fill(target.add(), item)
        elif field.message_type is not None:
            _fill(target, value)
        else:
            with contextlib.suppress(ValueError):
                setattr(message, name, value)
    return message


def _fill(target: Message, value: Any) -> None:
    if isinstance(value, Message):
        target.CopyFrom(value)
    elif isinstance(target, struct_pb2.Struct):
        target.update(value)
    else:
        target.CopyFrom(build(type(target), value))


def requests(pools: dict[str, list[str]]) -> st.SearchStrategy[tuple[str, Message]]:
    """(method name, request) for any method of the service."""
    def for_method(index: int) -> st.SearchStrategy[tuple[str, Message]]:
        method = SERVICE.methods[index]
        cls = getattr(pb, method.input_type.name)
        return message_for(method.input_type, pools).map(
            lambda values: (method.name, build(cls, values)))
    return st.integers(0, len(SERVICE.methods) - 1).flatmap(for_method)


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_request_gets_an_undocumented_answer(
        daemon: tuple[Daemon, dict[str, list[str]]], data: st.DataObject) -> None:
    d, pools = daemon
    name, request = data.draw(requests(pools))
    streaming = SERVICE.methods_by_name[name].server_streaming
    if name == "StartBackfill":
        request.dry_run = True  # the refusals are the same; a real one would queue 10^5 runs
    try:
        if streaming:
            for _ in d.call(name, request, timeout=3):
                pass
        else:
            d.call(name, request)
    except grpc.RpcError as error:
        code = error.code()
        if streaming and code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return  # following a run or a log that does not end within the test's deadline
        assert code in REFUSALS, f"{name}({request}) -> {code}: {error.details()}"
        assert error.details()
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            assert bad_request_fields(error), f"{name}({request}): no field named"
    assert d.process.poll() is None


def infinite_params() -> struct_pb2.Struct:
    params = struct_pb2.Struct()
    params.update({"code": float("inf")})
    return params


@pytest.mark.parametrize(("name", "request_", "field"), [  # what the fuzzing found
    ("ListRuns", pb.ListRunsRequest(status=99), "status"),
    ("ListRuns", pb.ListRunsRequest(trigger=-1), "trigger"),
    ("ListBackfills", pb.ListBackfillsRequest(status=-1), "status"),
    ("ListNotifications", pb.ListNotificationsRequest(status=9), "status"),
    ("ListNotifications", pb.ListNotificationsRequest(page_token="x"), "page_token"),
    ("StartBackfill", pb.StartBackfillRequest(
        workflow="daily", reprocess=7, start_time=timestamp_pb2.Timestamp(seconds=0),
        end_time=timestamp_pb2.Timestamp(seconds=86_400)), "reprocess"),
    ("StartBackfill", pb.StartBackfillRequest(
        workflow="daily", start_time=timestamp_pb2.Timestamp(seconds=-62_135_596_801),
        end_time=timestamp_pb2.Timestamp(seconds=0)), "start_time"),
    ("StartRun", pb.StartRunRequest(
        workflow="chain", logical_time=timestamp_pb2.Timestamp(seconds=0, nanos=-1)),
     "logical_time"),
    ("StartRun", pb.StartRunRequest(  # 0001-01-01T00:00Z: no local date west of UTC
        workflow="chain", logical_time=timestamp_pb2.Timestamp(seconds=-62_135_596_800)),
     "logical_time"),
    ("StartRun", pb.StartRunRequest(workflow="chain", params=infinite_params()), "params"),
], ids=["run-status", "run-trigger", "backfill-status", "notification-status",
        "notification-page-token", "reprocess", "start-time", "logical-time",
        "logical-time-first-day", "params"])
def test_values_out_of_range_are_refused_naming_the_field(
        daemon: tuple[Daemon, dict[str, list[str]]], name: str, request_: Message, field: str
        ) -> None:
    d, _ = daemon
    with pytest.raises(grpc.RpcError) as refused:
        d.call(name, request_)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(refused.value) == [field]


def bad_request_fields(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)
    fields = []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations if v.field]
    return fields


def test_drawn_values_reach_the_request() -> None:  # else the fuzzing above sends only defaults
    request = build(pb.StartBackfillRequest, {
        "workflow": "daily", "start_time": timestamp_pb2.Timestamp(seconds=5),
        "failure_emails": ["a@b.c"], "max_parallel_runs": 3})
    assert isinstance(request, pb.StartBackfillRequest)
    assert request.workflow == "daily" and request.start_time.seconds == 5
    assert list(request.failure_emails) == ["a@b.c"] and request.max_parallel_runs == 3
