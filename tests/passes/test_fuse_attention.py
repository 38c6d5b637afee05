"""fuse_attention: the MatMul -> Softmax -> MatMul pattern becomes one pyc.Attention node only
where that is the same computation with nothing else reading the scores or the weights."""

from __future__ import annotations

from pathlib import Path

import onnx
from helpers import decisions, import_onnx, passes_before, run_passes
from onnx import helper
from ops.test_references import attention_model

UP_TO = passes_before("fuse_attention") + ["fuse_attention"]


def fused_ops(model: onnx.ModelProto, tmp_path: Path) -> list[str]:
    graph, _ = run_passes(import_onnx(model, tmp_path), UP_TO)
    return [n.op for n in graph.nodes]


def test_the_pattern_fuses_and_the_decision_says_why(tmp_path: Path) -> None:
    graph, ctx = run_passes(import_onnx(attention_model((2, 4), 9, 8, 11, 8, 0.3, True),
                                        tmp_path), UP_TO)
    [node] = graph.nodes
    assert node.op == "pyc.Attention" and len(node.ann.fused_from) == 3
    assert [i.op for i in node.ann.epilogue] == ["Mul", "Add"]  # the scale and the mask
    [entry] = decisions(ctx, "fuse_attention")
    assert "never written" in entry.reason


def test_scores_read_elsewhere_do_not_fuse(tmp_path: Path) -> None:
    model = attention_model((2,), 5, 4, 6, 3, None, False)
    model.graph.output.append(helper.make_tensor_value_info("p", onnx.TensorProto.FLOAT, [2, 5, 6]))
    assert "pyc.Attention" not in fused_ops(model, tmp_path)


def test_softmax_over_another_axis_does_not_fuse(tmp_path: Path) -> None:
    model = attention_model((2,), 5, 4, 6, 3, None, False)
    next(n for n in model.graph.node if n.op_type == "Softmax").attribute[0].i = 1
    assert "pyc.Attention" not in fused_ops(model, tmp_path)


def test_a_bias_after_the_second_matmul_stays_its_epilogue(tmp_path: Path) -> None:
    model = attention_model((2,), 5, 4, 6, 3, None, False)
    model.graph.node[-1].output[0] = "yy"
    model.graph.node.append(helper.make_node("Relu", ["yy"], ["y"]))
    # the Relu became the second MatMul's epilogue, which the attention kernel does not apply
    assert fused_ops(model, tmp_path) == ["MatMul", "Softmax", "MatMul"]


def test_broadcast_batch_dims_do_not_fuse(tmp_path: Path) -> None:
    model = attention_model((2,), 5, 4, 6, 3, None, False)
    model.graph.input[1].type.tensor_type.shape.dim[0].dim_value = 1  # Kt [1, D, T]
    assert "pyc.Attention" not in fused_ops(model, tmp_path)
