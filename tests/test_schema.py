"""The committed JSON Schemas match the models, and stay within draft-07."""

from __future__ import annotations

import json

import pytest

from flowplan.compiler.schema import SCHEMA_DIR, SCHEMAS, json_schema, schema_text


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_committed_schema_matches_models(kind):
    committed = (SCHEMA_DIR / f"{kind}.schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(kind), "run `python -m flowplan.compiler.schema` and commit"


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_schema_uses_no_draft_2020_constructs(kind):
    text = json.dumps(json_schema(kind))
    for construct in ("$defs", "prefixItems", "$dynamicRef", "unevaluatedProperties"):
        assert construct not in text


def test_workflow_schema_accepts_what_yaml_accepts():
    props = json_schema("workflow")["definitions"]["NodeSpec"]["properties"]
    timeout = json.dumps(props["timeout"])
    assert '"type": "string"' in timeout and '"type": "number"' in timeout
