"""docs/workflow-reference.md is generated from the models and names every key they have."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT

from flowplan.compiler.models import (
    DefaultsSpec,
    FailureNotifySpec,
    NodeSpec,
    NotifySpec,
    QueueSpec,
    ScheduleSpec,
    SettingsSpec,
    WorkflowHeaderSpec,
)
from flowplan.compiler.reference import REFERENCE_PATH, REGENERATE, SECTIONS, reference_markdown

MODELS = (WorkflowHeaderSpec, NodeSpec, ScheduleSpec, QueueSpec, DefaultsSpec, SettingsSpec,
          FailureNotifySpec, NotifySpec)


def test_committed_reference_is_generated_from_the_models():
    assert REFERENCE_PATH == ROOT / "docs" / "workflow-reference.md"
    committed = REFERENCE_PATH.read_text(encoding="utf-8")
    assert committed == reference_markdown(), (
        f"docs/workflow-reference.md differs from the models: run `{REGENERATE}` and commit it")


def _sections(text: str) -> dict[str, str]:
    """Each `## ` section's text by the model it names (`Model: flowplan.compiler.models.X`)."""
    found = {}
    for part in text.split("\n## ")[1:]:
        model = re.search(r"Model: `flowplan\.compiler\.models\.(\w+)`", part)
        assert model, part[:80]
        found[model.group(1)] = part
    return found


def test_every_field_of_every_model_has_a_row_in_its_section():
    sections = _sections(reference_markdown())
    for model in MODELS:
        # the workflow file's section documents WorkflowSpec: the header with typed nodes
        name = "WorkflowSpec" if model is WorkflowHeaderSpec else model.__name__
        assert name in sections, f"no section for {name}"
        rows = {m.group(1) for m in re.finditer(r"^\| `([a-z_]+)` \|", sections[name], re.M)}
        assert rows == set(model.model_fields), f"{name}: {rows ^ set(model.model_fields)}"


def test_links_between_sections_resolve():
    text = reference_markdown()
    anchors = {m.group(1) for m in re.finditer(r"\]\(#([^)]+)\)", text)}
    titles = {"".join(c for c in s.title.lower() if c.isalnum() or c in " -_").replace(" ", "-")
              for s in SECTIONS}
    assert anchors <= titles, anchors - titles


def test_regenerating_writes_into_the_clone_it_is_run_from(tmp_path):
    """Not into the tree the installed package points at (another clone's docs/)."""
    before = REFERENCE_PATH.stat().st_mtime_ns
    helped = subprocess.run([sys.executable, "-m", "flowplan.compiler.reference", "--help"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: ")
    nowhere = subprocess.run([sys.executable, "-m", "flowplan.compiler.reference"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert nowhere.returncode == 2 and "docs/ does not exist: run it from the repository root" \
        in nowhere.stderr
    (tmp_path / "docs").mkdir()
    made = subprocess.run([sys.executable, "-m", "flowplan.compiler.reference"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "docs/workflow-reference.md").read_text(encoding="utf-8") == (
        reference_markdown())
    assert REFERENCE_PATH.stat().st_mtime_ns == before
