"""Secrets in what a real `flowplan serve` shows: `flowplan logs` / GetNodeLog mask a secret
that straddles the 64 KiB chunk boundary, one an offset falls inside, and the start of one a
running attempt has only begun to write; rendered values of templated `env` entries are
secrets too."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import FLOWPLAN, ROOT, MakeRepo, wait_until
from daemon_harness import Daemon, publish, running_daemon
from google.protobuf import json_format, struct_pb2

from flowplan.v1 import workflow_service_pb2 as pb

SECRET = "t0ps3cret-straddles"
PAD = 65536 - 5  # the secret's first 5 bytes end the first 64 KiB chunk

FILES = {
    "workflows/leak.yaml": """
        name: leak
        params: {db_password: "", marker: ""}
        nodes:
          - name: straddle
            command: printf '%0PADd' 0 | tr 0 A; printf '%s' "${params.db_password}"; echo BB
          - name: slow
            command: |
              printf 'AAAAt0ps'
              while [ ! -e "${params.marker}" ]; do sleep 0.05; done
              printf '3cret-straddles\\n'
        """.replace("PAD", str(PAD)),
    "workflows/templated.yaml": """
        name: templated
        params: {suffix: "", region: eu}
        nodes:
          - name: use
            env: {API_KEY: "k${attempt}-${params.suffix}", REGION: "${params.region}"}
            command: echo "key=$API_KEY region=$REGION"; exit 1
            retries: 1
            retry_delay: 0s
        """,
    "workflows/nested.yaml": """
        name: nested
        params:
          db: {host: db.example, password: N3sted-s3cret, replicas: [{api_key: r3plica-key}]}
        nodes:
          - name: connect
            command: echo "host=${params.db.host} pw=${params.db.password}
              replica=${params.db.replicas[0].api_key}"
        """,
}


def logs(d: Daemon, *args: str) -> bytes:
    """`flowplan logs` as a user runs it: the raw bytes it writes to stdout."""
    done = subprocess.run([*FLOWPLAN, "logs", *args, "--address",
                           d.address], capture_output=True, cwd=ROOT, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return done.stdout


def chunks(d: Daemon, run_id: str, node: str, offset: int = 0) -> list[tuple[int, bytes]]:
    return [(c.offset, c.data) for c in d.stub.GetNodeLog(pb.GetNodeLogRequest(
        run_id=run_id, node_name=node, offset=offset), timeout=10)]


def start(d: Daemon, workflow: str, **values: str) -> str:
    params = struct_pb2.Struct()
    params.update(values)
    return str(d.call("StartRun", pb.StartRunRequest(workflow=workflow, params=params))
               .run.run_id)


def test_logs_mask_across_chunks_offsets_and_a_running_write(make_repo: MakeRepo,
                                                             tmp_path: Path) -> None:
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo(FILES), store)
    marker = tmp_path / "marker"
    with running_daemon(store, state) as d:
        run_id = start(d, "leak", db_password=SECRET, marker=str(marker))
        masked = b"*" * len(SECRET)

        # a running attempt has written the first bytes of the secret: they are held back
        raw = state / "runs" / run_id / "slow" / "1" / "log"
        wait_until(lambda: raw.exists() and raw.read_bytes() == b"AAAAt0ps",
                   "the slow node's first write")
        assert chunks(d, run_id, "slow") == [(0, b"AAAA")]
        marker.touch()
        d.wait_run(run_id)
        assert logs(d, run_id, "slow") == b"AAAA" + masked + b"\n"

        whole = b"A" * PAD + masked + b"BB\n"
        assert logs(d, run_id, "straddle") == whole
        served = chunks(d, run_id, "straddle")
        assert [offset for offset, _ in served] == [0, 65536]
        assert served[0][1][-5:] == b"*****"  # the secret's start ends the first chunk
        for offset in (PAD + 7, 65536, -10):  # inside the secret, at the boundary, the end
            start_at = offset if offset >= 0 else len(whole) + offset
            assert b"".join(data for _, data in chunks(d, run_id, "straddle", offset)) \
                == whole[start_at:]
        resumed = chunks(d, run_id, "straddle", served[0][0] + len(served[0][1]))
        assert resumed == [(65536, whole[65536:])]  # the next offset it was given still works


def test_rendered_values_of_templated_env_secrets_are_masked(make_repo: MakeRepo,
                                                             tmp_path: Path) -> None:
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo(FILES), store)
    with running_daemon(store, state) as d:
        run_id = start(d, "templated", suffix="sw0rdfish")
        run = d.wait_run(run_id)
        assert [a.number for a in run.nodes[0].attempts] == [1, 2]
        for attempt in ("1", "2"):  # the value differs per attempt: each one is masked
            assert logs(d, run_id, "use", "--attempt", attempt) \
                == b"key=" + b"*" * len(f"k{attempt}-sw0rdfish") + b" region=eu\n"


def test_a_secret_named_key_inside_an_object_param_is_a_secret(make_repo: MakeRepo,
                                                                tmp_path: Path) -> None:
    """`db: {password: ...}`: masked in GetWorkflow's and GetRun's params, at any depth
    (a list's objects too), and in the log; the other keys stay as they are."""
    store, state = tmp_path / "store", tmp_path / "state"
    publish(make_repo(FILES), store)
    with running_daemon(store, state) as d:
        shown = {"host": "db.example", "password": "********",
                 "replicas": [{"api_key": "********"}]}
        workflow = d.call("GetWorkflow", pb.GetWorkflowRequest(workflow="nested")).workflow
        assert json_format.MessageToDict(workflow.params) == {"db": shown}
        run_id = start(d, "nested")
        run = d.wait_run(run_id)
        assert run.status == pb.RUN_STATUS_SUCCEEDED
        assert json_format.MessageToDict(run.params) == {"db": shown}
        assert logs(d, run_id, "connect") == (
            b"host=db.example pw=" + b"*" * len("N3sted-s3cret")
            + b" replica=" + b"*" * len("r3plica-key") + b"\n")
