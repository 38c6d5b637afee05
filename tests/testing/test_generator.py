"""The graph generator: valid graphs (checker + onnxruntime), 3-25 nodes, deterministic per seed,
and the feeds respect the int ranges it records."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from pyc_cli.testing.fuzz.generate import MAX_NODES, MIN_NODES, generate, op_histogram
from pyc_cli.testing.fuzz.values import feeds_for, input_constraints

SEEDS = range(12)


def test_graphs_are_valid_and_sized() -> None:
    for seed in SEEDS:
        model = generate(seed).model
        onnx.checker.check_model(model, full_check=True)
        assert MIN_NODES <= len(model.graph.node) <= MAX_NODES
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        outputs = session.run(None, feeds_for(model, seed))
        assert len(outputs) == len(model.graph.output)


def test_same_seed_same_graph_other_seed_other_graph() -> None:
    first = generate(7).model.SerializeToString()
    assert generate(7).model.SerializeToString() == first
    assert generate(8).model.SerializeToString() != first


def test_int_feeds_stay_in_the_recorded_ranges() -> None:
    for seed in SEEDS:
        model = generate(seed).model
        ranges, nonzero = input_constraints(model)
        feeds = feeds_for(model, seed)
        for name, (lo, hi) in ranges.items():
            assert feeds[name].size == 0 or lo <= feeds[name].min() <= feeds[name].max() <= hi
        for name in nonzero:
            assert not np.any(feeds[name] == 0)


def test_special_feeds_hold_special_values() -> None:
    model = generate(3, only=["Relu"]).model
    values = np.concatenate([v.ravel().astype(np.float64) for v in feeds_for(model, 3, special=True).values()
                             if v.dtype.kind == "f"] or [np.zeros(0)])
    assert values.size == 0 or np.isnan(values).any() or np.isinf(values).any() or (values == 0).any()


def test_generation_spreads_over_many_ops() -> None:
    histogram = op_histogram([generate(seed).model for seed in SEEDS])
    assert len(histogram) >= 40
