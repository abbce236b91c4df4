"""Who may do what: the roles file, the method -> role table (checked against the proto's
descriptor and docs/api.md), and a real `flowplan serve` with a roles file and the old single
token, called over gRPC, by the CLI and by `flowplan.client`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import grpc
import pytest
from conftest import FLOWPLAN, ROOT, MakeRepo, wait_until
from daemon_harness import flowplan, publish, running_daemon
from google.protobuf import struct_pb2, timestamp_pb2

from flowplan.client import Client, ClientError
from flowplan.daemon.server.auth import DRY_RUN_METHODS, METHOD_ROLES, least_role
from flowplan.daemon.server.config import ServeConfig, open_to_all
from flowplan.daemon.server.roles import Role, RolesFileError, parse_roles
from flowplan.v1 import workflow_service_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["WorkflowService"]
TOKENS = {"admin": "a" * 20 + "-admin", "operator": "o" * 20 + "-operator",
          "viewer": "v" * 20 + "-viewer", "single": "the-old-single-token"}
ROLES_FILE = f"""# ROLE    NAME   TOKEN
admin     alice  {TOKENS["admin"]}
operator  ci     {TOKENS["operator"]}

\tviewer\tgrafana\t{TOKENS["viewer"]}
"""
FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
    "workflows/chain.yaml": """
        name: chain
        params: {code: "0"}
        nodes:
          - {name: a, command: "echo a"}
          - {name: b, command: "exit ${params.code}", upstream: [a]}
        """,
    "workflows/daily.yaml": """
        name: daily
        schedule: {every: day, at: "02:00", timezone: UTC}
        nodes:
          - {name: day, command: "echo ${ds}"}
        """,
}


# ---- the table ------------------------------------------------------------------------

def test_every_rpc_of_the_proto_has_a_least_role() -> None:
    methods = {m.name for m in SERVICE.methods}
    assert set(METHOD_ROLES) == methods, (
        f"daemon/server/auth.py METHOD_ROLES: missing {sorted(methods - set(METHOD_ROLES))},"
        f" unknown {sorted(set(METHOD_ROLES) - methods)}")
    for name in DRY_RUN_METHODS:  # with dry_run set, they only read
        assert "dry_run" in SERVICE.methods_by_name[name].input_type.fields_by_name
        assert METHOD_ROLES[name] is Role.OPERATOR
    assert least_role("SomeNewRpc") is Role.ADMIN  # one forgotten fails closed


def test_api_docs_list_the_role_of_every_rpc() -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = text.split("### Roles", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| (\w+)", section, re.MULTILINE))
    assert rows == {name: role.label for name, role in METHOD_ROLES.items()}


# ---- the roles file -------------------------------------------------------------------

def test_a_roles_file_gives_each_token_its_role() -> None:
    grants = parse_roles(ROLES_FILE, "roles")
    assert [(g.name, g.role, g.token) for g in grants] == [
        ("alice", Role.ADMIN, TOKENS["admin"]), ("ci", Role.OPERATOR, TOKENS["operator"]),
        ("grafana", Role.VIEWER, TOKENS["viewer"])]
    assert TOKENS["admin"] not in repr(grants)  # a token is never printed


SECRET = "s3cr3t-s3cr3t-s3cr3t"


@pytest.mark.parametrize(("text", "message"), [
    (f"viewer ci\n{SECRET}\n", "roles:1: has 2 field(s); a line is `ROLE NAME TOKEN`"),
    (f"# ok\nviewer ci {SECRET} extra\n", "roles:2: has 4 field(s)"),
    (f"{SECRET} viewer ci\n", "roles:1: the first field must be a role: viewer, operator,"
                              " admin"),
    (f"Admin ci {SECRET}\n", "roles:1: the first field must be a role"),
    (f"viewer c/i {SECRET}\n", "roles:1: the second field must be the token's name"),
    ("viewer ci short\n", "roles:1: the token must be at least 16 printable ASCII"),
    (f"viewer ci {SECRET}é\n", "roles:1: the token must be at least 16"),
    (f"viewer ci {SECRET}\nadmin ci {SECRET}x\n", "roles:2: the name is already that of"
                                                 " line 1"),
    (f"viewer ci {SECRET}\n\nadmin bob {SECRET}\n", "roles:3: the same token as line 1"),
    ("# nothing\n\n", "roles: no token in it"),
], ids=["fields", "extra", "swapped", "case", "name", "short", "ascii", "same-name",
        "same-token", "empty"])
def test_a_malformed_roles_file_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(RolesFileError) as caught:
        parse_roles(text, "roles")
    assert str(caught.value).startswith(message)
    assert SECRET not in str(caught.value)  # never repeats what a line holds


def test_serve_refuses_a_malformed_roles_file_at_start(tmp_path: Path) -> None:
    roles = tmp_path / "roles"
    roles.write_text(f"admin alice {TOKENS['admin']}\nviewer {TOKENS['viewer']}\n")
    result = subprocess.run(
        [*FLOWPLAN, "serve", "--store", str(tmp_path / "store"), "--state",
         str(tmp_path / "state"), "--listen", "127.0.0.1:0", "--roles-file", str(roles)],
        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"flowplan serve: {roles}:2: has 2 field(s)")
    assert "(--roles-file)" in result.stderr
    assert TOKENS["viewer"] not in result.stderr + result.stdout
    settings = tmp_path / "flowplan.toml"  # from the settings file: named with its key
    settings.write_text('[server]\nroles_file = "roles"\ntoken_file = "token"\n'
                        'store = "store"\nstate = "state"\n')
    (tmp_path / "token").write_text(TOKENS["admin"] + "\n")
    roles.write_text(f"operator ci {TOKENS['admin']}\n")
    result = flowplan("serve", "--settings", settings, "--print-config", check=False)
    assert result.returncode == 2
    assert f"the token of [server] token_file of {settings} is also in the roles file" \
           " (name ci)" in result.stderr
    assert TOKENS["admin"] not in result.stderr + result.stdout
    roles.write_bytes(b"# \xc3\xa9\nviewer ci \xff" + TOKENS["viewer"].encode() + b"\n")
    result = subprocess.run(  # from the environment: named by its variable
        [*FLOWPLAN, "serve", "--store", "s", "--state", "t", "--print-config"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={**os.environ, "FLOWPLAN_SERVER_ROLES_FILE": str(roles)})
    assert (result.returncode, result.stderr) == (
        2, f"flowplan serve: these settings would not serve: {roles}:2: not UTF-8 text"
           " (FLOWPLAN_SERVER_ROLES_FILE)\n")


def test_a_non_loopback_address_accepts_a_roles_file_as_authentication(tmp_path: Path
                                                                       ) -> None:
    roles = tmp_path / "roles"
    roles.write_text(ROLES_FILE)
    result = flowplan("serve", "--store", tmp_path / "store", "--state", tmp_path / "state",
                      "--listen", "0.0.0.0:50051", "--roles-file", roles, "--print-config")
    assert re.search(r'^roles_file += "', result.stdout, re.MULTILINE)  # keys aligned
    assert TOKENS["admin"] not in result.stdout
    result = flowplan("serve", "--store", tmp_path / "store", "--state", tmp_path / "state",
                      "--listen", "0.0.0.0:50051", "--print-config", check=False)
    assert result.returncode == 2 and "--roles-file" in result.stderr


@pytest.mark.parametrize(("settings", "open_addresses"), [
    ({"listen": "0.0.0.0:50051", "tls_cert": b"c", "tls_key": b"k"}, ["--listen 0.0.0.0:50051"]),
    ({"listen": "0.0.0.0:50051", "insecure": True, "http": "[::]:8080"},
     ["--listen 0.0.0.0:50051", "--http [::]:8080"]),
    ({"listen": "127.0.0.1:50051", "http": "0.0.0.0:8080", "insecure": True},
     ["--http 0.0.0.0:8080"]),
    ({"listen": "0.0.0.0:50051", "tls_cert": b"c", "tls_key": b"k", "tls_client_ca": b"ca"},
     []),
    ({"listen": "0.0.0.0:50051", "token": "t" * 20}, []),
    ({"listen": "127.0.0.1:50051", "http": "127.0.0.1:8080"}, []),
])
def test_the_addresses_where_any_client_is_an_admin_are_named(
        settings: dict[str, object], open_addresses: list[str]) -> None:
    """What the daemon warns of at its start: off loopback, TLS alone or --insecure."""
    config = ServeConfig(store=Path("s"), state=Path("t"), **settings)  # type: ignore[arg-type]
    assert open_to_all(config) == open_addresses


# ---- a real daemon --------------------------------------------------------------------

def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code(), caught.value.details()  # type: ignore[attr-defined]


def _ts(text: str) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromJsonString(text)
    return stamp


def test_each_role_against_reads_and_changes(make_repo: MakeRepo, tmp_path: Path) -> None:
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo(FILES), store)
    roles, single = tmp_path / "roles", tmp_path / "token"
    roles.write_text(ROLES_FILE)
    single.write_text(TOKENS["single"] + "\n")
    for role, token in TOKENS.items():
        (tmp_path / f"{role}.token").write_text(token + "\n")
    with running_daemon(store, state, extra=["--roles-file", str(roles),
                                             "--token-file", str(single)],
                         token=TOKENS["admin"]) as d:
        def call(role: str, method: str, request: object) -> object:
            return d.call(method, request, metadata=[("authorization",
                                                      f"Bearer {TOKENS[role]}")])

        backfill = pb.StartBackfillRequest(
            workflow="daily", start_time=_ts("2026-01-01T00:00:00Z"),
            end_time=_ts("2026-01-02T02:00:00Z"))
        pause = pb.SetSchedulingStatusRequest(workflow="daily", enabled=False)
        # every role reads
        for role in TOKENS:
            assert call(role, "ListWorkflows", pb.ListWorkflowsRequest()).workflows
        # the viewer: reads and dry runs only, told which role it needs
        code, message = _code(lambda: call("viewer", "StartRun",
                                           pb.StartRunRequest(workflow="chain")))
        assert code is grpc.StatusCode.PERMISSION_DENIED
        assert message == ("StartRun needs the role operator (or higher); the token grafana"
                           " has the role viewer")
        for method, request in (("SetSchedulingStatus", pause),
                                ("StartBackfill", backfill),
                                ("CancelRun", pb.CancelRunRequest(run_id="wr_x"))):
            assert _code(lambda m=method, r=request: call("viewer", m, r))[0] \
                is grpc.StatusCode.PERMISSION_DENIED, method
        backfill.dry_run = True
        assert len(call("viewer", "StartBackfill", backfill).logical_times) == 2
        assert not call("viewer", "ListBackfills", pb.ListBackfillsRequest()).backfills
        # the operator and both admins change things
        failed = call("operator", "StartRun", pb.StartRunRequest(
            workflow="chain", params=_params(code="3"))).run.run_id
        assert d.wait_run(failed).status == pb.RUN_STATUS_FAILED
        assert not call("operator", "SetSchedulingStatus", pause).workflow.scheduling_enabled
        for role in ("admin", "single"):
            run_id = call(role, "StartRun", pb.StartRunRequest(workflow="chain")).run.run_id
            assert d.wait_run(run_id).status == pb.RUN_STATUS_SUCCEEDED
        # a resume: the viewer may ask the dry run, not start it; a stream stays a read
        resume = pb.ResumeRunRequest(run_id=failed, node_names=["b"], dry_run=True)
        assert list(call("viewer", "ResumeRun", resume).node_names) == ["b"]
        resume.dry_run = False
        code, message = _code(lambda: call("viewer", "ResumeRun", resume))
        assert code is grpc.StatusCode.PERMISSION_DENIED and "with dry_run set" in message
        assert call("operator", "ResumeRun", resume).run_id
        # a body that does not decode has no dry_run: INVALID_ARGUMENT for every role
        for method in ("StartBackfill", "ResumeRun"):
            raw = d.channel.unary_unary(f"/flowplan.v1.WorkflowService/{method}",
                                        request_serializer=lambda b: b)
            for role in ("viewer", "operator"):
                code, message = _code(lambda r=role, raw=raw: raw(
                    b"\xff\xff\xff", timeout=10,
                    metadata=[("authorization", f"Bearer {TOKENS[r]}")]))
                assert code is grpc.StatusCode.INVALID_ARGUMENT, (method, role, message)
                assert f"not a valid flowplan.v1.{method}Request" in message
        events = list(d.stub.WatchRun(pb.WatchRunRequest(run_id=failed), timeout=10,
                                      metadata=[("authorization",
                                                 f"Bearer {TOKENS['viewer']}")]))
        assert events
        # an unknown token, none, or another scheme: UNAUTHENTICATED, even for a read
        for metadata in ([("authorization", "Bearer " + "x" * 20)], [],
                         [("authorization", f"Basic {TOKENS['admin']}")]):
            assert _code(lambda m=metadata: d.call(
                "ListWorkflows", pb.ListWorkflowsRequest(), metadata=m))[0] \
                is grpc.StatusCode.UNAUTHENTICATED

        # the CLI: exit 1, the message, and a hint that names the token file
        viewer_file = tmp_path / "viewer.token"
        result = flowplan("run", "chain", "--address", d.address, "--token-file",
                          viewer_file, check=False)
        assert result.returncode == 1, result.stderr
        assert result.stderr.splitlines()[:2] == [
            "error: PERMISSION_DENIED: StartRun needs the role operator (or higher); the"
            " token grafana has the role viewer",
            f"hint: the daemon knows the token in {viewer_file}, but its role may not do"
            " this; use a token with the role named above (the daemon's --roles-file)"]
        assert flowplan("workflows", "--address", d.address, "--token-file",
                        viewer_file).returncode == 0
        # flowplan.client: its ClientError with the code
        with Client(d.address, token=TOKENS["viewer"]) as client:
            assert client.get_workflow("chain").name == "chain"
            with pytest.raises(ClientError) as caught:
                client.set_scheduling("daily", enabled=True)
            assert caught.value.code is grpc.StatusCode.PERMISSION_DENIED
            assert "needs the role operator" in caught.value.message

        log = d.output()
        assert '"roles": {"admin": 2, "operator": 1, "viewer": 1}' in log
        assert "permission denied" in log
        assert not any(token in log for token in TOKENS.values())


def _params(**values: str) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def test_sighup_reloads_the_tokens_and_keeps_them_on_a_bad_file(make_repo: MakeRepo,
                                                                  tmp_path: Path) -> None:
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo(FILES), store)
    roles = tmp_path / "roles"
    roles.write_text(ROLES_FILE)
    new_token = "n" * 20 + "-new-operator"
    with running_daemon(store, state, extra=["--roles-file", str(roles)],
                        token=TOKENS["admin"]) as d:
        def code(token: str, method: str = "ListWorkflows",
                 request: object = None) -> grpc.StatusCode:
            try:
                d.call(method, request or pb.ListWorkflowsRequest(),
                       metadata=[("authorization", f"Bearer {token}")])
            except grpc.RpcError as err:
                return err.code()  # type: ignore[attr-defined, no-any-return]
            return grpc.StatusCode.OK

        assert code(new_token) is grpc.StatusCode.UNAUTHENTICATED
        # rotation: the viewer's token goes, a new operator token comes; no restart
        roles.write_text(f"admin alice {TOKENS['admin']}\noperator ci-2 {new_token}\n")
        d.process.send_signal(signal.SIGHUP)
        wait_until(lambda: code(new_token) is grpc.StatusCode.OK, "the new token accepted")
        assert code(TOKENS["viewer"]) is grpc.StatusCode.UNAUTHENTICATED
        pause = pb.SetSchedulingStatusRequest(workflow="daily", enabled=False)
        assert code(new_token, "SetSchedulingStatus", pause) is grpc.StatusCode.OK
        assert '"roles": {"admin": 1, "operator": 1}' in d.output()
        # a file that cannot be used: logged with its line, the tokens stay as they were
        roles.write_text(f"admin alice {TOKENS['admin']}\nviewer ci-2\n")
        d.process.send_signal(signal.SIGHUP)
        wait_until(lambda: f"the tokens stay as they were: {roles}:2: has 2 field(s)"
                   in d.output(), "the refused reload logged")
        assert code(new_token, "SetSchedulingStatus", pause) is grpc.StatusCode.OK
        assert d.process.poll() is None
        log = d.output()
        assert new_token not in log and not any(t in log for t in TOKENS.values())
