"""Imports flow one way through the layers of pyc_cli (pyc_cli/testing/layers.py reads them
from the source), and docs/module_graph.md, generated from the same reading, is current."""

from __future__ import annotations

from pathlib import Path

import pyc_cli
from pyc_cli.testing import layers

ROOT = Path(pyc_cli.__file__).resolve().parent
DOC = Path(__file__).resolve().parents[1] / "docs" / "module_graph.md"

def test_every_module_is_in_a_layer() -> None:
    found = layers.imports(ROOT)
    modules = {i.importer for i in found} | {i.imported for i in found}
    assert [m for m in sorted(modules) if layers.layer_of(m) == len(layers.LAYERS)] == []


def test_no_import_against_the_layers() -> None:
    against = [(i.importer, i.imported) for i in layers.upward(layers.imports(ROOT))]
    assert against == [], "an import runs against the layers"


def test_no_circle() -> None:
    assert layers.circles(layers.imports(ROOT)) == []


def test_no_module_is_imported_by_name() -> None:
    """A module loaded by name (importlib.import_module, __import__) is a dependency the layer
    reading cannot see: the runtime's kernel sampler, which telemetry once looked up so, is a
    plain import of a module below the api layer."""
    hidden = [str(p.relative_to(ROOT)) for p in sorted(ROOT.rglob("*.py"))
              if "import_module(" in p.read_text() or "__import__(" in p.read_text()]
    assert hidden == []
    edge = [i for i in layers.imports(ROOT) if i.importer == "pyc_cli.telemetry"
            and i.imported == "pyc_cli.runtime.kernel_sampler"]
    assert edge and layers.layer_of("pyc_cli.runtime.kernel_sampler") < layers.layer_of(
        "pyc_cli.telemetry")


def test_the_detector_sees_an_upward_import_and_a_circle(tmp_path: Path) -> None:
    """The reading itself can fail: a planted upward import and a planted loop are found."""
    package = tmp_path / "pyc_cli"
    (package / "ir").mkdir(parents=True)
    (package / "ops").mkdir()
    for folder in (package, package / "ir", package / "ops"):
        (folder / "__init__.py").write_text("")
    (package / "ir" / "graph.py").write_text("from ..ops import rules\n")
    (package / "ops" / "rules.py").write_text("def f():\n    from ..ir import graph\n")
    found = layers.imports(package)
    assert [(i.importer, i.imported) for i in layers.upward(found)] == [
        ("pyc_cli.ir.graph", "pyc_cli.ops"), ("pyc_cli.ir.graph", "pyc_cli.ops.rules")]
    assert layers.circles(found) == [["pyc_cli.ir.graph", "pyc_cli.ops.rules"]]


def test_module_graph_document_is_current() -> None:
    assert DOC.read_text() == layers.document(ROOT), "run `make architecture`"
