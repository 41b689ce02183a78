"""What a batch runs: task files, or task files over rows of inputs, as `BatchItem`s.

`harmonygraph batch a.yaml b.yaml` runs each task file once; `harmonygraph batch task.yaml
inputs.jsonl` runs the task once per row (every task file given, over every row). A row is
a JSON object (JSONL) or a CSV record with a header:

- `input`: the run's input, replacing the task file's own;
- otherwise its fields fill `{name}` placeholders in the task file's `input`;
- `id` (optional) names the run's folder; else the row's number.

A row that cannot be used (not JSON, a missing placeholder, no text) becomes an item with
its `error` set: reported as failed with that error, never run, and the batch goes on.

Each item's thread id is derived from the batch id, the task file's text, the row's id and
the input, so running the same batch again finds every run's checkpoint.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["INPUT_SUFFIXES", "BatchInputError", "BatchItem", "batch_items", "thread_id_for"]

INPUT_SUFFIXES = (".jsonl", ".csv")
MAX_ROWS = 1_000_000


class BatchInputError(ValueError):
    """The batch as a whole cannot be read (no task file, an unreadable inputs file)."""


@dataclass(frozen=True)
class BatchItem:
    """One run of a batch."""

    key: str  # the run's folder under `out/runs/`, unique in the batch
    task_path: str
    input: str | None  # None: the task file's own input
    thread_id: str
    source: str  # where it came from: the task file, or `inputs.jsonl:7`
    error: str | None = None  # set when the row cannot be run; reported, not run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchItem:
        return cls(**data)


def thread_id_for(batch_id: str, task_text: str, row_id: str, text: str | None) -> str:
    h = hashlib.sha256()
    for part in (task_text, row_id, text or ""):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return f"batch-{batch_id}-{h.hexdigest()[:20]}"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _slug(text: str, n: int = 60) -> str:
    return _UNSAFE.sub("_", text).strip("._")[:n] or "run"


def _task_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    tasks: list[Path] = []
    inputs: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            if not found:
                raise BatchInputError(f"{p}: a folder with no task files (*.yaml)")
            tasks.extend(found)
        elif p.suffix.lower() in INPUT_SUFFIXES:
            if not p.is_file():
                raise BatchInputError(f"{p}: no such inputs file")
            inputs.append(p)
        else:
            if not p.exists():
                raise BatchInputError(f"{p}: no such task file")
            tasks.append(p)
    if not tasks:
        raise BatchInputError(
            "no task file given: name one or more task files (YAML), and optionally JSONL or "
            "CSV files of inputs to run each task over"
        )
    return tasks, inputs


def _rows(path: Path) -> Iterable[tuple[int, dict[str, Any] | None, str | None]]:
    """(row number, fields, error) for each row of an inputs file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchInputError(f"{path}: cannot read the inputs file ({exc})") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        for n, row in enumerate(reader, 1):
            if None in row:  # more cells than the header names
                yield (
                    n,
                    None,
                    f"row {n} has more cells than the header ({len(reader.fieldnames or [])})",
                )
            else:
                yield n, {k: v for k, v in row.items() if k is not None}, None
        return
    n = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        n += 1
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield n, None, f"line {n} is not JSON ({exc.msg} at column {exc.colno})"
            continue
        if isinstance(value, str):
            value = {"input": value}
        if not isinstance(value, dict):
            yield n, None, f"line {n} is a JSON {type(value).__name__}, not an object or a string"
            continue
        yield n, value, None


def _fill(template: str, fields: dict[str, Any]) -> str:
    """`{name}` placeholders filled from `fields`; other braces are left as they are."""
    missing: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in fields:
            missing.append(name)
            return m.group(0)
        return str(fields[name])

    out = re.sub(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, template)
    if missing:
        raise KeyError(", ".join(dict.fromkeys(missing)))
    return out


def batch_items(paths: Sequence[str | Path], batch_id: str) -> list[BatchItem]:
    """The batch's runs, in order: every task file, or every task file over every row."""
    from harmonygraph.task import TaskError, load_task

    tasks, inputs = _task_files(paths)
    items: list[BatchItem] = []
    keys: set[str] = set()

    def add(item: BatchItem) -> None:
        key, k = item.key, 1
        while key in keys:
            k += 1
            key = f"{item.key}~{k}"
        keys.add(key)
        items.append(item if key == item.key else BatchItem(**{**item.to_dict(), "key": key}))

    for task in tasks:
        try:
            task_text = task.read_text(encoding="utf-8-sig")
            spec = load_task(task)
            spec_error = None
        except (OSError, UnicodeDecodeError, TaskError) as exc:
            task_text, spec, spec_error = "", None, str(exc)
        stem = _slug(task.stem)
        if not inputs:
            add(
                BatchItem(
                    key=stem, task_path=str(task.resolve()), input=None,
                    thread_id=thread_id_for(batch_id, task_text, "", None),
                    source=str(task), error=spec_error,
                )
            )  # fmt: skip
            continue
        for inp in inputs:
            prefix = stem if len(inputs) == 1 else f"{stem}-{_slug(inp.stem, 30)}"
            for n, fields, error in _rows(inp):
                if n > MAX_ROWS:
                    raise BatchInputError(f"{inp}: over {MAX_ROWS} rows; split the batch")
                row_id = str((fields or {}).get("id") or n)
                text: str | None = None
                if error is None and spec_error is None and spec is not None:
                    assert fields is not None
                    if "input" in fields:
                        text = str(fields["input"])
                    else:
                        try:
                            text = _fill(spec.input, fields)
                        except KeyError as exc:
                            error = (
                                f"row {n} has no field for the placeholder(s) {exc.args[0]} "
                                f"in the task's input"
                            )
                    if error is None and not (text or "").strip():
                        error = f"row {n} gives an empty input"
                add(
                    BatchItem(
                        key=f"{prefix}-{_slug(row_id, 40)}", task_path=str(task.resolve()),
                        input=text, thread_id=thread_id_for(batch_id, task_text, row_id, text),
                        source=f"{inp}:{n}", error=spec_error or error,
                    )
                )  # fmt: skip
    return items
