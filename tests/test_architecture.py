"""The layering, checked: each layer imports only the layers below it, no import circles,
and the application graphs use only the engine's public API.

The import graph is read from the source (every `import`, at module level or inside a
function, `TYPE_CHECKING` blocks included), with the folders mapped as pyproject maps them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"agent": "harmonygraph", "tools": "harmonygraph.tools",
           "graphs": "harmonygraph.graphs", "sandbox": "harmonygraph.sandbox"}  # fmt: skip

# Top to bottom. A module belongs to the first layer one of whose prefixes it starts with.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("harmonygraph.cli", "harmonygraph.__main__", "harmonygraph.doctor",
             "harmonygraph.task", "harmonygraph.tracing.pytest_plugin", "harmonygraph.batch",
             "harmonygraph.serve")),
    ("graphs", ("harmonygraph.graphs",)),
    ("engine", ("harmonygraph.engine",)),
    ("tracing", ("harmonygraph.tracing",)),
    ("tools", ("harmonygraph.tools",)),
    ("sandbox", ("harmonygraph.sandbox",)),
    ("models", ("harmonygraph.models",)),
    ("harmony", ("harmonygraph.harmony",)),
    ("foundations", ("harmonygraph.settings", "harmonygraph.bounds", "harmonygraph.safe_yaml",
                     "harmonygraph.schema_errors", "harmonygraph.lazy",
                     "harmonygraph.concurrency")),
]  # fmt: skip
# Each feature's own command-line module sits on top of its feature, with the main CLI.
FEATURE_CLIS = ("harmonygraph.harmony.cli", "harmonygraph.sandbox.cli",
                "harmonygraph.tools.browser.cli", "harmonygraph.tools.retrieval.cli",
                "harmonygraph.tools.mcp.cli")  # fmt: skip


def modules() -> Iterator[tuple[str, Path]]:
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join((package, *parts)), path


def imports_of(name: str, path: Path) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m == "harmonygraph" or m.startswith("harmonygraph.")}


def graph() -> dict[str, set[str]]:
    known = dict(modules())
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        # An import of `pkg.name` where `name` is not a module is an import of `pkg`.
        targets = {t if t in known else t.rpartition(".")[0] for t in imports_of(name, path)}
        edges[name] = {t for t in targets if t in known and t != name}
    return edges


def layer(module: str) -> int | None:
    if module == "harmonygraph":
        return None  # the facade: re-exports lazily, checked below
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def test_no_layer_imports_one_above_it() -> None:
    upward = []
    for source, targets in graph().items():
        if source in FEATURE_CLIS:
            continue
        here = layer(source)
        for target in targets:
            there = layer(target)
            if here is not None and there is not None and there < here:
                upward.append(f"{source} ({LAYERS[here][0]}) imports {target} ({LAYERS[there][0]})")
    assert not upward, "\n".join(sorted(upward))


def test_feature_clis_import_only_their_feature_and_below() -> None:
    edges = graph()
    wrong = []
    for cli in FEATURE_CLIS:
        for target in edges.get(cli, set()):
            there = layer(target)
            if there is not None and LAYERS[there][0] in ("cli", "graphs"):
                wrong.append(f"{cli} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_circles() -> None:
    edges = graph()
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if nxt == "harmonygraph" or (nxt == node.rpartition(".")[0] and nxt in edges):
                continue  # a module's own package (its __init__) re-exports it: not a circle
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not circles, "\n".join(" → ".join(c) for c in circles)


def test_application_graphs_use_only_the_engines_public_api() -> None:
    private = [
        f"{source} imports {target}"
        for source, targets in graph().items()
        if source.startswith("harmonygraph.graphs")
        for target in targets
        if target.startswith("harmonygraph.engine.")
    ]
    assert not private, "\n".join(private)


def test_every_public_name_of_the_facade_resolves() -> None:
    import harmonygraph
    import harmonygraph.engine
    import harmonygraph.tracing

    for package in (harmonygraph, harmonygraph.engine, harmonygraph.tracing):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
