"""fuse_attention: the MatMul -> Softmax -> MatMul pattern becomes one pyc.Attention node only
where that is the same computation with nothing else reading the scores or the weights."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from helpers import decisions, import_onnx, passes_before, run_passes
from onnx import helper
from ops.test_references import attention_model

from pyc_cli.errors import PycError
from pyc_cli.ir.verify import verify
from pyc_cli.ops import registry
from pyc_cli.passes.context import BuildOptions, PassContext
from pyc_cli.targets import get_target

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


# ---------------------------------------------------------------- the heads' Transposes
# Q, K, V reshaped into heads and transposed, the output transposed back: the Transposes fold
# into pyc.Attention as layout permutations where the target's kernel reads them (CUDA), and
# stay where it does not (the CPU kernel's vector loads run along contiguous Kt rows)


def _heads_model(rng: np.random.Generator, k_transposed: bool = True) -> onnx.ModelProto:
    sys.path.insert(0, str(Path(__file__).parents[1] / "targets" / "cuda"))
    from attention_cases import head_attention_model

    return head_attention_model(2, 3, 5, 7, 4, 6, 0.3, rng, k_transposed=k_transposed)


def _cuda_ctx() -> PassContext:
    return PassContext(BuildOptions(), target=get_target("cuda"))


def test_the_cuda_target_folds_the_head_transposes(tmp_path: Path, rng: np.random.Generator) -> None:
    """The four Transposes become the node's q_perm, kt_perm, v_perm and y_perm; it reads the
    Reshapes' [B, S, H, D] views and writes [B, S, H, E]; the shape rule (run by the verifier
    after the pass) agrees, the decision log says so, and the node's reference (its evaluate,
    through the permutations) equals onnxruntime on the original model."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "targets" / "cuda"))
    from attention_cases import head_feeds

    model = _heads_model(rng)
    graph, ctx = run_passes(import_onnx(model, tmp_path), UP_TO, _cuda_ctx())
    assert "Transpose" not in [n.op for n in graph.nodes]
    [node] = [n for n in graph.nodes if n.op == "pyc.Attention"]
    assert node.attrs == {"q_perm": [0, 2, 1, 3], "kt_perm": [0, 2, 3, 1],
                          "v_perm": [0, 2, 1, 3], "y_perm": [0, 2, 1, 3]}
    assert graph.types[node.inputs[1]].shape == (2, 7, 3, 4)   # K's [B, T, H, D] view
    assert graph.types[node.outputs[0]].shape == (2, 5, 3, 6)  # [B, S, H, E]
    assert registry.get(node.op).kernel_params(node, graph) == {
        "batch": [2, 3], "S": 5, "D": 4, "T": 7, "E": 6}
    [entry] = decisions(ctx, "fold_head_transposes")
    assert entry.before == 5 and entry.after == 1
    feeds = head_feeds(model, rng)
    values = {**graph.constants, **feeds}
    for n in graph.nodes:  # views and the attention, by their references
        outs = registry.get(n.op).evaluate(n, [values[v] if v else None for v in n.inputs])
        values.update(zip(n.outputs, outs))
    [want] = onnxruntime.InferenceSession(model.SerializeToString()).run(None, feeds)
    np.testing.assert_allclose(values["y"], want, rtol=1e-5, atol=1e-6)


def test_a_missing_transpose_folds_the_others(tmp_path: Path, rng: np.random.Generator) -> None:
    """Kt given as an input [B, H, D, T]: no kt_perm, the other three fold."""
    graph, _ = run_passes(import_onnx(_heads_model(rng, k_transposed=False), tmp_path), UP_TO,
                          _cuda_ctx())
    [node] = [n for n in graph.nodes if n.op == "pyc.Attention"]
    assert sorted(node.attrs) == ["q_perm", "v_perm", "y_perm"]
    assert "Transpose" not in [n.op for n in graph.nodes]


def test_a_transpose_read_elsewhere_stays(tmp_path: Path, rng: np.random.Generator) -> None:
    """V's heads also a graph output: its Transpose stays (its result must be written), the
    others fold."""
    model = _heads_model(rng)
    model.graph.output.append(helper.make_tensor_value_info("vh", onnx.TensorProto.FLOAT, [2, 3, 7, 6]))
    graph, _ = run_passes(import_onnx(model, tmp_path), UP_TO, _cuda_ctx())
    [node] = [n for n in graph.nodes if n.op == "pyc.Attention"]
    assert "v_perm" not in node.attrs and "q_perm" in node.attrs
    assert [n.op for n in graph.nodes].count("Transpose") == 1


def test_the_cpu_target_keeps_the_head_transposes(tmp_path: Path, rng: np.random.Generator) -> None:
    graph, ctx = run_passes(import_onnx(_heads_model(rng), tmp_path), UP_TO)
    assert [n.op for n in graph.nodes].count("Transpose") == 4
    assert not [n for n in graph.nodes if n.op == "pyc.Attention"][0].attrs
    [entry] = decisions(ctx, "keep_head_transposes")
    assert "permutation" in entry.reason


def test_a_bad_permutation_is_refused_by_the_shape_rule(tmp_path: Path, rng: np.random.Generator) -> None:
    graph, _ = run_passes(import_onnx(_heads_model(rng), tmp_path), UP_TO, _cuda_ctx())
    [node] = [n for n in graph.nodes if n.op == "pyc.Attention"]
    node.attrs["kt_perm"] = [0, 2, 3, 3]
    with pytest.raises(PycError, match="E090"):
        verify(graph, registry.lookup, after="test")


def test_self_attention_projections_merge_into_one_gemm(tmp_path: Path, rng: np.random.Generator) -> None:
    """Q, K and V projected from one input: one MatMul over [Wq | Wk | Wv] (and the biases
    concatenated), viewed as [B, S, 3, H, D], the attention reading part 0, 1, 2 of it; the
    graph computes what onnxruntime does on the original model."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "targets" / "cuda"))
    from attention_cases import head_attention_model, head_feeds

    model = head_attention_model(2, 3, 5, 5, 4, 4, 0.3, rng, self_attention=True)
    graph, ctx = run_passes(import_onnx(model, tmp_path), UP_TO, _cuda_ctx())
    # (the output, a view of the attention's, is copied out as any view output is)
    assert [n.op for n in graph.nodes] == ["MatMul", "Reshape", "pyc.Attention", "Reshape", "pyc.Copy"]
    mm, view, node, *_ = graph.nodes
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(graph.constants[mm.inputs[1]], np.concatenate(
        [weights["w_q"], weights["w_k"], weights["w_v"]], axis=1))
    np.testing.assert_array_equal(graph.constants[mm.inputs[2]], np.concatenate(
        [weights["b_q"], weights["b_k"], weights["b_v"]]))
    assert graph.types[view.outputs[0]].shape == (2, 5, 3, 3, 4)
    assert node.inputs[:3] == [view.outputs[0]] * 3
    assert [node.attrs[k] for k in ("q_select", "kt_select", "v_select")] == [[2, 0], [2, 1], [2, 2]]
    [entry] = decisions(ctx, "merge_qkv_projections")
    assert entry.before == 6 and entry.after == 2
    assert [str(i) for i in mm.ann.epilogue] == ["t0:f32=Add(acc,in0)"]  # the bias
    feeds = head_feeds(model, rng)
    values = {**graph.constants, **feeds}
    for n in graph.nodes:  # MatMul's reference leaves its epilogue out: the bias added here
        outs = registry.get(n.op).evaluate(n, [values[v] if v else None for v in n.inputs])
        if n is mm:
            outs = [outs[0] + values[mm.inputs[2]]]
        values.update(zip(n.outputs, outs))
    [want] = onnxruntime.InferenceSession(model.SerializeToString()).run(None, feeds)
    np.testing.assert_allclose(values["y"], want, rtol=1e-5, atol=1e-5)


def test_projections_of_two_inputs_do_not_merge(tmp_path: Path, rng: np.random.Generator) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "targets" / "cuda"))
    from attention_cases import head_attention_model

    model = head_attention_model(2, 3, 5, 5, 4, 4, 0.3, rng, project=True)  # x and kv
    graph, ctx = run_passes(import_onnx(model, tmp_path), UP_TO, _cuda_ctx())
    assert [n.op for n in graph.nodes].count("MatMul") == 3
    assert not decisions(ctx, "merge_qkv_projections")
