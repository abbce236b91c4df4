"""docs/workflow-reference.md is generated from the models and names every key they have."""

from __future__ import annotations

import re

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
