"""Models with a run-time If for the CUDA target (test_cuda_if.py emulated, test_cuda_if_gpu.py on
a GPU): the ONNX files of the CPU target's run-time If tests (tests/dynamic/), each with its
input shapes, a feed maker per outcome (which branches the run takes) and the outcomes that
must run; `refused`: outcomes whose branch could not be compiled (PYC-E053, onnxruntime fails
on them too)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.dynamic.test_if_outputs import _if_as_graph_output
from tests.dynamic.test_run_time_if import _gather_or_scale, _nested
from tests.dynamic.test_unreachable_branch import _model as _unreachable_model

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class IfCase:
    name: str
    make: Callable[[Path, np.random.Generator], Path]
    shapes: dict[str, tuple[int, ...]]
    feeds: Callable[[np.random.Generator, str], Feeds]  # fresh random feeds for an outcome
    outcomes: tuple[str, ...]
    refused: tuple[str, ...] = ()
    ops: dict[str, tuple[str, ...]] = field(default_factory=dict)  # outcome -> ops its run launches


def _gather_feeds(rng: np.random.Generator, outcome: str) -> Feeds:
    """'then': every index in range (max < 6: the Gather branch); 'else': one out of range
    (the Slice branch; the Gather would set the index status if it ran)."""
    idx = rng.integers(0, 6, size=3)
    if outcome == "else":
        idx[rng.integers(0, 3)] = rng.integers(6, 12)
    return {"x": rng.standard_normal((6, 4)).astype(np.float32), "idx": idx.astype(np.int64)}


def _flag_feeds(shape: tuple[int, ...]) -> Callable[[np.random.Generator, str], Feeds]:
    def feeds(rng: np.random.Generator, outcome: str) -> Feeds:
        return {"x": rng.standard_normal(shape).astype(np.float32),
                "flag": np.array(outcome == "then")}
    return feeds


def _nested_feeds(rng: np.random.Generator, outcome: str) -> Feeds:
    """'then': the outer then branch; 'else/then' and 'else/else': the outer else branch with
    the inner condition (sum(x) > 0) true or false."""
    x = np.abs(rng.standard_normal((2, 8))).astype(np.float32) + 0.01
    return {"x": -x if outcome == "else/else" else x, "flag": np.array(outcome == "then")}


def _unreachable_feeds(rng: np.random.Generator, outcome: str) -> Feeds:
    return {"x": rng.standard_normal((1, 6)).astype(np.float32), "flag": np.array(outcome == "then")}


def _nested_unreachable_feeds(rng: np.random.Generator, outcome: str) -> Feeds:
    """'then/then' runs; 'then/else' takes the inner unreachable branch, 'else' the outer one."""
    return {"x": rng.standard_normal((1, 6)).astype(np.float32),
            "flag": np.array(outcome.startswith("then")), "inner": np.array(outcome == "then/then")}


IF_CASES = [
    IfCase("gather_or_scale", _gather_or_scale, {}, _gather_feeds, ("then", "else"),
           ops={"then": ("Gather",), "else": ("Slice",)}),
    IfCase("if_is_a_graph_output", lambda tmp, rng: _if_as_graph_output(tmp), {"x": (4, 8)},
           _flag_feeds((4, 8)), ("then", "else"), ops={"then": ("MatMul",), "else": ()}),
    IfCase("nested", _nested, {}, _nested_feeds, ("then", "else/then", "else/else")),
    IfCase("unreachable", lambda tmp, rng: _unreachable_model(tmp, rng), {"x": (1, 6)},
           _unreachable_feeds, ("then",), refused=("else",)),
    IfCase("nested_unreachable", lambda tmp, rng: _unreachable_model(tmp, rng, nested=True),
           {"x": (1, 6)}, _nested_unreachable_feeds, ("then/then",),
           refused=("then/else", "else")),
]
CASE = {case.name: case for case in IF_CASES}
