"""Every runtime dependency is bounded above, and what is installed lies inside the bounds.

`.ci/run` installs the newest versions the bounds allow into a new virtual environment on
every run, so a dependency's new release is met in CI first; an upper bound keeps a new major
(protobuf's generated code is tied to its major) from reaching users untested.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

from conftest import FLOWPLAN, ROOT
from packaging.requirements import Requirement


def _runtime() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(line) for line in project["dependencies"]]


def test_every_runtime_dependency_has_an_upper_bound() -> None:
    unbounded = [str(r) for r in _runtime()
                 if not any(spec.operator in {"<", "<=", "==", "~="} for spec in r.specifier)]
    assert not unbounded, f"add an upper bound (the next major) to: {unbounded}"


def test_installed_versions_lie_inside_the_bounds() -> None:
    outside = {r.name: version(r.name) for r in _runtime()
               if not r.specifier.contains(version(r.name), prereleases=True)}
    assert not outside, f"installed versions outside pyproject.toml's ranges: {outside}"


def test_the_wheel_installs_one_flowplan_namespace(tmp_path: Path) -> None:
    """`pip wheel .` gives `flowplan.compiler`, `flowplan.daemon` and `flowplan.v1`, and no
    top-level `compiler` or `daemon` to collide with other distributions (python-daemon)."""
    # from a copy without build/: setuptools packs what an earlier build left there
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "*.egg-info", "__pycache__", ".flowplan", ".*_cache",
        ".hypothesis", ".mypy-tree"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                            "--no-build-isolation", "--wheel-dir", str(tmp_path / "wheel"),
                            str(source)], check=True, capture_output=True, text=True,
                           timeout=300)
    # an install shows setuptools' warnings: a data folder not listed as a package
    assert "absent from the `packages` configuration" not in built.stdout + built.stderr
    [wheel] = (tmp_path / "wheel").glob("flowplan-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        names = set(archive.namelist())
    assert tops == {"flowplan", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    assert {"flowplan/compiler/schemas/plan.schema.json", "flowplan/compiler/py.typed",
            "flowplan/v1/workflow_service.proto", "flowplan/py.typed"} <= names
    data = {f"flowplan/{path.relative_to(ROOT).as_posix()}"  # the console's, every file
            for folder in ("daemon/server/static", "daemon/server/templates",
                           "compiler/schemas") for path in (ROOT / folder).iterdir()}
    assert not data - names, f"not in the wheel: {sorted(data - names)}"
    sources = {f"flowplan/{path.relative_to(ROOT).as_posix()}"
               for folder in ("compiler", "daemon") for path in (ROOT / folder).rglob("*.py")}
    assert not sources - names, f"not in the wheel (list the package in pyproject.toml):" \
                                f" {sorted(sources - names)}"
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    probe = ("import importlib.util as u, flowplan.daemon.cli as cli, flowplan.compiler.plan;"
             " print(cli.__file__); print(u.find_spec('compiler'), u.find_spec('daemon'))")
    shown = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                           text=True, check=True, env={**os.environ, "PYTHONPATH": str(target)})
    where, missing = shown.stdout.splitlines()
    assert where.startswith(str(target)), where
    assert missing == "None None"
    version = subprocess.run([*FLOWPLAN, "--version"],
                             cwd=tmp_path, capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(target)})
    assert version.stdout.startswith("flowplan ")
