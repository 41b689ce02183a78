"""JSON Schemas made renderable for harmony.

openai-harmony turns JSON Schema into TypeScript-like declarations, but it renders
`$ref`, `anyOf` and `allOf` as `any`, an enum without a `type` as `any`, and a `null`
branch of a union as `any`. Pydantic produces all of these (nested models, `Optional`
fields, `Literal`s), so schemas are flattened first: references inlined, `allOf`
merged, unions of plain types written as a type list, other unions as `oneOf` (which
harmony does render), and constraints harmony drops (minimum, pattern, ...) kept as
words in the description so the model still sees them.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["SchemaError", "flatten_schema", "json_type", "schema_of"]

_PRIMITIVES = {"string", "number", "integer", "boolean", "null"}
# Keywords harmony does not render; we say them in the description instead.
_CONSTRAINT_WORDS = {
    "minimum": "minimum {}",
    "maximum": "maximum {}",
    "exclusiveMinimum": "greater than {}",
    "exclusiveMaximum": "less than {}",
    "minLength": "at least {} characters",
    "maxLength": "at most {} characters",
    "pattern": "matching /{}/",
    "format": "format {}",
    "minItems": "at least {} items",
    "maxItems": "at most {} items",
}


class SchemaError(ValueError):
    """A JSON Schema that cannot be used (an unresolvable `$ref`, a wrong shape)."""


def schema_of(output_type: Any) -> dict[str, Any]:
    """The JSON Schema of a pydantic model, a type, or a schema given as a dict."""
    if isinstance(output_type, dict):
        return output_type
    from pydantic import BaseModel, TypeAdapter

    if isinstance(output_type, type) and issubclass(output_type, BaseModel):
        return output_type.model_json_schema()
    return TypeAdapter(output_type).json_schema()


def flatten_schema(schema: dict[str, Any], *, keep_titles: bool = False) -> dict[str, Any]:
    """A copy of `schema` with references inlined and unions in forms harmony renders."""
    if not isinstance(schema, dict):
        raise SchemaError(f"a JSON Schema must be an object, got {type(schema).__name__}")
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        defs.update(schema.get(key) or {})
    return _Flattener(defs, keep_titles).node(schema, depth=0, stack=())


class _Flattener:
    def __init__(self, defs: dict[str, Any], keep_titles: bool) -> None:
        self.defs = defs
        self.keep_titles = keep_titles

    def resolve(self, ref: str) -> tuple[str, dict[str, Any]]:
        for prefix in ("#/$defs/", "#/definitions/"):
            if ref.startswith(prefix):
                name = ref[len(prefix) :]
                if name in self.defs:
                    return name, self.defs[name]
        raise SchemaError(
            f"cannot resolve $ref {ref!r}: only local #/$defs/... references are supported"
        )

    def node(self, node: Any, *, depth: int, stack: tuple[str, ...]) -> Any:
        if isinstance(node, bool):
            return {} if node else {"not": {}}
        if not isinstance(node, dict):
            return node
        node = dict(node)
        node.pop("$defs", None)
        node.pop("definitions", None)
        node.pop("$schema", None)

        if "$ref" in node:
            ref = node.pop("$ref")
            name, target = self.resolve(ref)
            if name in stack:
                # A recursive model: harmony's syntax has no named types, so the
                # recursion is cut and described in words.
                desc = node.get("description") or target.get("description") or ""
                return {
                    "type": "object",
                    "description": (desc + " " if desc else "") + f"(a nested {name}, same shape)",
                }
            merged = {**copy.deepcopy(target), **node}
            return self.node(merged, depth=depth, stack=(*stack, name))

        if "allOf" in node:
            parts = [self.node(p, depth=depth, stack=stack) for p in node.pop("allOf")]
            base: dict[str, Any] = {}
            for part in parts:
                base = _merge(base, part)
            node = _merge(base, node)

        for key in ("anyOf", "oneOf"):
            if key in node:
                branches = [self.node(b, depth=depth, stack=stack) for b in node.pop(key)]
                node = _merge(_union(branches), node)

        if "const" in node and "enum" not in node:
            node["enum"] = [node.pop("const")]
        if "enum" in node and "type" not in node:
            types = sorted({json_type(v) for v in node["enum"]})
            node["type"] = types[0] if len(types) == 1 else types

        if "properties" in node:
            node["properties"] = {
                k: self.node(v, depth=depth + 1, stack=stack) for k, v in node["properties"].items()
            }
            node.setdefault("type", "object")
        if isinstance(node.get("items"), dict):
            node["items"] = self.node(node["items"], depth=depth + 1, stack=stack)
        elif isinstance(node.get("items"), list):  # tuple form (draft 4-7)
            node["items"] = _union(
                [self.node(i, depth=depth + 1, stack=stack) for i in node["items"]]
            )
        if "prefixItems" in node:
            node["items"] = _union(
                [self.node(i, depth=depth + 1, stack=stack) for i in node.pop("prefixItems")]
            )
        if isinstance(node.get("additionalProperties"), dict):
            node["additionalProperties"] = self.node(
                node["additionalProperties"], depth=depth + 1, stack=stack
            )

        words = [tmpl.format(node[k]) for k, tmpl in _CONSTRAINT_WORDS.items() if k in node]
        if words:
            desc = node.get("description", "")
            note = "; ".join(words)
            if note.lower() not in desc.lower():  # not again when a union is merged
                node["description"] = f"{desc} ({note})" if desc else note.capitalize()
        if not self.keep_titles and depth > 0:
            node.pop("title", None)
        return node


def json_type(value: Any) -> str:
    """The JSON Schema type name of a JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_plain(branch: dict[str, Any]) -> bool:
    """A branch that is only a primitive type (and perhaps a description)."""
    t = branch.get("type")
    types = t if isinstance(t, list) else [t]
    return all(x in _PRIMITIVES for x in types) and set(branch) <= {"type", "description", "title"}


def _union(branches: list[dict[str, Any]]) -> dict[str, Any]:
    nullable = any(b.get("type") == "null" and len(b) <= 2 for b in branches)
    rest = [b for b in branches if not (b.get("type") == "null" and len(b) <= 2)]
    if not rest:
        return {"type": "null"}
    if all(_is_plain(b) for b in rest):
        types: list[str] = []
        for b in rest:
            t = b["type"]
            for x in t if isinstance(t, list) else [t]:
                if x not in types:
                    types.append(x)
        if nullable:
            types.append("null")
        return {"type": types[0] if len(types) == 1 else types}
    if len(rest) == 1:
        # `Optional[Model]`: harmony renders a null branch as `any`, so the field's
        # optionality (`?` and its default) carries the null instead.
        return dict(rest[0])
    return {"oneOf": rest}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if k == "properties" and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        elif k == "required" and isinstance(out.get(k), list):
            out[k] = list(dict.fromkeys([*out[k], *v]))
        elif k == "description" and out.get(k) and v and v != out[k]:
            out[k] = v
        else:
            out[k] = v
    return out
