"""Shapes that depend on input values (issue #15, point 2): where an op bounds its output size
but the operand deciding it is computed from tensor data (a graph input), the output gets a
computed dim (0..bound, named after the node, marked in the IR as computed at run time)
instead of the PYC-E008 refusal; ops that bound nothing keep the refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from pyc_cli import api
from pyc_cli.errors import PycError
from pyc_cli.frontend.onnx_import import import_model
from pyc_cli.ir.symbolic import Dim, parse_input_shapes
from pyc_cli.ir.text import parse_graph, print_graph
from pyc_cli.ops.propagate import check_symbolic, propagate_types
from tests.helpers import init, make_model, write_model


def _topk_and_slice(tmp_path: Path) -> Path:
    """x[B, 10] -> TopK(k from an input) along axis 1 -> Relu; x -> Slice(starts/ends from
    inputs, axes [1], step 2) -> Neg."""
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], name="top", axis=1),
             helper.make_node("Relu", ["v"], ["y"], name="relu"),
             helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["s"],
                              name="cut"),
             helper.make_node("Neg", ["s"], ["z"], name="neg")]
    inputs = [helper.make_tensor_value_info("x", f32, ["B", 10]),
              helper.make_tensor_value_info("k", i64, [1]),
              helper.make_tensor_value_info("starts", i64, [1]),
              helper.make_tensor_value_info("ends", i64, [1])]
    outputs = [helper.make_tensor_value_info("y", f32, ["B", "K"]),
               helper.make_tensor_value_info("i", i64, ["B", "K"]),
               helper.make_tensor_value_info("z", f32, ["B", "C"])]
    model = make_model(nodes, inputs, outputs, [init("axes", np.array([1], np.int64)),
                                                init("steps", np.array([2], np.int64))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("batch", ["3", "batch:1..8"])
def test_value_dependent_sizes_get_computed_dims(tmp_path: Path, batch: str) -> None:
    shapes, _ = parse_input_shapes([f"x={batch},10", "k=1", "starts=1", "ends=1"])
    graph = import_model(_topk_and_slice(tmp_path), shapes)
    k = graph.types["v"].shape[1]
    assert isinstance(k, Dim) and str(k) == "rt_top_1"
    (bounds,) = k.dims().values()
    assert (bounds.lo, bounds.hi, bounds.computed) == (0, 10, "top")
    assert graph.types["i"].shape[1] == k and graph.types["y"].shape[1] == k
    cut = graph.types["z"].shape[1]
    assert str(cut) == "rt_cut_1" and cut.bounds() == (0, 5)  # ceil(10 / 2)
    check_symbolic(graph, propagate_types(graph))
    text = print_graph(graph)
    assert 'dim "rt_top_1" in [0,10] computed "top"' in text
    back = parse_graph(text)
    assert back.types == graph.types and print_graph(back) == text


def test_a_computed_dim_is_refused_by_kernels_that_cannot_read_it(tmp_path: Path) -> None:
    """TopK computes its K at run time (topk_runtime); CumSum has no kernel reading run-time
    dims: the build stops at E051 naming it. (TopK along a symbolic axis, this test's example
    before, now has kernels: tests/dynamic/test_topk_symbolic_axis.py.)"""
    i64 = TensorProto.INT64
    model = make_model([helper.make_node("TopK", ["x", "k"], ["v", "i"], name="top", axis=0),
                        helper.make_node("CumSum", ["v", "axis"], ["c"], name="cum")],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 10]),
                        helper.make_tensor_value_info("k", i64, [1])],
                       [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["K", 10]),
                        helper.make_tensor_value_info("i", i64, ["K", 10])],
                       [init("axis", np.array(0, np.int64))])
    shapes, _ = parse_input_shapes(["x=8,10", "k=1"])
    with pytest.raises(PycError) as info:
        api.compile_graph(write_model(model, tmp_path), "balanced", shapes, "cpu")
    assert info.value.code == "E051" and "rt_" in info.value.what and info.value.where == "node 'cum'"
    assert "computed at run time" in (info.value.hint or "") and "by node" in info.value.hint


def test_an_unbounded_size_keeps_the_refusal(tmp_path: Path) -> None:
    """Reshape to a shape given by an input bounds nothing: PYC-E008, as before."""
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
                               helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["A", "B"])], [])
    shapes, _ = parse_input_shapes(["x=2,6", "shape=2"])
    with pytest.raises(PycError) as info:
        import_model(write_model(model, tmp_path), shapes)
    assert info.value.code == "E008" and "'reshape'" in info.value.where
