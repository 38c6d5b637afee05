"""Issue #15, point 2: sizes that depend on input *values*, computed at run time. The node that
computes such a size writes it into the run-time dims (a computed dim, bounded by the input
values declared with `input_values` / `--input-values`, or by the op's semantics), the nodes
after it read it there, the arena is sized for the bound, and outputs come back at their actual
shapes. Checked against onnxruntime on values across the declared bounds, output buffers
poisoned with NaN (every element of the actual shape must be written)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import onnxruntime_outputs
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.errors import PycError
from tests.dynamic.checks import poison_outputs
from tests.helpers import init, make_model, write_model


def _range_model(tmp_path: Path) -> Path:
    """y = sin(float(Range(start, limit, 2)) * scale): an iota whose count the inputs decide."""
    nodes = [helper.make_node("Range", ["start", "limit", "two"], ["r"]),
             helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["rf", "scale"], ["s"]),
             helper.make_node("Sin", ["s"], ["y"])]
    model = make_model(nodes, [helper.make_tensor_value_info("start", TensorProto.INT64, []),
                               helper.make_tensor_value_info("limit", TensorProto.INT64, []),
                               helper.make_tensor_value_info("scale", TensorProto.FLOAT, [])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
                       [init("two", np.array(2, np.int64))])
    return write_model(model, tmp_path)


def test_range_to_input_values_runs_at_every_count(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = _range_model(tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", input_values={"start": (-10, 10),
                                                                 "limit": (0, 64)})
    # the count's bound: ceil((64 - (-10)) / 2) = 37 elements
    assert result.graph.types["y"].shape[0].bounds() == (0, 37)
    poison_outputs(monkeypatch)
    rng = np.random.default_rng(0)
    with pyc_cli.load(tmp_path / "art") as model:
        for start, limit in [(0, 10), (-10, 64), (3, 3), (7, 1), (-3, 0), (1, 2), (9, 64)]:
            feeds = {"start": np.array(start, np.int64), "limit": np.array(limit, np.int64),
                     "scale": np.array(rng.uniform(0.1, 1.0), np.float32)}
            want = onnxruntime_outputs(path, feeds)["y"]
            got = model.run(feeds)["y"]
            assert got.shape == want.shape == (max(0, -(-(limit - start) // 2)),)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        # a count past the bound the arena was sized for is refused, nothing overflows
        with pytest.raises(PycError) as refused:
            model.run({"start": np.array(-20, np.int64), "limit": np.array(64, np.int64),
                       "scale": np.array(1.0, np.float32)})
        assert refused.value.code == "E041" and "--input-values" in (refused.value.hint or "")


def test_range_without_declared_values_asks_for_them(tmp_path: Path) -> None:
    with pytest.raises(PycError) as refused:
        pyc_cli.build(_range_model(tmp_path), tmp_path / "art")
    assert refused.value.code == "E008" and "--input-values" in (refused.value.hint or "")


def test_input_values_name_an_input(tmp_path: Path) -> None:
    with pytest.raises(PycError) as refused:
        pyc_cli.build(_range_model(tmp_path), tmp_path / "art", input_values={"nope": (0, 1)})
    assert refused.value.code == "E050" and "'nope'" in refused.value.what
    with pytest.raises(PycError) as malformed:
        pyc_cli.build(_range_model(tmp_path), tmp_path / "art", input_values={"limit": (5, 1)})
    assert malformed.value.code == "E050"
