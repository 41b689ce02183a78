"""YAML for files a user did not write themselves: no aliases, bounded size and nesting.

`yaml.safe_load` builds only plain objects, but it still expands aliases: a 1 KB
"billion laughs" document (`a: &a [x, x]`, `b: &b [*a, *a]`, ...) is a small graph of
shared lists that grows to gigabytes as soon as anything copies or walks it. The loader
here refuses every alias (`*name`) while composing, before any object is built, and
counts nodes and depth as it goes, so the work done is bounded by the caps below
whatever the document holds.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import Node

__all__ = ["MAX_DEPTH", "MAX_NODES", "YamlLimitError", "load_yaml"]

MAX_NODES = 20_000  # scalars, sequences and mappings together
MAX_DEPTH = 64  # nested sequences/mappings


class YamlLimitError(yaml.YAMLError):
    """A YAML document that uses an alias or goes past a node or depth cap."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str, max_nodes: int, max_depth: int) -> None:
        super().__init__(stream)
        self._max_nodes = max_nodes
        self._max_depth = max_depth
        self._nodes = 0
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise YamlLimitError(
                f"alias `*{event.anchor}`: aliases are not allowed here; write the "
                "value out in full",
                event.start_mark,
            )
        self._nodes += 1
        if self._nodes > self._max_nodes:
            raise YamlLimitError(
                f"more than {self._max_nodes:,} values; this file is not meant to be that large",
                self.peek_event().start_mark,
            )
        self._depth += 1
        try:
            if self._depth > self._max_depth:
                raise YamlLimitError(
                    f"nested more than {self._max_depth} levels deep",
                    self.peek_event().start_mark,
                )
            node: Node | None = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        return node


def load_yaml(text: str, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """One YAML document as plain Python objects; raises `yaml.YAMLError` (a
    `YamlLimitError` for an alias or a cap) with `problem_mark` where it can."""
    loader = _BoundedLoader(text, max_nodes, max_depth)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
