"""The layers of `pyc_cli` and the imports between them, read from the source (ast), never by hand.

`python -m pyc_cli.testing.layers` prints the module graph as Mermaid (what docs/module_graph.md
holds: `make architecture` rewrites it) and lists every import that runs against the layering:
an import of a higher layer, or a circle of modules importing each other. tests/test_layers.py
keeps the document current and the list of such imports from growing.

Layers, lowest first: a module may import its own layer and those below it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "pyc_cli"
# (layer name, the first path part under pyc_cli/ of the modules in it)
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("errors", "units", "progress", "templating", "files")),
    ("ir", ("ir", "abi")),
    ("ops", ("ops",)),
    ("frontend", ("frontend",)),
    ("planning", ("planning", "input_ranges")),
    ("passes", ("passes",)),
    ("targets", ("targets",)),
    ("artifact", ("artifact", "runtime")),
    ("api", ("api", "buckets", "build_cache", "check", "explain", "coverage", "tune", "telemetry",
             "feedback", "__init__")),
    ("tools", ("compare", "testing", "whatif")),
    ("cli", ("cli", "__main__")),
    # the hostile-input harness runs the CLI itself, as a user would
    ("harness", ("testing.malformed", "testing.malformed_onnx", "testing.malformed_artifact")),
)
RANK = {part: rank for rank, (_, parts) in enumerate(LAYERS) for part in parts}


@dataclass(frozen=True, order=True)
class Import:
    importer: str  # dotted module names
    imported: str
    lazy: bool  # inside a function: still a dependency, only a later one


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    """The layer of the longest prefix under pyc_cli/ that LAYERS names."""
    parts = module.split(".")[1:] or ["__init__"]
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in RANK:
            return RANK[".".join(parts[:end])]
    return len(LAYERS)


def imports(root: Path) -> list[Import]:
    """Every import of a pyc_cli module by a pyc_cli module, from the source files under root."""
    found: set[Import] = set()
    modules = {module_name(p, root.parent): p for p in sorted(root.rglob("*.py"))}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            for target in _targets(node, package):
                target = _known(target, modules)
                if target and target != module:
                    found.add(Import(module, target, id(node) not in top_level))
    return sorted(found)


def _targets(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = package.split(".")
        base = base[:len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    elif node.module and node.module.split(".")[0] == PACKAGE:
        prefix = node.module
    else:
        return []
    return [f"{prefix}.{a.name}" for a in node.names] + [prefix]


def _known(name: str, modules: dict[str, Path]) -> str:
    """The module `name` denotes (`from .x import f` names module x, not f)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def upward(found: list[Import]) -> list[Import]:
    """Imports of a higher layer than the importer's."""
    return [i for i in found if layer_of(i.imported) > layer_of(i.importer)]


def circles(found: list[Import]) -> list[list[str]]:
    """Groups of modules that import each other in a loop (strongly connected, >1 module); a
    module's import of its own package (whose __init__ hands names on) is not an edge back."""
    graph: dict[str, set[str]] = {}
    for i in found:
        if i.imported != i.importer.rpartition(".")[0]:
            graph.setdefault(i.importer, set()).add(i.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


def mermaid(found: list[Import]) -> str:
    """The layers as Mermaid boxes, lowest at the bottom, with the import counts between them."""
    lines = ["```mermaid", "flowchart BT"]
    for rank, (name, parts) in enumerate(LAYERS):
        lines.append(f'  L{rank}["{name}: {", ".join(parts)}"]')
    edges = Counter((layer_of(i.importer), layer_of(i.imported)) for i in found
                    if layer_of(i.importer) != layer_of(i.imported))
    for (src, dst), count in sorted(edges.items()):
        arrow = f"-->|{count}|" if dst < src else f"-.->|{count} against the layers|"
        lines.append(f"  L{src} {arrow} L{dst}")
    lines.append("```")
    return "\n".join(lines)


def document(root: Path) -> str:
    found = imports(root)
    against = upward(found)
    loops = circles(found)
    out = ["# The module graph of pyc_cli",
           "",
           "Generated by `python -m pyc_cli.testing.layers --write docs/module_graph.md` "
           "(`make architecture`); tests/test_layers.py checks that it is current. Boxes are the "
           "layers, lowest at the bottom; an arrow is the number of imports from one layer into a "
           "lower one; a dotted arrow is one against the layers.",
           "", mermaid(found), "",
           f"Modules: {len({i.importer for i in found})}; imports between modules: {len(found)}.",
           "", "## Imports against the layers", ""]
    out += [f"- `{i.importer}` imports `{i.imported}`{' (inside a function)' if i.lazy else ''}"
            for i in against] or ["None."]
    out += ["", "## Circles", ""]
    out += [f"- {' <-> '.join(f'`{m}`' for m in group)}" for group in loops] or ["None."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyc_cli.testing.layers", description=__doc__)
    parser.add_argument("--write", type=Path, default=None, help="write the document here")
    args = parser.parse_args(argv)
    text = document(Path(__file__).resolve().parents[1])
    if args.write:
        args.write.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
