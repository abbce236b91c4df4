"""The docs name every diagnostic code and every key of the workflow format."""

from __future__ import annotations

import json
import subprocess

import yaml
from conftest import ROOT

from flowplan.compiler.compile import compile_repo
from flowplan.compiler.diagnostics import Code
from flowplan.compiler.models import (
    DefaultsSpec,
    NodeSpec,
    QueueSpec,
    ScheduleSpec,
    WorkflowHeaderSpec,
)
from flowplan.compiler.repo import read_repo


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


def _yaml_blocks(text: str) -> list[str]:
    return [block.split("```", 1)[0] for block in text.split("```yaml\n")[1:]]


def test_the_queue_settings_shown_in_docs_spark_compile(tmp_path):
    """A block that is a whole `flowplan.yaml` compiles as one; one that adds queues compiles
    beside the shipped flowplan.yaml's."""
    shipped = yaml.safe_load((ROOT / "flowplan.yaml").read_text(encoding="utf-8"))
    blocks = _yaml_blocks((ROOT / "docs" / "spark.md").read_text(encoding="utf-8"))
    assert len(blocks) == 2
    for index, block in enumerate(blocks):
        repo = tmp_path / str(index)
        (repo / "workflows").mkdir(parents=True)
        if block.startswith("# flowplan.yaml"):
            settings = block
        else:
            merged = dict(shipped, queues={**shipped["queues"], **yaml.safe_load(block)["queues"]})
            settings = json.dumps(merged)  # JSON is YAML
        (repo / "flowplan.yaml").write_text(settings, encoding="utf-8")
        queue = next(iter(yaml.safe_load(block)["queues"].keys() - {"default"}))
        (repo / "jobs").mkdir()
        (repo / "jobs" / "job.py").write_text("print('hi')\n", encoding="utf-8")
        (repo / "workflows" / "w.yaml").write_text(
            f"name: w\nnodes:\n  - name: a\n    source: jobs/job.py\n    queue: {queue}\n",
            encoding="utf-8")
        result = compile_repo(read_repo(repo))
        assert [str(d) for d in result.diagnostics] == [], block
        assert [plan.workflow for plan in result.plans] == ["w"]
