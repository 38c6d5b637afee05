"""docs/op_coverage.md is generated from the registry and the last conformance summary, and is
current: any op added, removed or changed without `make coverage` fails here."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import conformance

from pyc_cli.coverage import coverage_markdown

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_op_coverage_doc_is_current() -> None:
    summary = json.loads((DOCS / "conformance.json").read_text())
    assert (DOCS / "op_coverage.md").read_text() == coverage_markdown(summary), "run `make coverage`"


def test_conformance_summary_matches_the_current_registry() -> None:
    """The recorded summary was made for exactly today's declared ops and their node tests."""
    summary = json.loads((DOCS / "conformance.json").read_text())
    counts = Counter(op for case in conformance.collect_cases() for op in case.ops)
    expected = {op: counts.get(op, 0) for op in conformance.declared_ops()}
    assert {op: row["cases"] for op, row in summary["ops"].items()} == expected, \
        "run `make coverage`"
    assert summary["failed"] == 0 and not summary["failures"]
