"""Known PyC defects that other engineers are fixing, keyed by a failure signature.

The fuzzer labels a failure with the defect it matches (in the report and case.json); the CI
tier (tests/fuzz/test_fuzz_ci.py) treats only these as expected failures. Keep the list small and
delete an entry the moment its fix lands: nothing here is skipped silently, every match is
reported as `known_defect`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import onnx

from .runner import Outcome


@dataclass(frozen=True)
class KnownDefect:
    name: str
    classes: tuple[str, ...]
    pattern: str  # regex searched in the outcome's detail
    feeds: tuple[str, ...] = ("normal", "special")


KNOWN_DEFECTS: tuple[KnownDefect, ...] = (
    # a graph input (or a value returned twice) as a graph output gets the internal name
    # copy_<x>_out instead of the ONNX output name (known-defects engineer)
    KnownDefect("output-misnamed-copy", ("mismatch",),
                r"^output names/order \[[^\]]*'copy_\w+_out'[^\]]*\] != \[[^\]]*\]$"),
    # NaN/Inf do not propagate as onnxruntime does (NaN/Inf engineer): NaN fed in (special
    # values) or made inside (Sqrt/Log/Acos of a negative) is dropped by Sign, max/min
    # reductions, ...; matches only when every difference is a NaN/infinity position
    KnownDefect("nan-inf-propagation", ("mismatch",),
                r"^(?:(?!names/order|dtype|shape|beyond tolerance|elements differ).)*"
                r"(NaN at|infinities differ)"),
)


def known_defect(outcome: Outcome, model: onnx.ModelProto) -> str:
    for defect in KNOWN_DEFECTS:
        if outcome.cls in defect.classes and outcome.feed in defect.feeds and \
                re.search(defect.pattern, outcome.detail):
            return defect.name
    return ""
