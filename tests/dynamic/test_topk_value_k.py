"""TopK whose K is a graph input with declared values (`--input-values k=LO..HI`, issue #15
point 2): K is a value dim read at the entry, the outputs' axis has that size; every K of the
bounds matches onnxruntime (values and indices), over a static and a symbolic batch, in every
memory mode, outputs poisoned. A K past the row (declared bounds wider than it) or outside its
declared values is refused with PYC-E041 (before the fix, K compiled in as an undeclared C
name: the build failed with E020; and a K past the row would have read past the sort buffer).
K computed by the model at run time (from a symbolic dim, or arithmetic on a declared value)
matches onnxruntime too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.errors import PycError
from tests.dynamic.checks import poison_outputs
from tests.helpers import make_model, vinfo, write_model

ROW = 10


def _topk(tmp_path: Path, batch: int | str, largest: int) -> Path:
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, largest=largest)
    model = make_model([node], [vinfo("x", [batch, ROW]), vinfo("k", [1], TensorProto.INT64)],
                       [vinfo("v", [batch, "k"]), vinfo("i", [batch, "k"], TensorProto.INT64)])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", ["latency_first", "balanced", "memory_first"])
@pytest.mark.parametrize("batch,largest", [(3, 1), ("batch", 0)])
def test_every_k_of_the_bounds_matches_onnxruntime(mode: str, batch: int | str, largest: int,
                                                   tmp_path: Path, rng: np.random.Generator,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    poison_outputs(monkeypatch)
    path = _topk(tmp_path, batch, largest)
    shapes = {"x": ("batch:1..4", ROW)} if batch == "batch" else None
    built = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes,
                          input_values={"k": (1, ROW)})
    session = ort.InferenceSession(str(path))
    with pyc_cli.load(built.artifact) as model:
        for rows, k in ((1, 1), (4, 4), (2, ROW), (3, 7)):
            feeds = {"x": rng.standard_normal((rows if batch == "batch" else 3, ROW)).astype(np.float32),
                     "k": np.array([k], np.int64)}
            got = model.run(feeds)
            values, indices = session.run(None, feeds)
            np.testing.assert_array_equal(got["v"], values)
            np.testing.assert_array_equal(got["i"], indices)


def test_k_past_the_row_or_its_declared_values_is_refused(tmp_path: Path,
                                                          rng: np.random.Generator) -> None:
    built = pyc_cli.build(_topk(tmp_path, 3, 1), tmp_path / "art", input_values={"k": (2, ROW + 2)})
    x = rng.standard_normal((3, ROW)).astype(np.float32)
    with pyc_cli.load(built.artifact) as model:
        for k in (ROW + 1, ROW + 2, 1, ROW + 3):  # past the row; below / past the declared values
            with pytest.raises(PycError) as caught:
                model.run({"x": x, "k": np.array([k], np.int64)})
            assert caught.value.code == "E041", k
        np.testing.assert_array_equal(model.run({"x": x, "k": np.array([ROW], np.int64)})["i"][0],
                                      np.argsort(-x[0], kind="stable"))


def _int64(name: str, values: list[int]) -> helper.NodeProto:
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(
        name, TensorProto.INT64, [len(values)], values))


# K computed at run time: a symbolic dim (a full sort of a row of any length), min(n, 4) over
# it, and a declared input value plus one
COMPUTED_K = {
    "shape": ([helper.make_node("Shape", ["x"], ["kk"], start=1, end=2)], False),
    "min_of_shape": ([helper.make_node("Shape", ["x"], ["s"], start=1, end=2), _int64("four", [4]),
                      helper.make_node("Min", ["s", "four"], ["kk"])], False),
    "value_plus_one": ([_int64("one", [1]), helper.make_node("Add", ["k", "one"], ["kk"])], True),
}


@pytest.mark.parametrize("case", sorted(COMPUTED_K))
def test_k_computed_at_run_time_matches_onnxruntime(case: str, tmp_path: Path,
                                                    rng: np.random.Generator,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    poison_outputs(monkeypatch)
    nodes, from_value = COMPUTED_K[case]
    inputs = ([vinfo("x", [3, ROW]), vinfo("k", [1], TensorProto.INT64)] if from_value
              else [vinfo("x", ["b", "n"])])
    model = make_model(nodes + [helper.make_node("TopK", ["x", "kk"], ["v", "i"], axis=1)], inputs,
                       [vinfo("v", ["r", "c"]), vinfo("i", ["r", "c"], TensorProto.INT64)])
    path = write_model(model, tmp_path)
    built = pyc_cli.build(path, tmp_path / "art",
                          input_values={"k": (1, ROW - 1)} if from_value else None,
                          input_shapes=None if from_value else {"x": ("b:1..4", "n:1..16")})
    session = ort.InferenceSession(str(path))
    sizes = [(3, ROW)] * 4 if from_value else [(1, 1), (4, 16), (2, 3), (3, 9)]
    with pyc_cli.load(built.artifact) as model_:
        for index, shape in enumerate(sizes):
            feeds = {"x": rng.standard_normal(shape).astype(np.float32)}
            if from_value:
                feeds["k"] = np.array([(1, ROW - 1, 4, 6)[index]], np.int64)
            got = model_.run(feeds)
            values, indices = session.run(None, feeds)
            np.testing.assert_array_equal(got["v"], values)
            np.testing.assert_array_equal(got["i"], indices)
