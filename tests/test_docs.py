"""The docs name every diagnostic code and every key of the workflow format."""

from __future__ import annotations

import subprocess

from conftest import ROOT

from flowplan.compiler.diagnostics import Code
from flowplan.compiler.models import (
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


def test_the_project_cites_no_document_its_users_do_not_have():
    """docs/ is the contract: no file of the project points at the founding specification."""
    marker = "SPEC" + ".md"  # spelled apart so that this file does not match itself
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    citing = [name for name in files if (ROOT / name).is_file()
              and marker in (ROOT / name).read_bytes().decode("utf-8", "replace")]
    assert not citing, f"these files cite {marker}: {citing}"
