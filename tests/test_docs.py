"""The docs name every diagnostic code and every key of the workflow format."""

from __future__ import annotations

from conftest import ROOT

from compiler.diagnostics import Code
from compiler.models import (
    DefaultsSpec,
    NodeSpec,
    QueueSpec,
    ScheduleSpec,
    WorkflowHeaderSpec,
)


def test_every_diagnostic_code_is_documented():
    text = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    missing = [code.value for code in Code if f"`{code.value}`" not in text]
    assert not missing


def test_every_workflow_key_is_documented():
    text = (ROOT / "docs" / "workflows.md").read_text(encoding="utf-8")
    for model in (WorkflowHeaderSpec, NodeSpec, ScheduleSpec, QueueSpec, DefaultsSpec):
        for key in model.model_fields:
            assert f"`{key}`" in text or f".{key}`" in text, f"{model.__name__}.{key}"
