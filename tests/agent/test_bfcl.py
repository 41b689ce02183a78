"""BFCL v4 as test material: every function registers, every ground-truth call validates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harmonygraph.tools import tools_from_schemas
from harmonygraph.tools.schema import identifier

CATEGORIES = ["simple_python", "multiple", "parallel", "irrelevance"]


def _pick(options: dict, schema: dict) -> dict:
    """One concrete call from BFCL's answer format. Each argument lists its acceptable
    values, "" meaning "may be omitted"; nested objects list theirs the same way. An
    optional argument that may be omitted is omitted; otherwise the first real value is
    taken (a few rows list "" first for a required argument)."""
    required = set(schema.get("required", []))
    props = schema.get("properties", {})
    args = {}
    for key, values in options.items():
        real = [v for v in values if v != ""]
        if not real or ("" in values and key not in required):
            continue
        args[key] = _concrete(real[0], props.get(key, {}))
    return args


def _concrete(value: object, schema: dict) -> object:
    if isinstance(value, dict):
        return _pick(value, schema)
    if isinstance(value, list):
        return [_concrete(v, schema.get("items", {})) for v in value]
    return value


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_function_registers_and_every_answer_validates(corpora: Path, category: str) -> None:
    rows = _rows(corpora / "bfcl" / f"BFCL_v4_{category}.json")
    answers_path = corpora / "bfcl" / "possible_answer" / f"BFCL_v4_{category}.json"
    answers = (
        {r["id"]: r["ground_truth"] for r in _rows(answers_path)} if answers_path.exists() else {}
    )
    registered = validated = 0
    for row in rows:
        tools = {t.original_name: t for t in tools_from_schemas(row["function"], lambda n, a: None)}
        registered += len(tools)
        for t in tools.values():
            assert t.name == identifier(t.original_name) and t.name.isidentifier()
        for gt_call in answers.get(row["id"], []):
            ((name, options),) = gt_call.items()
            tool = tools[name]
            tool.validate(json.dumps(_pick(options, tool.parameters or {})))
            validated += 1
    assert registered >= len(rows)
    if answers:
        assert validated >= len(answers)
