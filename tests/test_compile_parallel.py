"""A check spread over worker processes reports exactly what a check in one process does."""

from __future__ import annotations

from flowplan.compiler.compile import PARALLEL_MIN_FILES, compile_repo
from flowplan.compiler.repo import read_repo

GOOD = ("name: w{i}\nnodes:\n  - {{source: jobs/a.sh, args: ['${{ds}}']}}\n"
        "  - {{name: b, command: x, upstream: [a]}}\n")
BAD = [
    "name: w{i}\nnodes:\n  - {{source: jobs/missing.sh}}\n",          # source missing
    "name: w{i}\nnodes:\n  - {{name: a, command: 'echo ${{dss}}'}}\n",  # template
    "name: w{i}\nnodes:\n  - {{name: a, comand: x}}\n",                 # unknown key
    "name: w0\nnodes:\n  - {{name: a, command: x}}\n",                  # duplicate name
    "name: w{i}\nnodes: [\n",                                           # syntax
    "name: w{i}\nnodes:\n  - {{source: jobs/q.sql}}\n",                 # template in .sql
]


def test_parallel_check_equals_serial_check(make_repo):
    files = {f"workflows/w{i:03}.yaml": (BAD[i % len(BAD)] if i % 7 == 3 else GOOD).format(i=i)
             for i in range(PARALLEL_MIN_FILES + 36)}
    files |= {"jobs/a.sh": "echo a\n", "jobs/q.sql": "SELECT '${params.nope}';\n"}
    repo = read_repo(make_repo(files))
    serial = compile_repo(repo, plans=False, workers=1)
    parallel = compile_repo(repo, plans=False, workers=2)
    assert len(serial.diagnostics) >= 6
    assert {d.code.value for d in serial.diagnostics} >= {
        "FP301", "FP502", "FP101", "FP105", "FP001", "FP503"}
    assert parallel.diagnostics == serial.diagnostics
    assert parallel.failed == serial.failed
    assert parallel.uncertain_files == serial.uncertain_files
