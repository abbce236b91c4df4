"""A commit read from git objects (`Git.exported`, `compile_commit`): only what the compiler
reads is written, a file no further than the compiler reads it, and the result is what
`flowplan check` says of the same files in a working tree. Real git repositories."""

from __future__ import annotations

import os
import subprocess
import tracemalloc
from pathlib import Path

from conftest import ROOT
from test_hooks import git_home  # noqa: F401 - autouse: a HOME of our own for git

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.diagnostics import Code
from flowplan.compiler.git import READ_LIMIT, Git, compile_commit
from flowplan.compiler.parsing import MAX_FILE_BYTES
from flowplan.compiler.repo import MAX_SOURCE_BYTES, read_repo

POINTER = ("version https://git-lfs.github.com/spec/v1\n"
           "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
           "size 48213\n")


def commit(clone: Path, files: dict[str, str | bytes], links: dict[str, str] | None = None,
           executable: tuple[str, ...] = ()) -> tuple[Git, str]:
    """Write `files` and `links` (path -> target) into a new repository and commit them."""
    subprocess.run(["git", "init", "--quiet", str(clone)], check=True)
    for relative, content in files.items():
        path = clone / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    for relative in executable:
        (clone / relative).chmod(0o755)
    for relative, target in (links or {}).items():
        (clone / relative).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, clone / relative)
    for args in (["add", "--all"], ["commit", "--quiet", "-m", "files"]):
        subprocess.run(["git", *args], cwd=clone, check=True, capture_output=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, check=True,
                         capture_output=True, text=True).stdout.strip()
    return Git.open(clone / ".git"), sha


def written(root: Path) -> set[str]:
    """Every file, symlink and folder below `root`, by relative path."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_as_working_tree(clone: Path, git: Git, sha: str, *, workers: int = 1) -> None:
    """Diagnostics and plans from the commit's objects are those of its working tree."""
    on_disk = compile_repo(read_repo(clone), plans=workers == 1, workers=workers)
    from_git = compile_commit(git, sha, plans=workers == 1, workers=workers)
    assert [str(d) for d in from_git.diagnostics] == [str(d) for d in on_disk.diagnostics]
    assert [p.to_json() for p in from_git.plans] == [p.to_json() for p in on_disk.plans]
    assert (from_git.failed, from_git.workflow_files) == (on_disk.failed,
                                                          on_disk.workflow_files)


def test_files_nothing_reads_are_not_written(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {f"data/part{i}/row{j}.csv": f"{i},{j}\n"
                                     for i in range(20) for j in range(20)}
    files.update({
        "data/big.bin": b"\0" * (READ_LIMIT + 1000),
        "workflows/w.yaml": "name: w\nnodes:\n  - source: jobs/run.py\n",
        "jobs/run.py": "print('run')\n",
        "jobs/other.py": "print('other')\n",
    })
    git, sha = commit(tmp_path / "clone", files, links={"data/latest": "part3"})
    with git.exported(sha) as tree:
        assert written(tree.root) == {"data", "data/latest", "workflows", "workflows/w.yaml"}
        compile_repo(tree.snapshot())
        assert written(tree.root) == {"data", "data/latest", "workflows", "workflows/w.yaml",
                                      "jobs", "jobs/run.py"}
    assert_as_working_tree(tmp_path / "clone", git, sha)


def test_a_file_over_every_limit_is_written_and_held_no_further_than_read(
        tmp_path: Path) -> None:
    huge = b"# padding\n" * (READ_LIMIT // 10 + 100)
    git, sha = commit(tmp_path / "clone", {
        "workflows/huge.yaml": huge,
        "workflows/w.yaml": "name: w\nnodes:\n  - source: jobs/huge.py\n",
        "jobs/huge.py": huge,
    })
    tracemalloc.start()
    try:
        with git.exported(sha) as tree:
            _, peak = tracemalloc.get_traced_memory()
            assert (tree.root / "workflows" / "huge.yaml").stat().st_size == READ_LIMIT + 1
            result = compile_repo(tree.snapshot())
            assert not (tree.root / "jobs" / "huge.py").exists()  # its size says enough
    finally:
        tracemalloc.stop()
    assert peak < READ_LIMIT // 4  # a chunk at a time, not the blob
    assert [(d.file, d.code) for d in result.diagnostics] == [
        ("workflows/huge.yaml", Code.FILE_TOO_LARGE), ("workflows/w.yaml", Code.SOURCE_NOT_TEXT)]
    assert f"is {len(huge)} bytes; at most {MAX_SOURCE_BYTES}" in result.diagnostics[1].message
    assert_as_working_tree(tmp_path / "clone", git, sha)


SHAPES = """\
name: shapes
nodes:
  - {name: plain, source: jobs/run.sh}
  - {name: through_folder_link, source: lib/run.sh}
  - {name: through_file_link, source: jobs/link.py}
  - {name: folder, type: shell, source: jobs}
  - {name: root, type: shell, source: .}
  - {name: below_a_file, type: shell, source: jobs/run.sh/x}
  - {name: dangling, source: jobs/dangling.py}
  - {name: loop, source: jobs/loop.py}
  - {name: escape, source: jobs/escape.sh}
  - {name: dotdot, source: jobs/../scripts/real.py}
  - {name: big, source: jobs/big.py}
  - {name: lfs, source: jobs/model.py}
  - {name: missing, source: nowhere/x.py}
"""


def test_every_shape_of_path_compiles_as_in_a_working_tree(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    git, sha = commit(clone, {
        "conf/flowplan.yaml": (ROOT / "flowplan.yaml").read_text(),
        "flows/shapes.yaml": SHAPES,
        "flows/sub/b.yaml": "name: b\nnodes:\n  - source: scripts/real.py\n",
        "flows/.hidden/c.yaml": "name: c\nnodes: [oops\n",
        "flows/huge.yaml": b"#\n" * (MAX_FILE_BYTES // 2 + 1),
        "flows/notes.txt": "not a workflow\n",
        "other/w.yaml": "name: linked\nnodes:\n  - name: a\n    command: echo a\n",
        "jobs/run.sh": "echo run\n",
        "jobs/big.py": b"#\n" * (MAX_SOURCE_BYTES // 2 + 1),
        "jobs/model.py": POINTER,
        "scripts/real.py": "print('real')\n",
    }, links={
        "flowplan.yaml": "conf/flowplan.yaml",
        "workflows": "flows",
        "flows/linked.yaml": "../other/w.yaml",
        "flows/folder.yaml": "../scripts",
        "flows/stolen.yaml": "/etc/passwd",
        "lib": "jobs",
        "jobs/link.py": "../scripts/real.py",
        "jobs/dangling.py": "missing.py",
        "jobs/loop.py": "loop.py",
        "jobs/escape.sh": "/etc/hostname",
    }, executable=("jobs/run.sh",))
    assert_as_working_tree(clone, git, sha)
    assert [d.code.value for d in compile_commit(git, sha).diagnostics] == [  # for the record
        "FP012", "FP002", "FP302", "FP302", "FP301", "FP301", "FP301", "FP303", "FP304",
        "FP305", "FP301", "FP012"]
    with git.exported(sha) as tree:
        assert tree.read("lib/run.sh") == b"echo run\n"
        assert os.access(tree.root / "jobs" / "run.sh", os.X_OK)
        assert not os.access(tree.root / "scripts" / "real.py", os.X_OK)
        compile_repo(tree.snapshot())
        assert not (tree.root / "flows" / "notes.txt").exists()


def test_workers_read_sources_as_one_process_does(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        f"workflows/w{i:03}.yaml": f"name: w{i}\nnodes:\n  - source: jobs/j{i % 7}.py\n"
        for i in range(70)}
    files.update({f"jobs/j{i}.py": f"print({i})\n" for i in range(5)})
    files["jobs/j5.py"] = POINTER
    files["jobs/j6.py"] = b"#\n" * (MAX_SOURCE_BYTES // 2 + 1)
    git, sha = commit(tmp_path / "clone", files)
    assert_as_working_tree(tmp_path / "clone", git, sha, workers=2)
    result = compile_commit(git, sha, plans=False, workers=2)
    assert {d.code for d in result.diagnostics} == {Code.SOURCE_LFS_POINTER,
                                                    Code.SOURCE_NOT_TEXT}
    assert len(result.failed) == 20
