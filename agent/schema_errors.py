"""One way to say what a pydantic validation error found: a short sentence per problem.

Used wherever a value that crossed a boundary is checked against a model: tool arguments,
a run's structured answer, a task file, the browser's settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pydantic

__all__ = ["validation_problems"]


def validation_problems(
    exc: pydantic.ValidationError,
    *,
    noun: str = "argument",
    root: str = "(arguments)",
    show_input: bool = True,
    hint: Callable[[Sequence[Any]], str] | None = None,
    limit: int | None = None,
) -> list[str]:
    """One sentence per problem, each naming where (`a.b`, or `root` for the whole value).

    `noun` names what a missing or unknown field is ("argument", "key"); `hint(loc)` adds
    to an unknown field's sentence (a "did you mean"); `show_input` quotes the bad value.
    """
    problems: list[str] = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        where = ".".join(str(p) for p in loc) or root
        if err["type"] == "missing":
            problem = f"missing required {noun} `{where}`"
        elif err["type"] == "extra_forbidden":
            problem = f"unknown {noun} `{where}`" + (hint(loc) if hint else "")
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            problem = f"`{where}`: {message}"
            if show_input:
                problem += f" (got {err.get('input')!r})"
        if problem not in problems:
            problems.append(problem)
        if limit is not None and len(problems) >= limit:
            break
    return problems
