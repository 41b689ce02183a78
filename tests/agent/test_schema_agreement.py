"""What the prompt shows a tool accepts, the validator accepts (issue #16, BFCL edge cases).

The three disagreements found in BFCL's live sets, each on real dev-set functions where
the dev sets have the class and on a schema built here where they do not, and a property
check over every dev BFCL function: every default, enum value and example the rendered
prompt shows validates when the model sends it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harmonygraph.harmony import DeveloperConfig, get_encoding
from harmonygraph.harmony.prompt import render_developer
from harmonygraph.tools import tools_from_schemas
from harmonygraph.tools.base import ArgumentError, SchemaTool
from harmonygraph.tools.schema import reconcile_schema
from openai_harmony import ToolNamespaceConfig

CATEGORIES = ["simple_python", "multiple", "parallel", "irrelevance"]


def _functions(corpora: Path) -> Iterator[dict[str, Any]]:
    for category in CATEGORIES:
        path = corpora / "bfcl" / f"BFCL_v4_{category}.json"
        for line in path.read_text().splitlines():
            if line.strip():
                yield from json.loads(line)["function"]


def _dev_function(corpora: Path, name: str, param: str) -> dict[str, Any]:
    """The dev-set function `name` whose parameter `param` declares a default."""
    for fn in _functions(corpora):
        if fn["name"] == name and "default" in fn["parameters"]["properties"].get(param, {}):
            return fn
    raise AssertionError(f"{name}({param}=...) is not in the dev BFCL sets")


def _tool(fn: dict[str, Any]) -> SchemaTool:
    (tool,) = tools_from_schemas([fn], lambda name, args: None)
    return tool


def _prompt(tools: list[SchemaTool]) -> str:
    ns = ToolNamespaceConfig(
        name="functions", description=None, tools=[t.description_for_model() for t in tools]
    )
    return get_encoding().decode(render_developer(DeveloperConfig(tools=(ns,))))


def _flat(text: str) -> str:
    return " ".join(text.split())


def _accepts(tool: SchemaTool, args: dict[str, Any]) -> bool:
    try:
        tool.validate(json.dumps(args))
    except ArgumentError:
        return False
    return True


# --- 1. a default of null on a parameter whose type has no null ------------------------


def test_null_default_shown_in_the_prompt_validates() -> None:
    """The live-set case: `movie_date?: string, // default: null` refused null."""
    tool = SchemaTool(
        "find_movies",
        "Find movies.",
        {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "movie_date": {"type": "string", "default": None, "description": "The date."},
            },
            "required": ["city"],
        },
        lambda args: None,
    )
    text = _flat(_prompt([tool]))
    assert "movie_date?: string | null, // default: null" in text
    assert _accepts(tool, {"city": "Berlin", "movie_date": None})
    assert _accepts(tool, {"city": "Berlin", "movie_date": "2024-05-01"})
    assert not _accepts(tool, {"city": "Berlin", "movie_date": 5})


def test_dev_bfcl_none_defaults_on_objects_and_arrays(corpora: Path) -> None:
    """The dev sets' form of the same class: `"default": "None"` on a dict and an array
    parameter; the prompt showed `// default: "None"`, which neither type accepts."""
    for name, param, sample in (
        ("generate_contract", "additional_details", {"clause": "x"}),
        ("find_restaurants", "dietary_requirements", ["vegan"]),
    ):
        fn = _dev_function(corpora, name, param)
        assert fn["parameters"]["properties"][param]["default"] == "None"
        tool = _tool(fn)
        assert tool.parameters is not None
        shown = tool.parameters["properties"][param]
        assert shown["default"] is None and "null" in shown["type"]
        assert f"{param}?: " in _prompt([tool]) and "// default: null" in _prompt([tool])
        base = _minimal(tool.parameters)
        assert _accepts(tool, {**base, param: None})
        assert _accepts(tool, {**base, param: sample})


# --- 2. a default outside its own enum -------------------------------------------------


def test_default_outside_its_enum_is_accepted() -> None:
    tool = SchemaTool(
        "sleep",
        "Sleep a while.",
        {
            "type": "object",
            "properties": {
                "amount": {"type": "integer"},
                "unit": {"type": "string", "enum": ["seconds", "milliseconds"], "default": "N/A"},
            },
            "required": ["amount"],
        },
        lambda args: None,
    )
    assert 'unit?: "seconds" | "milliseconds" | "N/A", // default: N/A' in _flat(_prompt([tool]))
    for unit in ("seconds", "milliseconds", "N/A"):
        assert _accepts(tool, {"amount": 1, "unit": unit})
    assert not _accepts(tool, {"amount": 1, "unit": "hours"})


def test_dev_bfcl_defaults_spelled_as_strings_become_their_values(corpora: Path) -> None:
    """Defaults of the wrong type in the dev sets: `"false"` for a boolean, `"0"` for an
    integer, `"timing, attractions"` for an array of enum strings."""
    cases = [
        ("cryptocurrency_price", "include_market_cap", False),
        ("add_product_to_cart", "cart_id", 0),
        ("tourist_spot_info", "details", ["timing", "attractions"]),
    ]
    for name, param, value in cases:
        tool = _tool(_dev_function(corpora, name, param))
        assert tool.parameters is not None
        assert tool.parameters["properties"][param]["default"] == value
        assert f"// default: {json.dumps(value, separators=(',', ':'))}" in _prompt([tool])
        assert _accepts(tool, {**_minimal(tool.parameters), param: value})


def test_a_default_no_reading_fits_moves_to_the_description() -> None:
    schema = reconcile_schema(
        {
            "type": "object",
            "properties": {"n": {"type": "integer", "default": "many", "description": "Count"}},
        }
    )
    assert schema["properties"]["n"] == {
        "type": "integer",
        "description": 'Count (default: "many")',
    }


# --- 3. enum on the array rather than on its items -------------------------------------


def test_enum_on_an_array_means_its_items() -> None:
    tool = SchemaTool(
        "get_details",
        "Details of a place.",
        {
            "type": "object",
            "properties": {
                "fields": {
                    "type": "array",
                    "items": {"type": "string"},
                    "enum": ["timing", "tickets", "history"],
                }
            },
            "required": ["fields"],
        },
        lambda args: None,
    )
    assert tool.parameters is not None
    assert tool.parameters["properties"]["fields"] == {
        "type": "array",
        "items": {"type": "string", "enum": ["timing", "tickets", "history"]},
    }
    assert 'fields: "timing" | "tickets" | "history"[],' in _flat(_prompt([tool]))
    assert _accepts(tool, {"fields": ["timing"]})
    assert _accepts(tool, {"fields": ["tickets", "history"]})
    assert not _accepts(tool, {"fields": ["weather"]})
    assert not _accepts(tool, {"fields": "timing"})
    # An enum whose values are arrays keeps its meaning: whole arrays.
    whole = reconcile_schema({"type": "array", "enum": [["a", "b"], ["c"]]})
    assert whole == {"type": "array", "enum": [["a", "b"], ["c"]]}


# --- the property check over every dev BFCL function -----------------------------------


def _minimal(schema: dict[str, Any]) -> Any:
    """The smallest value `schema` accepts that uses no default: required fields only."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    types = schema.get("type")
    kind = (
        (types if isinstance(types, str) else next(t for t in types if t != "null"))
        if types
        else None
    )
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties", {})
        return {k: _minimal(props.get(k, {})) for k in schema.get("required", [])}
    if kind == "array":
        return [_minimal(schema.get("items") or {}) for _ in range(schema.get("minItems", 0))]
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return "x"


def _shown_values(
    schema: dict[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str, Any]]:
    """(path, what, value) for each default, enum value and example the prompt shows."""
    for name, prop in (schema.get("properties") or {}).items():
        where = (*path, name)
        if "default" in prop:
            yield where, "default", prop["default"]
        for value in prop.get("enum") or []:
            yield where, "enum", value
        for value in prop.get("examples") or []:
            yield where, "example", value
        if isinstance(prop.get("properties"), dict):
            yield from _shown_values(prop, where)


def _with(
    base: dict[str, Any], schema: dict[str, Any], path: tuple[str, ...], value: Any
) -> dict[str, Any]:
    args = json.loads(json.dumps(base))
    node, sub = args, schema
    for name in path[:-1]:
        sub = sub["properties"][name]
        node = node.setdefault(name, _minimal(sub))
    node[path[-1]] = value
    return args


def test_every_default_enum_value_and_example_the_prompt_shows_validates(corpora: Path) -> None:
    checked = functions = 0
    refused: list[str] = []
    for fn in _functions(corpora):
        tool = _tool(fn)
        params = tool.parameters or {}
        functions += 1
        # The prompt renders the very schema the validator checks.
        assert tool.description_for_model().parameters == params
        base = _minimal(params)
        assert _accepts(tool, base), (fn["name"], base)
        for path, what, value in _shown_values(params):
            checked += 1
            if not _accepts(tool, _with(base, params, path, value)):
                refused.append(f"{fn['name']}.{'.'.join(path)} {what} {value!r}")
    assert functions >= 1000 and checked >= 600
    assert refused == []


def test_every_default_appears_in_the_rendered_prompt(corpora: Path) -> None:
    """The defaults checked above are the ones the model reads: harmony shows each one on
    its parameter's line (top-level parameters, one line each)."""
    shown = 0
    for fn in _functions(corpora):
        tool = _tool(fn)
        tops = [
            path[0]
            for path, what, _ in _shown_values(tool.parameters or {})
            if what == "default" and len(path) == 1
        ]
        if not tops:
            continue
        lines = _prompt([tool]).splitlines()
        for name in tops:
            # Optional parameters show `name?:`; a few BFCL ones are required and default.
            (at,) = [i for i, x in enumerate(lines) if x.startswith((f"{name}?: ", f"{name}: "))]
            line = lines[at]
            if "," not in line:
                # An object parameter: its default follows the closing brace.
                end = next(
                    i for i in range(at + 1, len(lines)) if lines[i].lstrip().startswith("}")
                )
                line = lines[end]
            assert "// default: " in line, (fn["name"], line)
            shown += 1
    assert shown >= 250


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "default": None},
        {"type": "string", "enum": ["a", "b"], "default": "c"},
        {"type": "array", "items": {"type": "integer"}, "enum": [1, 2]},
        {"type": "boolean", "default": "true"},
        {"type": "number", "default": "1.5"},
        {"type": "object", "properties": {"x": {"type": "integer", "default": "None"}}},
        {"anyOf": [{"type": "string"}, {"type": "integer"}], "default": None},
    ],
)
def test_reconciled_defaults_validate_against_their_own_schema(schema: dict[str, Any]) -> None:
    import jsonschema

    out = reconcile_schema(schema)
    assert reconcile_schema(out) == out  # one reading: a second pass changes nothing
    for node in (out, *(out.get("properties") or {}).values()):
        if "default" in node:
            rest = {k: v for k, v in node.items() if k != "default"}
            assert jsonschema.Draft202012Validator(rest).is_valid(node["default"]), node
    assert schema != out  # each of these needed a change
