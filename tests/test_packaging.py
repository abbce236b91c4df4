"""Every runtime dependency is bounded above, and what is installed lies inside the bounds.

`.ci/run` installs the newest versions the bounds allow into a new virtual environment on
every run, so a dependency's new release is met in CI first; an upper bound keeps a new major
(protobuf's generated code is tied to its major) from reaching users untested.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import version

from conftest import ROOT
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
