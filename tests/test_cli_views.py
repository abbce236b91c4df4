"""What the `flowplan` client commands show of a real daemon (`flowplan serve` as a process,
the CLI as a process): tag filters over workflow and node tags, node tags in `status`, the
`runs` columns, `backfills` / `backfill-status`, and the notification outbox."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import FLOWPLAN, ROOT, MakeRepo, wait_until
from daemon_harness import publish, running_daemon

from flowplan.v1 import workflow_service_pb2 as pb

FILES = {
    "flowplan.yaml": "queues:\n  default: {concurrency: 4}\n",
    "workflows/chain.yaml": """
        name: chain
        tags: {team: data}
        on_failure: {email: [oncall@example.com]}
        params: {code: "0"}
        nodes:
          - {name: a, command: "echo a", tags: {owner: bob}}
          - {name: b, command: "exit ${params.code}", upstream: [a]}
          - {name: c, command: "echo c", upstream: [b]}
        """,
    "workflows/daily.yaml": """
        name: daily
        schedule: {every: day, at: "02:00", timezone: UTC}
        max_active_runs: 2
        nodes:
          - {name: day, command: "echo ${ds}"}
        """,
}


def cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLOWPLAN, *args, "--address", address],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "COLUMNS": "250",
                               "PYTHONPATH": str(ROOT)})


def test_tags_runs_columns_backfills_and_notifications(make_repo: MakeRepo,
                                                       tmp_path: Path) -> None:
    store = tmp_path / "store"
    publish(make_repo(FILES), store, remarks="first")
    with running_daemon(store, tmp_path / "state") as d:
        failed = cli(d.address, "run", "chain", "--param", "code=3", "--remarks",
                     "first try\nmore", "--wait")
        assert failed.returncode == 1, failed.stdout + failed.stderr
        run_id = d.call("ListRuns", pb.ListRunsRequest(workflow="chain")).runs[0].run_id
        resumed = cli(d.address, "resume", run_id, "--node", "b", "--remarks", "again")
        assert resumed.returncode == 0, resumed.stderr
        new_id = resumed.stdout.split(" as ")[1].split(":")[0]
        d.wait_run(new_id)

        # --tag K matches any value; a node's tag finds its workflow's runs
        for tag in ("team", "owner=bob", "owner", "task_name=c"):
            runs = cli(d.address, "runs", "--tag", tag)
            assert runs.returncode == 0, (tag, runs.stderr)
            assert run_id in runs.stdout and new_id in runs.stdout, (tag, runs.stdout)
        assert cli(d.address, "runs", "--tag", "owner=alice").stdout == "no runs\n"
        assert cli(d.address, "runs", "--workflow", "daily").stdout == "no runs\n"
        # a name that names nothing is an error, not an empty list that hides the typo
        for args, said in [
                (("runs", "--workflow", "dialy", "--status", "failed"),
                 "NOT_FOUND: workflow 'dialy' does not exist (did you mean 'daily'?)"),
                (("runs", "--backfill", "bf_nope"), "NOT_FOUND: backfill bf_nope does not"),
                (("backfills", "--workflow", "chian"), "(did you mean 'chain'?)"),
                (("notifications", "--run", "wr_nope", "--json"), "NOT_FOUND: run wr_nope")]:
            wrong = cli(d.address, *args)
            assert (wrong.returncode, wrong.stdout) == (1, ""), (args, wrong)
            assert said in wrong.stderr, (args, wrong.stderr)

        # runs: the node summary, the run it resumes and the remarks' first line
        table = cli(d.address, "runs", "--workflow", "chain").stdout.splitlines()
        assert table[0].split() == ["RUN", "WORKFLOW", "STATUS", "TRIGGER", "LOGICAL", "TIME",
                                    "STARTED", "DURATION", "NODES", "PREVIOUS", "REMARKS"]
        first = next(line for line in table if line.startswith(run_id))
        assert "1 ok, 1 failed, 1 skipped" in first and first.endswith("first try")
        again = next(line for line in table if line.startswith(new_id))
        assert f"  {run_id}  again" in again
        listed = json.loads(cli(d.address, "runs", "--json", "--workflow", "chain").stdout)
        assert {"total": 3, "succeeded": 1, "failed": 1, "skipped": 1} in [
            r["node_counts"] for r in listed["runs"]]

        # status shows a node's own tags, and --tag keeps the nodes that have it
        status = cli(d.address, "status", run_id).stdout
        assert "└ tags owner=bob" in status and "team=data" in status.split("\n\n")[0]
        only = cli(d.address, "status", run_id, "--tag", "owner=bob").stdout.split("\n\n")[1]
        assert [line.split()[0] for line in only.splitlines()[1:-1]
                if not line.startswith(" ")] == ["a"]
        graph = d.call("GetRun", pb.GetRunRequest(run_id=run_id, include_graph=True)).run
        assert dict(graph.nodes[0].tags) == {"team": "data", "owner": "bob",
                                             "workflow_name": "chain", "task_name": "a"}

        # backfills and backfill-status
        assert cli(d.address, "backfills").stdout == "no backfills\n"
        started = cli(d.address, "backfill", "daily", "--from", "2026-05-01", "--to",
                      "2026-05-02", "--remarks", "May", "--wait")  # the 1st and 2nd
        assert started.returncode == 0, started.stdout + started.stderr
        backfill_id = started.stdout.split()[2].rstrip(":")
        backfills = cli(d.address, "backfills", "--workflow", "daily").stdout.splitlines()
        assert backfills[0].split()[:3] == ["BACKFILL", "WORKFLOW", "STATUS"]
        assert backfills[1].split()[:3] == [backfill_id, "daily", "SUCCEEDED"]
        assert "2/2" in backfills[1] and backfills[1].endswith("May")
        assert cli(d.address, "backfills", "--workflow", "chain").stdout == "no backfills\n"
        assert cli(d.address, "backfills", "--status", "failed").stdout == "no backfills\n"
        shown = cli(d.address, "backfill-status", backfill_id)
        assert shown.returncode == 0 and shown.stdout.startswith(
            f"backfill {backfill_id}  daily  SUCCEEDED")
        assert "2/2 finished (2 succeeded" in shown.stdout and "remarks    May" in shown.stdout
        missing = cli(d.address, "backfill-status", "bf_nope")
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr

        # the outbox: no SMTP here, so the failed run's e-mail is recorded, not sent
        notes = wait_until(lambda: "on_failure" in (out := cli(
            d.address, "notifications", "--run", run_id, "--body").stdout) and out,
            "the failed run's notification")
        lines = notes.splitlines()
        assert lines[0].split() == ["ID", "CREATED", "STATUS", "KIND", "ABOUT", "TO", "SUBJECT",
                                    "ERROR"]
        assert len([line for line in lines if not line.startswith(" ")]) == 2  # --run: one
        assert lines[1].split()[2:6] == ["NOT_SENT", "on_failure", run_id, "oncall@example.com"]
        assert lines[1].endswith("no SMTP server configured")
        assert any(line.startswith("    ") and "b" in line for line in lines[2:])  # --body
        as_json = json.loads(cli(d.address, "notifications", "--json",
                                 "--status", "not_sent").stdout)
        assert {n["run_id"] for n in as_json["notifications"]} <= {run_id, new_id}
        assert run_id in {n["run_id"] for n in as_json["notifications"]}
        assert cli(d.address, "notifications", "--status", "sent").stdout \
            == "no notifications\n"
