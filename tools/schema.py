"""Tool schemas as they come from the wild, made into standard JSON Schema.

Function definitions written for other frameworks (BFCL's, for one) use Python-ish
types: `"dict"`, `"float"`, `"tuple"`, `"any"`, and dotted names like `math.factorial`.
harmony recipients are `namespace.name`, so names become identifiers, and the types
become their JSON Schema equivalents.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import referencing.exceptions
from harmonygraph.harmony.schema import json_type

__all__ = ["identifier", "normalize_schema", "reconcile_schema"]

_TYPE_ALIASES = {
    "dict": "object",
    "float": "number",
    "double": "number",
    "int": "integer",
    "long": "integer",
    "tuple": "array",
    "list": "array",
    "str": "string",
    "bool": "boolean",
    "none": "null",
    "NoneType": "null",
}
_STANDARD = {"object", "number", "integer", "array", "string", "boolean", "null"}


def identifier(name: str) -> str:
    """A tool name usable in a harmony recipient: `math.factorial` → `math_factorial`."""
    ident = re.sub(r"\W", "_", name)
    if not ident or ident[0].isdigit():
        ident = "_" + ident
    return ident


def normalize_schema(schema: Any) -> Any:
    """A copy of `schema` with non-standard type names mapped to JSON Schema's."""
    if isinstance(schema, list):
        return [normalize_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            types = value if isinstance(value, list) else [value]
            mapped = [_TYPE_ALIASES.get(t, t) for t in types if isinstance(t, str)]
            if "any" in mapped:
                continue  # `any` is the absence of a type
            unknown = [t for t in mapped if t not in _STANDARD]
            if unknown:
                raise ValueError(f"unknown JSON Schema type(s) {unknown}")
            out[key] = mapped[0] if len(mapped) == 1 else mapped
        elif key in ("properties", "patternProperties", "$defs", "definitions"):
            # Keys here are property names, not keywords: only their schemas are normalised.
            out[key] = {name: normalize_schema(s) for name, s in value.items()}
        elif key in (
            "items",
            "additionalProperties",
            "not",
            "contains",
            "anyOf",
            "oneOf",
            "allOf",
            "prefixItems",
        ):
            out[key] = normalize_schema(value)
        else:
            out[key] = value
    if out.get("type") == "array" and isinstance(out.get("items"), list):
        out["prefixItems"] = out.pop("items")
    return out


# Keywords whose value is one subschema, a list of them, or a name -> subschema map.
_ONE = ("items", "additionalProperties", "not", "contains", "if", "then", "else")
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAP = ("properties", "patternProperties", "$defs", "definitions")


def reconcile_schema(schema: Any) -> Any:
    """A copy of `schema` in which what the prompt shows as allowed also validates.

    The prompt shows a parameter's type, its enum and its default; the validator checks
    the type and the enum. Schemas from the wild disagree with themselves in three ways,
    each given one reading here that both the prompt and the validator then use:

    * a default the schema's own type refuses: a string that spells a value of the type
      (`"false"`, `"0"`, `"None"`, `"a, b"` for an array of strings) becomes that value;
      a `null` default (or `"None"`) makes the parameter nullable, since the prompt shows
      `// default: null` and the model may send it;
    * a default outside its own enum (`"N/A"` for `seconds | milliseconds`) joins the enum;
    * `enum` on an array whose values are not arrays lists what its items may be: it
      moves to `items` (rendered and validated as an array of those values).

    A default no reading fits is taken out of the schema and said in the description, so
    the prompt never shows a default that would be refused.
    """
    if not isinstance(schema, dict):
        return schema
    root = copy.deepcopy(schema)
    defs = {k: root[k] for k in ("$defs", "definitions") if isinstance(root.get(k), dict)}
    _reconcile(root, defs)
    return root


def _reconcile(node: Any, defs: dict[str, Any]) -> None:
    if not isinstance(node, dict):
        return
    for key in _ONE:
        _reconcile(node.get(key), defs)
    for key in _MANY:
        if isinstance(node.get(key), list):
            for sub in node[key]:
                _reconcile(sub, defs)
    for key in _MAP:
        if isinstance(node.get(key), dict):
            for sub in node[key].values():
                _reconcile(sub, defs)
    _enum_on_array_to_items(node)
    if "default" in node:
        _reconcile_default(node, defs)


def _types(node: dict[str, Any]) -> list[str]:
    t = node.get("type")
    return [t] if isinstance(t, str) else [x for x in t if isinstance(x, str)] if t else []


def _enum_on_array_to_items(node: dict[str, Any]) -> None:
    enum = node.get("enum")
    if _types(node) != ["array"] or not isinstance(enum, list) or not enum:
        return
    if any(isinstance(v, (list, dict)) for v in enum):
        return  # an enum of whole arrays: the keyword means what it says
    raw = node.get("items")
    items: dict[str, Any] = raw if isinstance(raw, dict) else {}
    del node["enum"]
    if "enum" in items:
        return  # the items already list their values: those are the reading
    items = {**items, "enum": enum}
    if "type" not in items:
        kinds = sorted({json_type(v) for v in enum})
        items["type"] = kinds[0] if len(kinds) == 1 else kinds
    node["items"] = items


def _valid(value: Any, node: dict[str, Any], defs: dict[str, Any]) -> bool:
    schema = {k: v for k, v in node.items() if k != "default"}
    schema.update(defs)
    try:
        validator = jsonschema.Draft202012Validator(schema)
        return bool(validator.is_valid(value))
    except (
        jsonschema.exceptions.SchemaError,
        jsonschema.exceptions.UnknownType,
        referencing.exceptions.Unresolvable,
    ):
        return True  # a schema this cannot check is left as it is


_NULL_WORDS = {"none", "null", "nil"}


def _readings(value: Any, node: dict[str, Any]) -> list[Any]:
    """What a default written as a string may stand for, in the node's own types."""
    if not isinstance(value, str):
        return []
    out: list[Any] = []
    text = value.strip()
    if text.lower() in _NULL_WORDS:
        out.append(None)
    try:
        out.append(json.loads(text))
    except ValueError:
        pass
    if text.lower() in ("true", "false"):
        out.append(text.lower() == "true")
    if "array" in _types(node) and text:
        out.append([part.strip() for part in text.split(",") if part.strip()])
    return out


def _reconcile_default(node: dict[str, Any], defs: dict[str, Any]) -> None:
    value = node["default"]
    if _valid(value, node, defs):
        return
    readings = _readings(value, node)
    if value is None or None in readings:  # "None" on a non-string: null, not ["None"]
        node["default"] = None
        _allow(node, None)
        return
    for reading in readings:
        if _valid(reading, node, defs):
            node["default"] = reading
            return
    enum = node.get("enum")
    if isinstance(enum, list) and _valid(
        value, {k: v for k, v in node.items() if k != "enum"}, defs
    ):
        node["enum"] = [*enum, value]
        return
    del node["default"]
    note = f"default: {json.dumps(value, ensure_ascii=False)}"
    desc = node.get("description") or ""
    node["description"] = f"{desc} ({note})" if desc else note.capitalize()


def _allow(node: dict[str, Any], value: None) -> None:
    """Let `node` accept null as well."""
    types = _types(node)
    if types and "null" not in types:
        node["type"] = [*types, "null"]
    if isinstance(node.get("enum"), list) and value not in node["enum"]:
        node["enum"] = [*node["enum"], value]
    if "const" in node:
        node["enum"] = [node.pop("const"), value]
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list) and not any(
            isinstance(b, dict) and b.get("type") == "null" for b in node[key]
        ):
            node[key] = [*node[key], {"type": "null"}]
