"""Per-pass before/after tests on tiny graphs (built with onnx.helper or directly in IR)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import (
    REFERENCE_MODELS,
    batchnorm_ref,
    conv2d_nchw,
    decisions,
    evaluate_graph,
    import_onnx,
    init,
    make_model,
    passes_before,
    rand,
    run_passes,
    vinfo,
    write_model,
)
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.ir.ewprogram import format_program, literal, parse_program
from pyc_cli.ir.graph import Graph
from pyc_cli.ir.text import print_graph
from pyc_cli.ir.types import DType
from pyc_cli.ops import registry
from pyc_cli.targets import get_target

node = helper.make_node


def ops(graph: Graph) -> list[str]:
    return [n.op for n in graph.nodes]


def by_name(graph: Graph, name: str):  # noqa: ANN201
    matches = [n for n in graph.nodes if n.name == name]
    assert len(matches) == 1, f"no single node {name!r} in {[n.name for n in graph.nodes]}"
    return matches[0]


def canonicalized(model, tmp_path, shapes=None):  # noqa: ANN001, ANN201
    """(graph as imported, graph after canonicalize, ctx)."""
    before = import_onnx(model, tmp_path, shapes)
    after, ctx = run_passes(before, ["canonicalize"])
    return before, after, ctx


def assert_same_function(before: Graph, after: Graph, feeds: dict[str, np.ndarray],
                         rtol: float = 1e-5, atol: float = 1e-5) -> None:
    expected = evaluate_graph(before, feeds)
    got = evaluate_graph(after, feeds)
    assert list(got) == list(expected)
    for name in expected:
        assert got[name].shape == expected[name].shape, name
        np.testing.assert_allclose(got[name], expected[name], rtol=rtol, atol=atol, err_msg=name)


# ================================================================ canonicalize: Identity / Dropout


@pytest.mark.parametrize("op", ["Identity", "Dropout"])
def test_noop_removed_between_nodes(op: str, tmp_path) -> None:  # noqa: ANN001
    model = make_model([node("Relu", ["x"], ["r"], name="relu"),
                        node(op, ["r"], ["i"], name="noop"),
                        node("Exp", ["i"], ["y"], name="exp")],
                       [vinfo("x", (2, 3))], [vinfo("y", (2, 3))])
    expected = make_model([node("Relu", ["x"], ["r"], name="relu"),
                           node("Exp", ["r"], ["y"], name="exp")],
                          [vinfo("x", (2, 3))], [vinfo("y", (2, 3))])
    before, after, ctx = canonicalized(model, tmp_path)
    assert print_graph(after) == print_graph(import_onnx(expected, tmp_path, name="e.onnx"))
    [decision] = decisions(ctx, f"remove_{op.lower()}")
    assert decision.nodes == ["noop"] and decision.after == "removed"
    assert_same_function(before, after, {"x": rand(np.random.default_rng(0), 2, 3)})


@pytest.mark.parametrize("op", ["Identity", "Dropout"])
def test_noop_removed_when_its_output_is_a_graph_output(op: str, tmp_path) -> None:  # noqa: ANN001
    model = make_model([node("Relu", ["x"], ["r"], name="relu"),
                        node(op, ["r"], ["y"], name="noop")],
                       [vinfo("x", (2, 3))], [vinfo("y", (2, 3))])
    before, after, ctx = canonicalized(model, tmp_path)
    # the public output name is kept; the producer now defines it directly
    assert after.outputs == ["y"]
    assert ops(after) == ["Relu"] and after.nodes[0].outputs == ["y"]
    assert "r" not in after.types
    assert decisions(ctx, f"remove_{op.lower()}")[0].after == "renamed"
    assert_same_function(before, after, {"x": rand(np.random.default_rng(1), 2, 3)})


@pytest.mark.parametrize("op", ["Identity", "Dropout"])
def test_noop_on_graph_input_to_output_becomes_copy(op: str, tmp_path) -> None:  # noqa: ANN001
    model = make_model([node(op, ["x"], ["y"], name="noop")],
                       [vinfo("x", (2, 3))], [vinfo("y", (2, 3))])
    before, after, _ = canonicalized(model, tmp_path)
    assert ops(after) == ["pyc.Copy"]
    assert after.nodes[0].inputs == ["x"] and after.outputs == ["y"]
    assert_same_function(before, after, {"x": rand(np.random.default_rng(2), 2, 3)})


def test_identity_output_whose_source_has_other_users(tmp_path) -> None:  # noqa: ANN001
    """r feeds Identity (a graph output) and Exp: r cannot simply be renamed to y."""
    model = make_model([node("Relu", ["x"], ["r"], name="relu"),
                        node("Identity", ["r"], ["y"], name="noop"),
                        node("Exp", ["r"], ["z"], name="exp")],
                       [vinfo("x", (2, 3))], [vinfo("y", (2, 3)), vinfo("z", (2, 3))])
    before, after, _ = canonicalized(model, tmp_path)
    assert "Identity" not in ops(after)
    assert after.outputs == ["y", "z"]
    producers = after.producers()
    assert producers["y"].op == "pyc.Copy" and producers["y"].inputs == ["r"]
    assert producers["z"].inputs == ["r"]
    assert_same_function(before, after, {"x": rand(np.random.default_rng(3), 2, 3)})


def test_identity_of_a_view_output_becomes_copy(tmp_path) -> None:  # noqa: ANN001
    model = make_model([node("Relu", ["x"], ["r"]),
                        node("Reshape", ["r", "shape"], ["v"]),
                        node("Identity", ["v"], ["y"])],
                       [vinfo("x", (2, 3))], [vinfo("y", (6,))],
                       [init("shape", np.array([6], np.int64))])
    before, after, _ = canonicalized(model, tmp_path)
    producer = after.producers()["y"]
    assert producer.op == "pyc.Copy"  # an output must own its buffer, not alias r
    assert registry.get(after.producers()[producer.inputs[0]].op).category == registry.VIEW
    assert_same_function(before, after, {"x": rand(np.random.default_rng(4), 2, 3)})


# ================================================================ canonicalize: Gemm


def _gemm_ref(a, b, c, alpha, beta, trans_a, trans_b):  # noqa: ANN001, ANN202
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    out = alpha * ((a64.T if trans_a else a64) @ (b64.T if trans_b else b64))
    return out if c is None else out + beta * c.astype(np.float64)


def test_gemm_with_trans_alpha_beta_constant_b_and_c(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(10)
    m, k, n = 3, 5, 4
    b, c = rand(rng, n, k), rand(rng, n)
    model = make_model([node("Gemm", ["a", "b", "c"], ["y"], name="gemm", transA=1, transB=1,
                             alpha=0.5, beta=2.0)],
                       [vinfo("a", (k, m))], [vinfo("y", (m, n))], [init("b", b), init("c", c)])
    before, after, ctx = canonicalized(model, tmp_path)
    assert "Gemm" not in ops(after)
    assert sorted(ops(after)) == sorted(["Transpose", "MatMul", "Mul", "Add"])
    transposes = list(after.walk(["Transpose"]))
    assert [t.inputs for t in transposes] == [["a"]]  # only A: constant B is stored transposed
    matmul = next(after.walk(["MatMul"]))
    assert matmul.name == "gemm"
    assert after.is_constant(matmul.inputs[1])
    np.testing.assert_array_equal(after.constants[matmul.inputs[1]], b.T)
    assert after.producers()["y"].op == "Add" and after.outputs == ["y"]
    assert decisions(ctx, "gemm_to_matmul")
    a = rand(rng, k, m)
    got = evaluate_graph(after, {"a": a})["y"]
    np.testing.assert_allclose(got, _gemm_ref(a, b, c, 0.5, 2.0, True, True), rtol=1e-5, atol=1e-5)
    assert_same_function(before, after, {"a": a})


def test_gemm_with_runtime_b_and_c(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(11)
    m, k, n = 2, 3, 4
    model = make_model([node("Gemm", ["a", "b", "c"], ["y"], transB=1, alpha=-1.5, beta=0.25)],
                       [vinfo("a", (m, k)), vinfo("b", (n, k)), vinfo("c", (m, n))],
                       [vinfo("y", (m, n))])
    _, after, _ = canonicalized(model, tmp_path)
    assert "Gemm" not in ops(after)
    assert [t.inputs for t in after.walk(["Transpose"])] == [["b"]]
    # beta scales the runtime C with a Mul of its own
    assert any("c" in n.inputs for n in after.walk(["Mul"]))
    feeds = {"a": rand(rng, m, k), "b": rand(rng, n, k), "c": rand(rng, m, n)}
    got = evaluate_graph(after, feeds)["y"]
    np.testing.assert_allclose(got, _gemm_ref(feeds["a"], feeds["b"], feeds["c"], -1.5, 0.25,
                                              False, True), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("alpha", "beta", "with_c", "expected_ops"), [
    (1.0, 1.0, True, ["MatMul", "Add"]),
    (1.0, 1.0, False, ["MatMul"]),
    (2.0, 0.0, True, ["MatMul", "Mul"]),
    (1.0, 3.0, True, ["MatMul", "Add"]),  # constant C is pre-scaled, no Mul
])
def test_gemm_minimal_rewrites(alpha, beta, with_c, expected_ops, tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(12)
    b, c = rand(rng, 3, 4), rand(rng, 4)
    inputs = ["a", "b", "c"] if with_c else ["a", "b"]
    inits = [init("b", b)] + ([init("c", c)] if with_c else [])
    model = make_model([node("Gemm", inputs, ["y"], alpha=alpha, beta=beta)],
                       [vinfo("a", (2, 3))], [vinfo("y", (2, 4))], inits)
    _, after, _ = canonicalized(model, tmp_path)
    assert ops(after) == expected_ops
    assert after.nodes[-1].outputs == ["y"]
    a = rand(rng, 2, 3)
    got = evaluate_graph(after, {"a": a})["y"]
    np.testing.assert_allclose(got, _gemm_ref(a, b, c if with_c else None, alpha, beta, False,
                                              False), rtol=1e-5, atol=1e-5)


# ================================================================ canonicalize: BatchNormalization


def _bn_params(rng: np.random.Generator, channels: int) -> dict[str, np.ndarray]:
    return {"gamma": rand(rng, channels), "beta": rand(rng, channels),
            "mean": rand(rng, channels),
            "var": (np.abs(rng.standard_normal(channels)) + 0.2).astype(np.float32)}


def _bn_inits(params: dict[str, np.ndarray]) -> list:
    return [init(k, v) for k, v in params.items()]


@pytest.mark.parametrize("with_bias", [True, False])
def test_batchnorm_folds_into_single_use_conv(with_bias: bool, tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(20)
    w, b = rand(rng, 4, 3, 3, 3), rand(rng, 4)
    params = _bn_params(rng, 4)
    conv_inputs = ["x", "w", "b"] if with_bias else ["x", "w"]
    model = make_model(
        [node("Conv", conv_inputs, ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"], name="bn",
              epsilon=1e-3),
         ],
        [vinfo("x", (2, 3, 6, 5))], [vinfo("y", (2, 4, 6, 5))],
        [init("w", w)] + ([init("b", b)] if with_bias else []) + _bn_inits(params))
    _, after, ctx = canonicalized(model, tmp_path)
    assert ops(after) == ["Conv"]
    conv = after.nodes[0]
    assert conv.outputs == ["y"] and conv.inputs[0] == "x" and len(conv.inputs) == 3
    assert all(after.is_constant(i) for i in conv.inputs[1:])
    [decision] = decisions(ctx, "fold_batchnorm_into_conv")
    assert set(decision.nodes) == {"bn", "conv"}
    folded_w, folded_b = after.constants[conv.inputs[1]], after.constants[conv.inputs[2]]
    assert folded_w.dtype == np.float32 and folded_w.shape == w.shape and folded_b.shape == (4,)
    # numerically: conv with folded weights == batchnorm(conv with original weights)
    x = rand(rng, 2, 3, 6, 5)
    expected = batchnorm_ref(conv2d_nchw(x, w, b if with_bias else None, (1, 1, 1, 1)),
                             params["gamma"], params["beta"], params["mean"], params["var"],
                             eps=1e-3)
    got = conv2d_nchw(x, folded_w, folded_b, (1, 1, 1, 1))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(evaluate_graph(after, {"x": x})["y"], expected,
                               rtol=1e-4, atol=1e-4)


def test_batchnorm_fold_with_conv_weights_shared_by_two_convs(tmp_path) -> None:  # noqa: ANN001
    """Folding must not rewrite a weight in place: the other conv still needs its own BN."""
    rng = np.random.default_rng(24)
    w = rand(rng, 4, 3, 1, 1)
    pa, pb = _bn_params(rng, 4), _bn_params(rng, 4)
    inits = [init("w", w)] + [init(f"a_{k}", v) for k, v in pa.items()] + \
        [init(f"b_{k}", v) for k, v in pb.items()]
    bn_inputs = lambda p: [f"{p}_{k}" for k in ("gamma", "beta", "mean", "var")]  # noqa: E731
    model = make_model(
        [node("Conv", ["x", "w"], ["c1"], kernel_shape=[1, 1]),
         node("BatchNormalization", ["c1", *bn_inputs("a")], ["y1"]),
         node("Conv", ["x", "w"], ["c2"], kernel_shape=[1, 1]),
         node("BatchNormalization", ["c2", *bn_inputs("b")], ["y2"])],
        [vinfo("x", (1, 3, 2, 2))], [vinfo("y1", (1, 4, 2, 2)), vinfo("y2", (1, 4, 2, 2))], inits)
    _, after, ctx = canonicalized(model, tmp_path)
    assert ops(after) == ["Conv", "Conv"] and len(decisions(ctx, "fold_batchnorm_into_conv")) == 2
    assert after.nodes[0].inputs[1] != after.nodes[1].inputs[1]
    x = rand(rng, 1, 3, 2, 2)
    got = evaluate_graph(after, {"x": x})
    conv = conv2d_nchw(x, w)
    np.testing.assert_allclose(got["y1"], batchnorm_ref(conv, *pa.values()), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["y2"], batchnorm_ref(conv, *pb.values()), rtol=1e-4, atol=1e-4)


def _check_bn_became_mul_add(after: Graph, bn_input: str) -> None:
    assert "BatchNormalization" not in ops(after)
    producer = after.producers()["y"]
    assert producer.op == "Add"
    mul = after.producers()[producer.inputs[0]]
    assert mul.op == "Mul" and mul.inputs[0] == bn_input
    assert after.is_constant(mul.inputs[1]) and after.is_constant(producer.inputs[1])
    # per-channel constants broadcast over N,C,H,W: shape (C,1,1)
    assert after.constants[mul.inputs[1]].shape == (4, 1, 1)


def test_batchnorm_after_conv_with_two_users_becomes_mul_add(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(21)
    w = rand(rng, 4, 3, 1, 1)
    params = _bn_params(rng, 4)
    model = make_model(
        [node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
         node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"], name="bn"),
         node("Relu", ["c"], ["z"], name="relu")],
        [vinfo("x", (1, 3, 4, 4))], [vinfo("y", (1, 4, 4, 4)), vinfo("z", (1, 4, 4, 4))],
        [init("w", w)] + _bn_inits(params))
    _, after, ctx = canonicalized(model, tmp_path)
    assert not decisions(ctx, "fold_batchnorm_into_conv")
    conv = by_name(after, "conv")
    assert conv.inputs == ["x", "w"]  # weights untouched: z still needs the raw conv output
    np.testing.assert_array_equal(after.constants["w"], w)
    _check_bn_became_mul_add(after, "c")
    x = rand(rng, 1, 3, 4, 4)
    conv_out = conv2d_nchw(x, w)
    got = evaluate_graph(after, {"x": x})
    np.testing.assert_allclose(got["y"], batchnorm_ref(conv_out, *params.values()),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["z"], np.maximum(conv_out, 0), rtol=1e-4, atol=1e-4)


def test_batchnorm_after_conv_whose_output_is_graph_output_is_not_folded(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(22)
    w = rand(rng, 4, 3, 1, 1)
    params = _bn_params(rng, 4)
    model = make_model(
        [node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
         node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"])],
        [vinfo("x", (1, 3, 4, 4))], [vinfo("c", (1, 4, 4, 4)), vinfo("y", (1, 4, 4, 4))],
        [init("w", w)] + _bn_inits(params))
    before, after, ctx = canonicalized(model, tmp_path)
    assert not decisions(ctx, "fold_batchnorm_into_conv")
    _check_bn_became_mul_add(after, "c")
    assert_same_function(before, after, {"x": rand(rng, 1, 3, 4, 4)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("producer", ["Relu", None])
def test_batchnorm_after_non_conv_becomes_mul_add(producer, tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(23)
    params = _bn_params(rng, 4)
    nodes = [node("Relu", ["x"], ["r"])] if producer else []
    source = "r" if producer else "x"
    nodes.append(node("BatchNormalization", [source, "gamma", "beta", "mean", "var"], ["y"],
                      epsilon=0.01))
    model = make_model(nodes, [vinfo("x", (2, 4, 3, 3))], [vinfo("y", (2, 4, 3, 3))],
                       _bn_inits(params))
    _, after, ctx = canonicalized(model, tmp_path)
    assert decisions(ctx, "batchnorm_to_mul_add")
    _check_bn_became_mul_add(after, source)
    x = rand(rng, 2, 4, 3, 3)
    src = np.maximum(x, 0) if producer else x
    np.testing.assert_allclose(evaluate_graph(after, {"x": x})["y"],
                               batchnorm_ref(src, *params.values(), eps=0.01),
                               rtol=1e-5, atol=1e-5)


# ================================================================ canonicalize: pools, Pow


def test_float32_global_max_pool_becomes_a_whole_window_max_pool(tmp_path) -> None:  # noqa: ANN001
    """onnxruntime runs a float32 GlobalMaxPool as MLAS's whole-window pool, whose NaN rule
    the MaxPool kernel follows (tests/ops/test_special_values.py compares the values)."""
    model = make_model([node("GlobalMaxPool", ["x"], ["y"], name="gp")],
                       [vinfo("x", (2, 3, 4, 5))], [vinfo("y", (2, 3, 1, 1))])
    _, after, _ = canonicalized(model, tmp_path)
    assert ops(after) == ["MaxPool"]
    assert after.nodes[0].attrs == {"kernel_shape": [4, 5]}
    assert after.types["y"].shape == (2, 3, 1, 1)


@pytest.mark.parametrize(("op", "reducer", "fn", "elem"),
                         [("GlobalAveragePool", "ReduceMean", np.mean, TensorProto.FLOAT),
                          ("GlobalMaxPool", "ReduceMax", np.max, TensorProto.DOUBLE)])
def test_global_pool_becomes_reduce(op, reducer, fn, elem, tmp_path) -> None:  # noqa: ANN001
    model = make_model([node(op, ["x"], ["y"], name="gp")], [vinfo("x", (2, 3, 4, 5), elem)],
                       [vinfo("y", (2, 3, 1, 1), elem)])
    _, after, _ = canonicalized(model, tmp_path)
    assert ops(after) == [reducer]
    reduce = after.nodes[0]
    assert reduce.attrs == {"axes": [2, 3], "keepdims": 1}
    assert after.types["y"].shape == (2, 3, 1, 1)
    x = rand(np.random.default_rng(30), 2, 3, 4, 5).astype(helper.tensor_dtype_to_np_dtype(elem))
    np.testing.assert_allclose(evaluate_graph(after, {"x": x})["y"],
                               fn(x, axis=(2, 3), keepdims=True), rtol=1e-6, atol=1e-6)


def _pow_model(exponent: float | None):  # noqa: ANN202
    inputs = [vinfo("x", (2, 3))]
    inits = []
    if exponent is None:
        inputs.append(vinfo("e", ()))
    else:
        inits.append(init("e", np.array(exponent, np.float32)))
    return make_model([node("Relu", ["x"], ["r"], name="relu"),
                       node("Pow", ["r", "e"], ["p"], name="pow"),
                       node("Exp", ["p"], ["y"], name="exp")],
                      inputs, [vinfo("y", (2, 3))], inits)


def test_pow_two_becomes_mul(tmp_path) -> None:  # noqa: ANN001
    before, after, ctx = canonicalized(_pow_model(2.0), tmp_path)
    expected = make_model([node("Relu", ["x"], ["r"], name="relu"),
                           node("Mul", ["r", "r"], ["p"], name="pow"),
                           node("Exp", ["p"], ["y"], name="exp")],
                          [vinfo("x", (2, 3))], [vinfo("y", (2, 3))])
    expected_graph = import_onnx(expected, tmp_path, name="expected.onnx")
    # the exponent constant is dead now (DCE's job), everything else matches exactly
    expected_graph.constants["e"] = np.array(2.0, np.float32)
    expected_graph.types["e"] = before.types["e"]
    assert print_graph(after) == print_graph(expected_graph)
    assert decisions(ctx, "strength_reduce_pow")[0].after == "Mul"
    assert_same_function(before, after, {"x": rand(np.random.default_rng(31), 2, 3)})


@pytest.mark.parametrize(("exponent", "expected_op"), [(0.5, "Sqrt"), (3.0, "Pow"), (None, "Pow")])
def test_pow_other_exponents(exponent, expected_op, tmp_path) -> None:  # noqa: ANN001
    before, after, _ = canonicalized(_pow_model(exponent), tmp_path)
    assert ops(after) == ["Relu", expected_op, "Exp"]
    feeds = {"x": rand(np.random.default_rng(32), 2, 3)}
    if exponent is None:
        feeds["e"] = np.array(2.0, np.float32)  # runtime exponent: must not be rewritten
    assert_same_function(before, after, feeds)


def test_pow_one_is_removed(tmp_path) -> None:  # noqa: ANN001
    before, after, _ = canonicalized(_pow_model(1.0), tmp_path)
    assert ops(after) == ["Relu", "Exp"]
    assert by_name(after, "exp").inputs == ["r"]
    assert_same_function(before, after, {"x": rand(np.random.default_rng(33), 2, 3)})


@pytest.mark.parametrize("exponent", [2.0, 0.5, 1.0])
def test_pow_rewrite_keeps_the_broadcast_output_shape(exponent: float, tmp_path) -> None:  # noqa: ANN001
    """Pow(x[3], e[1,1]) is [1,3] by ONNX broadcasting; x*x, sqrt(x) and x alone are [3]."""
    model = make_model([node("Pow", ["x", "e"], ["p"], name="pow"),
                        node("Relu", ["p"], ["y"], name="relu")],
                       [vinfo("x", (3,))], [vinfo("y", (1, 3))],
                       [init("e", np.full((1, 1), exponent, np.float32))])
    before = import_onnx(model, tmp_path)
    assert before.types["y"].shape == (1, 3)
    after, _ = run_passes(before, ["canonicalize"])  # verifies the IR after the pass
    assert after.types["y"].shape == (1, 3)
    x = np.abs(rand(np.random.default_rng(34), 3)) + 0.5
    got = evaluate_graph(after, {"x": x})["y"]
    assert got.shape == (1, 3)
    np.testing.assert_allclose(got, np.power(x, exponent).reshape(1, 3), rtol=1e-6)


# ================================================================ fold_constants


def _shape_chain_model():  # noqa: ANN202
    return make_model(
        [node("Shape", ["x"], ["s"], name="shape"),
         node("Gather", ["s", "zero"], ["g"], name="gather", axis=0),
         node("Unsqueeze", ["g", "axes"], ["u"], name="unsqueeze"),
         node("Concat", ["u", "minus_one"], ["target"], name="concat", axis=0),
         node("Reshape", ["x", "target"], ["r"], name="reshape"),
         node("Relu", ["r"], ["y"], name="relu")],
        [vinfo("x", (2, 3, 4))], [vinfo("y", (2, 12))],
        [init("zero", np.array(0, np.int64)), init("axes", np.array([0], np.int64)),
         init("minus_one", np.array([-1], np.int64))])


def test_shape_chain_folds_to_a_constant_reshape(tmp_path) -> None:  # noqa: ANN001
    graph = import_onnx(_shape_chain_model(), tmp_path)
    before, _ = run_passes(graph, passes_before("fold_constants"))
    assert ops(before) == ["Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "Relu"]
    after, ctx = run_passes(before, ["fold_constants"])
    assert ops(after) == ["Reshape", "Relu"]
    reshape = by_name(after, "reshape")
    assert after.is_constant(reshape.inputs[1])
    np.testing.assert_array_equal(after.constants[reshape.inputs[1]], [2, -1])
    assert after.constants[reshape.inputs[1]].dtype == np.int64
    assert after.types["r"].shape == (2, 12)
    folds = decisions(ctx, "fold", "fold_constants")
    assert sorted(n for d in folds for n in d.nodes) == sorted(
        ["shape", "gather", "unsqueeze", "concat"])
    [summary] = decisions(ctx, "summary", "fold_constants")
    assert summary.after == 4
    x = rand(np.random.default_rng(40), 2, 3, 4)
    np.testing.assert_array_equal(evaluate_graph(after, {"x": x})["y"],
                                  np.maximum(x.reshape(2, 12), 0))


def test_fold_constant_arithmetic_and_keep_runtime_nodes(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(41)
    a, b = rand(rng, 3), rand(rng, 3)
    model = make_model([node("Add", ["a", "b"], ["ab"], name="const_add"),
                        node("Mul", ["ab", "ab"], ["sq"], name="const_mul"),
                        node("Add", ["x", "sq"], ["y"], name="runtime_add")],
                       [vinfo("x", (2, 3))], [vinfo("y", (2, 3))], [init("a", a), init("b", b)])
    graph = import_onnx(model, tmp_path)
    after, ctx = run_passes(graph, ["canonicalize", "fold_constants"])
    assert ops(after) == ["Add"] and after.nodes[0].name == "runtime_add"
    np.testing.assert_array_equal(after.constants["sq"], (a + b) * (a + b))
    assert sorted(n for d in decisions(ctx, "fold") for n in d.nodes) == ["const_add",
                                                                         "const_mul"]


def test_output_that_folds_to_constant_is_copied(tmp_path) -> None:  # noqa: ANN001
    model = make_model([node("Shape", ["x"], ["y"], name="shape")],
                       [vinfo("x", (2, 3, 4))], [vinfo("y", (3,), TensorProto.INT64)])
    graph = import_onnx(model, tmp_path)
    after, ctx = run_passes(graph, ["canonicalize", "fold_constants"])
    assert after.outputs == ["y"] and not after.is_constant("y")
    copy = after.producers()["y"]
    assert copy.op == "pyc.Copy"
    np.testing.assert_array_equal(after.constants[copy.inputs[0]], [2, 3, 4])
    assert decisions(ctx, "materialize_output", "fold_constants")


def test_initializer_that_is_also_a_graph_output_and_an_operand(tmp_path) -> None:  # noqa: ANN001
    """ONNX allows an initializer to be a graph output and an operand at the same time."""
    c = rand(np.random.default_rng(42), 3)
    model = make_model([node("Add", ["x", "c"], ["y"], name="add")],
                       [vinfo("x", (2, 3))], [vinfo("y", (2, 3)), vinfo("c", (3,))],
                       [init("c", c)])
    graph = import_onnx(model, tmp_path)
    after, _ = run_passes(graph, ["canonicalize", "fold_constants"])  # verifies after each
    assert after.outputs == ["y", "c"]
    x = rand(np.random.default_rng(43), 2, 3)
    got = evaluate_graph(after, {"x": x})
    np.testing.assert_array_equal(got["c"], c)
    np.testing.assert_array_equal(got["y"], x + c)


def test_folded_shape_that_is_also_a_graph_output_and_an_operand(tmp_path) -> None:  # noqa: ANN001
    model = make_model([node("Shape", ["x"], ["s"], name="shape"),
                        node("Reshape", ["x", "s"], ["r"], name="reshape"),
                        node("Relu", ["r"], ["y"], name="relu")],
                       [vinfo("x", (2, 3))],
                       [vinfo("y", (2, 3)), vinfo("s", (2,), TensorProto.INT64)])
    graph = import_onnx(model, tmp_path)
    after, _ = run_passes(graph, ["canonicalize", "fold_constants"])  # verifies after each
    assert after.outputs == ["y", "s"] and "Shape" not in ops(after)
    x = rand(np.random.default_rng(44), 2, 3)
    got = evaluate_graph(after, {"x": x})
    np.testing.assert_array_equal(got["s"], [2, 3])
    np.testing.assert_array_equal(got["y"], np.maximum(x, 0))


# ================================================================ fuse


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x)


SCALAR_FNS = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
    "Relu": lambda v: np.maximum(v, 0), "Exp": np.exp, "Erf": _erf, "Tanh": np.tanh,
    "Sigmoid": lambda v: 1 / (1 + np.exp(-v)), "Sqrt": np.sqrt,
}


def run_program(lines: list[str], operands: list[np.ndarray], acc: np.ndarray | None = None):  # noqa: ANN201
    """An independent interpreter for the scalar program format (ewprogram docstring)."""
    env: dict[str, np.ndarray] = {}

    def value(arg: str) -> np.ndarray:
        if arg.startswith("#"):
            dtype, number = arg[1:].split(":", 1)
            return np.asarray(float(number), dtype=DType(dtype).numpy)
        if arg == "acc":
            return acc
        if arg.startswith("in"):
            return operands[int(arg[2:])].astype(np.float64)
        return env[arg]

    for instr in parse_program(lines):
        env[instr.dst] = SCALAR_FNS[instr.op](*(value(a) for a in instr.args))
    return env[parse_program(lines)[-1].dst]


def fused(model, tmp_path, shapes=None):  # noqa: ANN001, ANN201
    """(graph just before fuse, graph after fuse, ctx of the fuse run)."""
    graph = import_onnx(model, tmp_path, shapes)
    before, _ = run_passes(graph, passes_before("fuse"))
    after, ctx = run_passes(before, ["fuse"])
    return before, after, ctx


def test_elementwise_chain_becomes_one_node_with_program(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(50)
    bias = rand(rng, 8)
    sqrt2 = np.float32(math.sqrt(2.0))
    model = make_model(
        [node("Div", ["x", "sqrt2"], ["a"], name="div"),
         node("Erf", ["a"], ["b"], name="erf"),
         node("Add", ["b", "one"], ["c"], name="add1"),
         node("Mul", ["x", "c"], ["d"], name="mul_x"),
         node("Mul", ["d", "half"], ["e"], name="mul_half"),
         node("Add", ["e", "bias"], ["y"], name="add_bias")],
        [vinfo("x", (4, 8))], [vinfo("y", (4, 8))],
        [init("sqrt2", np.array(sqrt2)), init("one", np.array(1.0, np.float32)),
         init("half", np.array([0.5], np.float32)), init("bias", bias)])
    before, after, ctx = fused(model, tmp_path)
    assert ops(after) == ["pyc.Elementwise"]
    ew = after.nodes[0]
    assert ew.inputs == ["x", "bias"] and ew.outputs == ["y"]
    lit = lambda v: literal(v, DType.F32)  # noqa: E731
    assert format_program(ew.ann.program) == [
        f"t0:f32=Div(in0,{lit(float(sqrt2))})",
        "t1:f32=Erf(t0)",
        f"t2:f32=Add(t1,{lit(1.0)})",
        "t3:f32=Mul(in0,t2)",
        f"t4:f32=Mul(t3,{lit(0.5)})",
        "t5:f32=Add(t4,in1)",
    ]
    assert ew.ann.fused_from == ["div", "erf", "add1", "mul_x", "mul_half", "add_bias"]
    assert ew.attrs["shape"] == [4, 8]
    for gone in "abcde":
        assert gone not in after.types
    [decision] = decisions(ctx, "fuse_elementwise")
    assert decision.before == 6 and decision.after == 1
    x = rand(rng, 4, 8)
    expected = evaluate_graph(before, {"x": x})["y"]
    np.testing.assert_allclose(run_program(format_program(ew.ann.program), [x, bias]), expected,
                               rtol=1e-5, atol=1e-6)


def test_matmul_add_relu_becomes_matmul_with_epilogue(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(51)
    w, b = rand(rng, 8, 16), rand(rng, 16)
    model = make_model([node("MatMul", ["x", "w"], ["m"], name="mm"),
                        node("Add", ["m", "b"], ["s"], name="add"),
                        node("Relu", ["s"], ["y"], name="relu")],
                       [vinfo("x", (4, 8))], [vinfo("y", (4, 16))], [init("w", w), init("b", b)])
    before, after, ctx = fused(model, tmp_path)
    assert ops(after) == ["MatMul"]
    mm = after.nodes[0]
    assert mm.name == "mm" and mm.outputs == ["y"]
    assert mm.inputs == ["x", "w", "b"] and mm.ann.epilogue_first_input == 2
    assert format_program(mm.ann.epilogue) == ["t0:f32=Add(acc,in0)", "t1:f32=Relu(t0)"]
    assert mm.ann.epilogue_from == ["add", "relu"]
    assert "m" not in after.types and "s" not in after.types
    [decision] = decisions(ctx, "fuse_epilogue")
    assert decision.nodes == ["mm", "add", "relu"]
    x = rand(rng, 4, 8)
    got = run_program(format_program(mm.ann.epilogue), [b], acc=x.astype(np.float64) @ w)
    np.testing.assert_allclose(got, evaluate_graph(before, {"x": x})["y"], rtol=1e-5, atol=1e-5)


def test_residual_operand_computed_after_anchor_is_not_fused(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(52)
    model = make_model([node("MatMul", ["x", "w1"], ["m1"], name="mm1"),
                        node("MatMul", ["x", "w2"], ["m2"], name="mm2"),
                        node("Add", ["m1", "m2"], ["y"], name="residual")],
                       [vinfo("x", (4, 8))], [vinfo("y", (4, 8))],
                       [init("w1", rand(rng, 8, 8)), init("w2", rand(rng, 8, 8))])
    _, after, ctx = fused(model, tmp_path)
    mm1, mm2 = by_name(after, "mm1"), by_name(after, "mm2")
    # mm1 cannot apply the Add: m2 does not exist yet when mm1 stores its output
    assert not mm1.ann.epilogue and mm1.outputs == ["m1"] and mm1.inputs == ["x", "w1"]
    skips = decisions(ctx, "skip_epilogue", "fuse")
    assert len(skips) == 1 and skips[0].nodes[0] == "mm1" and "m2" in skips[0].reason
    # mm2 can: m1 is ready before it, so the residual add runs in mm2's epilogue
    assert mm2.outputs == ["y"] and mm2.inputs == ["x", "w2", "m1"]
    assert format_program(mm2.ann.epilogue) == ["t0:f32=Add(in0,acc)"]
    assert after.nodes.index(mm1) < after.nodes.index(mm2)


def test_intermediate_used_outside_chain_stops_fusion(tmp_path) -> None:  # noqa: ANN001
    model = make_model([node("Exp", ["x"], ["a"], name="exp"),
                        node("Relu", ["a"], ["b"], name="relu"),
                        node("Sigmoid", ["b"], ["y"], name="sigmoid"),
                        node("Softmax", ["a"], ["z"], name="softmax")],
                       [vinfo("x", (4, 8))], [vinfo("y", (4, 8)), vinfo("z", (4, 8))])
    _, after, _ = fused(model, tmp_path)
    groups = [n.ann.fused_from for n in after.walk(["pyc.Elementwise"])]
    assert sorted(groups) == [["exp"], ["relu", "sigmoid"]]
    second = by_name(after, "sigmoid")
    assert second.inputs == ["a"] and by_name(after, "softmax").inputs == ["a"]
    assert format_program(second.ann.program) == ["t0:f32=Relu(in0)", "t1:f32=Sigmoid(t0)"]


def test_intermediate_that_is_graph_output_stops_fusion(tmp_path) -> None:  # noqa: ANN001
    model = make_model([node("Exp", ["x"], ["a"], name="exp"),
                        node("Relu", ["a"], ["y"], name="relu")],
                       [vinfo("x", (4, 8))], [vinfo("a", (4, 8)), vinfo("y", (4, 8))])
    _, after, _ = fused(model, tmp_path)
    assert [n.ann.fused_from for n in after.nodes] == [["exp"], ["relu"]]
    assert after.producers()["a"].name == "exp" and by_name(after, "relu").inputs == ["a"]


def test_broadcast_shape_change_stops_fusion(tmp_path) -> None:  # noqa: ANN001
    model = make_model([node("Exp", ["x"], ["a"], name="exp"),
                        node("Add", ["a", "z"], ["y"], name="add")],
                       [vinfo("x", (4, 1)), vinfo("z", (4, 8))], [vinfo("y", (4, 8))])
    _, after, _ = fused(model, tmp_path)
    assert [n.ann.fused_from for n in after.nodes] == [["exp"], ["add"]]


def test_anchor_with_two_users_gets_no_epilogue(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(53)
    model = make_model([node("MatMul", ["x", "w"], ["m"], name="mm"),
                        node("Relu", ["m"], ["y"], name="relu"),
                        node("Softmax", ["m"], ["z"], name="softmax")],
                       [vinfo("x", (4, 8))], [vinfo("y", (4, 8)), vinfo("z", (4, 8))],
                       [init("w", rand(rng, 8, 8))])
    _, after, _ = fused(model, tmp_path)
    assert not by_name(after, "mm").ann.epilogue
    assert by_name(after, "relu").op == "pyc.Elementwise"


# ================================================================ eliminate_dead_code


def test_dead_code_and_unused_constants_removed(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(60)
    model = make_model([node("Relu", ["x"], ["a"], name="live"),
                        node("Exp", ["x"], ["d1"], name="dead1"),
                        node("MatMul", ["d1", "w"], ["d2"], name="dead2"),
                        node("Add", ["a", "c"], ["y"], name="live_add")],
                       [vinfo("x", (2, 4))], [vinfo("y", (2, 4))],
                       [init("w", rand(rng, 4, 4)), init("c", rand(rng, 4)),
                        init("unused", rand(rng, 5))])
    graph = import_onnx(model, tmp_path)
    after, ctx = run_passes(graph, ["eliminate_dead_code"])
    assert [n.name for n in after.nodes] == ["live", "live_add"]
    assert set(after.constants) == {"c"}
    assert not {"d1", "d2", "w", "unused"} & set(after.types)
    removed = sorted(n for d in decisions(ctx, "remove_node") for n in d.nodes)
    assert removed == ["dead1", "dead2"]
    assert decisions(ctx, "remove_constants")[0].after == 2
    x = rand(rng, 2, 4)
    np.testing.assert_allclose(evaluate_graph(after, {"x": x})["y"],
                               evaluate_graph(graph, {"x": x})["y"])


def test_dead_code_keeps_everything_live(tmp_path) -> None:  # noqa: ANN001
    path, shapes = REFERENCE_MODELS["mlp"]
    graph, _ = pyc_cli.compile_graph(path, input_shapes=shapes, stop_after="fuse")
    after, ctx = run_passes(graph, ["eliminate_dead_code"])
    assert [(n.name, n.inputs, n.outputs) for n in after.nodes] == \
        [(n.name, n.inputs, n.outputs) for n in graph.nodes]
    assert not decisions(ctx, "remove_node")
    # only constants nobody reads any more were dropped
    used = {i for n in graph.nodes for i in n.inputs}
    assert set(after.constants) == {c for c in graph.constants if c in used}


# ================================================================ select_kernels


def _assert_all_lowered(graph: Graph) -> None:
    assert graph.nodes
    for n in graph.nodes:
        kernel = n.ann.kernel_name
        assert kernel and "kernel" not in n.attrs, n.name
        opdef = registry.get(n.op)
        if opdef.category == registry.VIEW:
            assert kernel == "view", n.name
        else:
            assert kernel in get_target("cpu").candidate_names(n.op), (n.name, kernel)


@pytest.mark.parametrize("name", sorted(REFERENCE_MODELS))
def test_select_kernels_gives_every_node_a_kernel_reference_models(name: str) -> None:
    path, shapes = REFERENCE_MODELS[name]
    before, _ = pyc_cli.compile_graph(path, input_shapes=shapes, stop_after="analyze_liveness")
    assert all(n.ann.kernel is None for n in before.nodes)
    graph, ctx = pyc_cli.compile_graph(path, input_shapes=shapes)
    _assert_all_lowered(graph)
    chosen = {d.nodes[0] for d in ctx.decisions if d.pass_name == "select_kernels" and d.nodes}
    assert chosen == {n.name for n in graph.nodes}


def test_select_kernels_gives_every_node_a_kernel_small_graph(tmp_path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(70)
    model = make_model([node("Transpose", ["x"], ["t"], perm=[1, 0]),
                        node("Reshape", ["t", "shape"], ["r"]),
                        node("Exp", ["r"], ["e"]),
                        node("ReduceSum", ["e", "axes"], ["s"], keepdims=1),
                        node("MatMul", ["s", "w"], ["m"]),
                        node("Softmax", ["m"], ["y"])],
                       [vinfo("x", (4, 6))], [vinfo("y", (1, 3))],
                       [init("shape", np.array([2, 12], np.int64)),
                        init("axes", np.array([0], np.int64)), init("w", rand(rng, 12, 3))])
    graph = import_onnx(model, tmp_path)
    after, _ = run_passes(graph, [*passes_before("select_kernels"), "select_kernels"])
    assert "Reshape" in ops(after)
    _assert_all_lowered(after)


def test_dropout_with_a_used_mask_is_not_lowered_as_a_view(tmp_path) -> None:  # noqa: ANN001
    """A view reinterprets its input's bytes. Dropout's mask output is bool ones, not the
    float bytes of the data, so a Dropout whose mask is used cannot be lowered as a view."""
    model = make_model([node("Softmax", ["x"], ["s"], name="softmax"),
                        node("Dropout", ["s"], ["d", "mask"], name="dropout"),
                        node("Cast", ["mask"], ["mf"], name="cast", to=TensorProto.FLOAT),
                        node("Add", ["d", "mf"], ["y"], name="add")],
                       [vinfo("x", (2, 3))], [vinfo("y", (2, 3))])
    graph, ctx = pyc_cli.compile_graph(write_model(model, tmp_path))
    _assert_all_lowered(graph)
    for n in graph.nodes:
        if n.ann.kernel_name != "view":
            continue
        source = graph.types[n.inputs[0]]
        for out in n.outputs:
            if out:
                assert graph.types[out].dtype == source.dtype, (n.name, out)
                assert graph.types[out].nbytes == source.nbytes, (n.name, out)
    plan = ctx.artifacts["memory_plan"]
    mask = [t for t in plan.tensors if t.name == "mask"]
    assert not mask or mask[0].alias_of is None


# ---------------------------------------------------------------- hand-written LayerNorm


def _manual_layernorm(rng: np.random.Generator, square_op: str, extra_use: bool) -> onnx.ModelProto:
    width = 6
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[-1], name="mean"),
        helper.make_node("Sub", ["x", "mean"], ["d"], name="sub"),
        helper.make_node("Pow", ["d", "two"], ["sq"], name="pow") if square_op == "Pow"
        else helper.make_node("Mul", ["d", "d"], ["sq"], name="sq"),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[2], name="var"),
        helper.make_node("Add", ["var", "eps"], ["ve"], name="add_eps"),
        helper.make_node("Sqrt", ["ve"], ["std"], name="sqrt"),
        helper.make_node("Div", ["d", "std"], ["n"], name="div"),
        helper.make_node("Mul", ["n", "gamma"], ["g"], name="scale"),
        helper.make_node("Add", ["g", "beta"], ["y"], name="shift"),
    ]
    outputs = [vinfo("y", [2, 3, width])]
    if extra_use:  # d is also read elsewhere: the pattern must not match
        nodes.append(helper.make_node("Relu", ["d"], ["r"], name="other_use"))
        outputs.append(vinfo("r", [2, 3, width]))
    inits = [init("two", np.array(2.0, np.float32)), init("eps", np.array(1e-5, np.float32)),
             init("gamma", rand(rng, width)), init("beta", rand(rng, width))]
    return make_model(nodes, [vinfo("x", [2, 3, width])], outputs, inits)


@pytest.mark.parametrize("square_op", ["Pow", "Mul"])
def test_hand_written_layernorm_becomes_one_node(square_op: str, rng: np.random.Generator,
                                                  tmp_path: Path) -> None:
    graph = import_onnx(_manual_layernorm(rng, square_op, extra_use=False), tmp_path)
    x = rng.standard_normal((2, 3, 6)).astype(np.float32)
    expected = evaluate_graph(graph, {"x": x})["y"]
    after, ctx = run_passes(graph, ["canonicalize"])
    assert [n.op for n in after.nodes] == ["LayerNormalization"]
    assert decisions(ctx, "fuse_manual_layernorm")
    ln = after.nodes[0]
    assert ln.attrs["epsilon"] == pytest.approx(1e-5) and len(ln.inputs) == 3
    np.testing.assert_allclose(evaluate_graph(after, {"x": x})["y"], expected, rtol=1e-5, atol=1e-6)


def test_layernorm_pattern_needs_its_intermediates_private(rng: np.random.Generator,
                                                           tmp_path: Path) -> None:
    graph = import_onnx(_manual_layernorm(rng, "Pow", extra_use=True), tmp_path)
    after, ctx = run_passes(graph, ["canonicalize"])
    assert "LayerNormalization" not in [n.op for n in after.nodes]
    assert not decisions(ctx, "fuse_manual_layernorm")
