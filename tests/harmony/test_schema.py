"""JSON Schemas reach the model intact: no `any` where a type was known."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any, Literal

import openai_harmony as oh
import pytest
from harmonygraph.harmony import (
    DeveloperConfig,
    ResponseFormat,
    SchemaError,
    flatten_schema,
    get_encoding,
)
from harmonygraph.harmony.prompt import render_developer
from openai_harmony import ToolDescription, ToolNamespaceConfig
from pydantic import BaseModel, Field


class Color(StrEnum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    """A postal address."""

    street: str
    city: str = Field(description="City name")
    zip: str | None = None


class Pet(BaseModel):
    kind: Literal["cat", "dog"]
    name: str


class Node(BaseModel):
    value: int
    children: list[Node] = []


class Person(BaseModel):
    """Someone to contact."""

    name: str = Field(min_length=1, max_length=80)
    age: int | None = Field(default=None, ge=0)
    address: Address
    billing: Address | None = None
    pets: list[Pet] = []
    favourite: Color = Color.RED
    score: int | str = 0
    contact: Address | Pet | None = None
    tree: Node | None = None


def functions_text(parameters: dict[str, Any], *, flatten: bool = True) -> str:
    tool = ToolDescription.new("save_person", "Save a person.", parameters=parameters)
    if flatten:
        dev = DeveloperConfig(
            tools=(ToolNamespaceConfig(name="functions", description=None, tools=[tool]),)
        )
        return get_encoding().decode(render_developer(dev))
    content = oh.DeveloperContent.new().with_function_tools([tool])
    return get_encoding().decode(
        get_encoding().render(oh.Message.from_role_and_content(oh.Role.DEVELOPER, content))
    )


def anys(text: str) -> list[str]:
    """Lines that say `any`, except the tools' own `=> any` return type."""
    return [
        line for line in text.splitlines() if re.search(r"\bany\b", line) and "=> any;" not in line
    ]


def test_nested_and_optional_models_render_without_any() -> None:
    schema = Person.model_json_schema()
    # Without flattening, openai-harmony renders every one of these fields as `any`:
    raw = functions_text(schema, flatten=False)
    assert len(anys(raw)) >= 6
    text = functions_text(schema)
    assert anys(text) == []
    flat = " ".join(text.split())  # harmony indents nested objects; compare word by word
    for expected in (
        "name: string,",
        "age?: number, // default: null",
        "address: // A postal address. { street: string, // City name city: string, zip?: string | null",
        "billing?: // A postal address. {",
        'pets?: { kind: "cat" | "dog", name: string, }[], // default: []',
        'favourite?: "red" | "blue", // default: red',
        "score?: number | string, // default: 0",
        "contact?: | // A postal address. { street: string,",
        "tree?: { value: number, children?: // (a nested Node, same shape)",
    ):
        assert expected in flat, expected
    # Constraints harmony would drop are said in words, once.
    assert "// At least 1 characters; at most 80 characters" in text
    assert text.count("inimum 0") == 1


def test_refs_are_inlined_and_unions_typed() -> None:
    flat = flatten_schema(Person.model_json_schema())
    dumped = json.dumps(flat)
    for gone in ("$ref", "$defs", "anyOf", "allOf"):
        assert gone not in dumped
    props = flat["properties"]
    assert props["address"]["properties"]["zip"]["type"] == ["string", "null"]
    assert props["age"] == {
        "minimum": 0,
        "type": "integer",
        "description": "Minimum 0",
        "default": None,
    }
    assert props["billing"]["type"] == "object" and props["billing"]["default"] is None
    assert props["favourite"]["type"] == "string" and props["favourite"]["enum"] == ["red", "blue"]
    assert props["score"]["type"] == ["integer", "string"]
    assert [b["type"] for b in props["contact"]["oneOf"]] == ["object", "object"]
    assert "title" not in props["address"]  # nested titles are noise to the model
    assert flat["title"] == "Person"


def test_all_of_is_merged_and_const_typed() -> None:
    schema = {
        "type": "object",
        "properties": {
            "mode": {"const": "fast"},
            "level": {"enum": [1, 2, 3]},
            "mixed": {"enum": ["a", 1]},
            "item": {
                "allOf": [
                    {"$ref": "#/$defs/Base"},
                    {"properties": {"extra": {"type": "boolean"}}, "required": ["extra"]},
                ]
            },
        },
        "$defs": {
            "Base": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}
        },
    }
    flat = flatten_schema(schema)
    props = flat["properties"]
    assert props["mode"] == {"enum": ["fast"], "type": "string"}
    assert props["level"]["type"] == "integer"
    assert props["mixed"]["type"] == ["integer", "string"]
    assert props["item"]["properties"] == {"id": {"type": "string"}, "extra": {"type": "boolean"}}
    assert props["item"]["required"] == ["id", "extra"]
    text = functions_text(schema)
    assert anys(text) == []
    assert 'mode?: "fast",' in text
    assert "extra: boolean," in " ".join(text.split())


def test_arrays_tuples_and_boolean_schemas() -> None:
    flat = flatten_schema(
        {
            "type": "object",
            "properties": {
                "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
                "old_pair": {"type": "array", "items": [{"type": "string"}, {"type": "number"}]},
                "free": True,
                "never": False,
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            },
        }
    )
    props = flat["properties"]
    assert props["pair"]["items"] == {"type": ["string", "integer"]}
    assert props["old_pair"]["items"] == {"type": ["string", "number"]}
    assert props["free"] == {} and props["never"] == {"not": {}}
    assert props["tags"]["description"] == "At least 1 items"


def test_schema_errors_are_clear() -> None:
    with pytest.raises(SchemaError, match=r"cannot resolve \$ref '#/\$defs/Missing'"):
        flatten_schema({"$ref": "#/$defs/Missing"})
    with pytest.raises(SchemaError, match="only local"):
        flatten_schema({"$ref": "https://example.com/schema.json"})
    with pytest.raises(SchemaError, match="must be an object"):
        flatten_schema(["not", "a", "schema"])  # type: ignore[arg-type]


def test_flatten_does_not_modify_its_input() -> None:
    schema = Person.model_json_schema()
    before = json.dumps(schema, sort_keys=True)
    flatten_schema(schema)
    assert json.dumps(schema, sort_keys=True) == before


def test_response_format_from_a_model() -> None:
    fmt = ResponseFormat.from_type(Person)
    assert fmt.name == "person"
    assert fmt.description == "Someone to contact."
    text = get_encoding().decode(
        render_developer(DeveloperConfig(instructions="Extract.", response_format=fmt))
    )
    head, _, rest = text.partition("# Response Formats\n\n## person\n\n// Someone to contact.\n")
    assert head.startswith("<|start|>developer<|message|># Instructions\n\nExtract.\n\n")
    schema_json, _, tail = rest.rpartition("<|end|>")
    assert tail == ""
    assert json.loads(schema_json) == fmt.schema  # the schema itself, intact
    assert "$ref" not in schema_json
    # A list type gets a name of its own.
    assert ResponseFormat.from_type(list[Pet], name="PetList").name == "pet_list"
