"""Tool schemas as they come from the wild, made into standard JSON Schema.

Function definitions written for other frameworks (BFCL's, for one) use Python-ish
types: `"dict"`, `"float"`, `"tuple"`, `"any"`, and dotted names like `math.factorial`.
harmony recipients are `namespace.name`, so names become identifiers, and the types
become their JSON Schema equivalents.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["identifier", "normalize_schema"]

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
