"""Known PyC defects, keyed by a failure signature: ones other engineers are fixing, and ones
this fuzzer found that nobody has fixed yet (each says which).

The fuzzer labels a failure with the defect it matches (in the report and case.json); the CI
tier (tests/testing/test_fuzz_ci.py) treats only these as expected failures. Keep the list small and
delete an entry the moment its fix lands: nothing here is skipped silently, every match is
reported as `known_defect`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import onnx

from .runner import Outcome


@dataclass(frozen=True)
class KnownDefect:
    name: str
    classes: tuple[str, ...]
    pattern: str  # regex one problem of the outcome's detail must match
    feeds: tuple[str, ...] = ("normal", "special")
    # the model must hold a node satisfying one of these predicates (NODE_PREDICATES)
    nodes: tuple[str, ...] = ()

    def explains(self, outcome: Outcome, problem: str, model: onnx.ModelProto) -> bool:
        return (outcome.cls in self.classes and outcome.feed in self.feeds
                and re.search(self.pattern, problem) is not None
                and (not self.nodes or any(NODE_PREDICATES[key](node, model) for key in self.nodes
                                           for node in model.graph.node)))


KNOWN_DEFECTS: tuple[KnownDefect, ...] = (
    # empty: every defect the fuzzer found so far is fixed, with a regression test in
    # tests/e2e/test_regressions.py or tests/ops/test_special_values.py. Add an entry (a signature and,
    # where needed, a node predicate in NODE_PREDICATES) only for a defect that is being fixed.
)


NODE_PREDICATES: dict[str, Callable[[onnx.NodeProto, onnx.ModelProto], bool]] = {}


def problems(detail: str) -> list[str]:
    """The separate differences an outcome's detail lists (oracle.judge joins them with '; ')."""
    return [p for p in detail.split(" [reference")[0].split("; ") if p]


def known_defect(outcome: Outcome, model: onnx.ModelProto) -> str:
    """The known defect(s) explaining every problem of the outcome ('a+b'), or '' when any
    problem is unexplained (a new failure)."""
    names = []
    # value comparisons list several differences; a crash or refusal is one message
    parts = problems(outcome.detail) if outcome.cls in ("mismatch", "ort_defect") else [outcome.detail]
    for problem in parts or [""]:
        found = next((d.name for d in KNOWN_DEFECTS if d.explains(outcome, problem, model)), None)
        if found is None:
            return ""
        names.append(found)
    return "+".join(sorted(set(names)))
