"""JSON Schemas of the workflow file, `flowplan.yaml` and the plan, for editors and tools.

Generated from the models and committed under `compiler/schemas/`; a test fails when the
committed files drift from the models. Output is draft-07 (`definitions`, no `prefixItems`),
which yaml-language-server and most editors understand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from flowplan.compiler.models import SettingsSpec, WorkflowSpec
from flowplan.compiler.plan import Plan

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
SCHEMAS: dict[str, tuple[type[BaseModel], str]] = {
    "workflow": (WorkflowSpec, "flowplan workflow file"),
    "settings": (SettingsSpec, "flowplan.yaml repository settings"),
    "plan": (Plan, "flowplan plan artifact"),
}


def json_schema(kind: str) -> dict[str, Any]:
    """The draft-07 JSON Schema of `kind` (workflow, settings or plan)."""
    model, title = SCHEMAS[kind]
    schema = _draft07(model.model_json_schema(mode="validation"))
    return {"$schema": DRAFT_07, "title": title, **{k: v for k, v in schema.items()
                                                   if k != "title"}}


def schema_text(kind: str) -> str:
    return json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n"


def _draft07(node: Any) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$defs":
                out["definitions"] = _draft07(value)
            elif key == "$ref" and isinstance(value, str):
                out[key] = value.replace("#/$defs/", "#/definitions/")
            elif key == "prefixItems":  # a fixed-length tuple: draft-07 spells it items: [...]
                out["items"] = _draft07(value)
            else:
                out[key] = _draft07(value)
        return out
    if isinstance(node, list):
        return [_draft07(item) for item in node]
    return node


def write_all(folder: Path) -> list[Path]:
    """Regenerate the committed schema files (run `python -m flowplan.compiler.schema`)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in SCHEMAS:
        path = folder / f"{kind}.schema.json"
        path.write_text(schema_text(kind), encoding="utf-8")
        written.append(path)
    return written


SCHEMA_DIR = Path(__file__).parent / "schemas"

if __name__ == "__main__":
    for written_path in write_all(SCHEMA_DIR):
        print(written_path)
