"""Ops hold semantics only: no op file names a kernel template, declares kernel candidates or
imports a target (targets own their kernels: pyc_cli/targets/<name>/kernels.py). Read from the
sources, so a new op file is checked too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pyc_cli

OPS = Path(pyc_cli.__file__).resolve().parent / "ops"
SOURCES = sorted(OPS.glob("*.py"))


def imported_modules(path: Path) -> list[str]:
    """Every module an op file imports, resolved against pyc_cli.ops (relative imports)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ["pyc_cli", "ops"][:max(0, 3 - node.level)] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found += [module] + [f"{module}.{alias.name}" for alias in node.names]
    return found


def test_there_are_op_files() -> None:
    assert len(SOURCES) > 20


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_op_file_names_no_template_no_candidate_and_no_c(path: Path) -> None:
    text = path.read_text()
    assert ".c.j2" not in text and "KernelCandidate" not in text
    # C spellings (type names, literals) are the CPU target's kernel context's to print
    assert "c_type" not in text and "c_literal" not in text
    # whether a kernel may write over its input, and the loop variables a template names, are
    # facts of a target's kernel candidate (targets/<name>/kernels.py)
    assert "inplace" not in text and "in_place" not in text
    assert "out_coords" not in text and "in_coords" not in text


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_op_file_imports_no_target_or_codegen(path: Path) -> None:
    above = [m for m in imported_modules(path)
             if m.startswith(("pyc_cli.codegen", "pyc_cli.targets", "pyc_cli.passes"))]
    assert above == []


def test_the_import_reader_sees_a_relative_import_of_a_target(tmp_path: Path) -> None:
    """The check itself can fail: `from ..targets.cpu import kernels` in an op file is seen."""
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from ..targets.cpu import kernels\n")
    assert "pyc_cli.targets.cpu.kernels" in imported_modules(planted)
