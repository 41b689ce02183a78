"""Output validation: the final answer against the run's output type."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pydantic
from harmonygraph.bounds import JSONDepthError, loads_bounded
from harmonygraph.schema_errors import validation_problems

__all__ = ["OutputInvalid", "OutputSpec"]


class OutputInvalid(ValueError):
    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


class OutputSpec:
    """The run's output type: a pydantic model, any type pydantic can validate, or a JSON Schema."""

    def __init__(self, output_type: Any) -> None:
        self.output_type = output_type
        self._validator: jsonschema.protocols.Validator | None = None
        self._adapter: pydantic.TypeAdapter[Any] | None = None
        if isinstance(output_type, dict):
            cls = jsonschema.validators.validator_for(output_type, jsonschema.Draft202012Validator)
            cls.check_schema(output_type)
            self._validator = cls(output_type)
        else:
            self._adapter = pydantic.TypeAdapter(output_type)

    def validate(self, text: str) -> Any:
        m = _FENCE.match(text)
        body = m.group(1) if m else text.strip()
        try:
            data = loads_bounded(body)
        except JSONDepthError as exc:
            raise OutputInvalid([f"the answer is refused: {exc}"]) from None
        except json.JSONDecodeError as exc:
            raise OutputInvalid(
                [f"the answer is not valid JSON ({exc.msg} at character {exc.pos})"]
            ) from None
        if self._validator is not None:
            errors = [
                (f"`{'.'.join(map(str, e.path))}`: " if e.path else "") + e.message
                for e in sorted(self._validator.iter_errors(data), key=lambda e: list(e.path))
            ]
            if errors:
                raise OutputInvalid(errors[:8])
            return data
        assert self._adapter is not None
        try:
            return self._adapter.validate_python(data)
        except pydantic.ValidationError as exc:
            raise OutputInvalid(
                validation_problems(exc, noun="key", root="(root)", show_input=False, limit=8)
            ) from None
