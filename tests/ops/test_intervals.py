"""ops/intervals.py (issue #15, point 2): the bounds of values computed from inputs with declared
values, which bound sizes computed at run time. Each rule is checked on random points of its
operands' intervals: every result lies within the interval it gives."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from pyc_cli.ir.graph import Node
from pyc_cli.ops import registry
from pyc_cli.ops.intervals import Interval, propagate


def _evaluate(node: Node, inputs: list) -> list:
    return registry.get(node.op).evaluate(node, inputs)


@pytest.mark.parametrize("op,attrs", [("Add", {}), ("Sub", {}), ("Mul", {}), ("Max", {}),
                                      ("Min", {}), ("Div", {}), ("Neg", {}), ("Concat", {"axis": 0}),
                                      ("Cast", {"to": TensorProto.INT32})])
def test_results_lie_within_the_interval(op: str, attrs: dict, rng: np.random.Generator) -> None:
    unary = op in ("Neg", "Cast")
    lows = [rng.integers(-20, 20, 3).astype(np.float64) for _ in range(1 if unary else 2)]
    highs = [lo + rng.integers(0, 30, 3) for lo in lows]
    if op == "Div":  # a positive divisor only
        lows[1], highs[1] = lows[1] - lows[1].min() + 1, highs[1] - lows[1].min() + 1
    node = Node(op, "n", [f"in{k}" for k in range(len(lows))], ["out"], attrs)
    [found] = propagate(node, [Interval(lo, hi) for lo, hi in zip(lows, highs)],
                        [None] * len(lows), _evaluate)
    assert found is not None
    for _ in range(200):
        points = [np.floor(rng.uniform(lo, hi + 1)).clip(lo, hi) for lo, hi in zip(lows, highs)]
        inputs = [p.astype(np.int64) for p in points]
        [value] = _evaluate(node, inputs)
        assert np.all(found.lo <= value) and np.all(value <= found.hi), (inputs, value)


def test_a_cast_that_would_wrap_gives_no_bound() -> None:
    node = Node("Cast", "n", ["x"], ["y"], {"to": TensorProto.INT8})
    wide = Interval(np.array([0.0]), np.array([300.0]))
    assert propagate(node, [wide], [None], _evaluate) == [None]


def test_an_op_not_followed_gives_no_bound() -> None:
    node = Node("Sin", "n", ["x"], ["y"])
    assert propagate(node, [Interval(np.zeros(2), np.ones(2))], [None], _evaluate) == [None]
