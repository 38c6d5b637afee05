"""Issue #15: the ops bind_shapes leaves with symbolic attributes outside BERT's pattern run at
every shape of their bounds, against onnxruntime: ConstantOfShape and Expand to a Shape
(broadcasts of a run-time size), Range to a Shape's element (an iota of a run-time count) times
that element (`seq` read as data: pyc.DimValues), and
a Slice whose end is computed from a Shape (`x[:, :seq-1]`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import onnxruntime_outputs
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.ir.symbolic import parse_input_shapes
from tests.dynamic.checks import runs_match_onnxruntime
from tests.helpers import init, make_model, rand, write_model

D = 8
RUNS = [(1, 2), (1, 9), (3, 5), (4, 32), (2, 2)]
RTOL, ATOL = 1e-6, 1e-6  # a few float32 operations in the same order as onnxruntime's


def _model(tmp_path: Path) -> Path:
    """x[batch, seq, D] -> (x + fill(shape(x))) * expand(bias, shape(x)) + (iota(seq) * seq)[:, None],
    then its first seq-1 positions (`seq - 1` of a Gather'd scalar: a symbolic Slice end)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("ConstantOfShape", ["s"], ["fill"], name="fill",
                         value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
        helper.make_node("Add", ["x", "fill"], ["a"], name="add_fill"),
        helper.make_node("Expand", ["bias", "s"], ["e"], name="expand_bias"),
        helper.make_node("Mul", ["a", "e"], ["m"], name="mul_bias"),
        helper.make_node("Gather", ["s", "one"], ["seq"], name="seq_of", axis=0),
        helper.make_node("Range", ["zero", "seq", "one"], ["iota"], name="iota"),
        helper.make_node("Mul", ["iota", "seq"], ["iota_seq"], name="times_seq"),  # dims as data
        helper.make_node("Cast", ["iota_seq"], ["iota_f"], name="iota_f", to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["iota_f", "minus_one"], ["iota_col"], name="iota_col"),
        helper.make_node("Add", ["m", "iota_col"], ["p"], name="add_iota"),
        helper.make_node("Sub", ["seq", "one"], ["end"], name="end"),
        helper.make_node("Unsqueeze", ["end", "zero_v"], ["ends"], name="ends"),
        helper.make_node("Slice", ["p", "zero_v", "ends", "one_v"], ["y"], name="head"),
    ]
    inits = [init("bias", rand(rng, 1, 1, D)), init("one", np.array(1, np.int64)),
             init("zero", np.array(0, np.int64)), init("minus_one", np.array([-1], np.int64)),
             init("zero_v", np.array([0], np.int64)), init("one_v", np.array([1], np.int64))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", D])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq_1", D])
    return write_model(make_model(nodes, [x], [y], inits), tmp_path, "shape_ops.onnx")


def test_shape_ops_run_every_shape_in_their_bounds(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(tmp_path)
    shapes, _ = parse_input_shapes([f"x=batch:1..4,seq:2..32,{D}"])
    built = pyc_cli.build(model, tmp_path / "art", input_shapes=shapes).artifact
    runs_match_onnxruntime(model, built, lambda r, b, s: {"x": rand(r, b, s, D)}, RUNS, RTOL, ATOL,
                           monkeypatch)


def _table_after_matmul(tmp_path: Path, hidden: int = 24, rows: int = 64) -> Path:
    """y = x[batch, seq, D] @ W + table[:seq] (a positional table sliced to the run-time seq,
    broadcast over the batch: the GEMM's fused epilogue indexes it modulo seq * hidden)."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Slice", ["s", "one_v", "two_v"], ["seq_v"], name="seq_of"),
        helper.make_node("Slice", ["table", "zero_v", "seq_v"], ["pos"], name="positions"),
        helper.make_node("MatMul", ["x", "w"], ["m"], name="project"),
        helper.make_node("Add", ["m", "pos"], ["y"], name="add_positions"),
    ]
    inits = [init("table", rand(rng, rows, hidden)), init("w", rand(rng, D, hidden, scale=0.3)),
             init("zero_v", np.array([0], np.int64)), init("one_v", np.array([1], np.int64)),
             init("two_v", np.array([2], np.int64))]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", D])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", hidden])
    return write_model(make_model(nodes, [x], [y], inits), tmp_path, "table_after_matmul.onnx")


def test_a_gemm_epilogue_broadcasts_a_table_of_symbolic_rows(tmp_path: Path) -> None:
    model = _table_after_matmul(tmp_path)
    shapes, _ = parse_input_shapes([f"x=batch:1..4,seq:1..64,{D}"])
    built = pyc_cli.build(model, tmp_path / "art", input_shapes=shapes).artifact
    source = "\n".join(p.read_text() for p in (built / "src").glob("*.c"))
    assert "% (" in source  # the table indexed modulo its run-time size, in the GEMM
    rng = np.random.default_rng()
    with pyc_cli.load(built) as compiled:
        for batch, seq in [(1, 1), (2, 7), (4, 64), (3, 33)]:
            feeds = {"x": rand(rng, batch, seq, D)}
            want = onnxruntime_outputs(model, feeds)["y"]
            np.testing.assert_allclose(compiled.run(feeds)["y"], want, rtol=1e-5, atol=1e-5,
                                       err_msg=f"batch {batch}, seq {seq}")
