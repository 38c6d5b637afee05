"""The depthwise conv kernel (conv2d_depthwise) against a float64 numpy depthwise convolution
written here, on odd sizes: widths that leave partial vectors (1, 7, 17, 33), unit and larger
strides and dilations along each axis, asymmetric pads, 1x1 to 5x5 windows, with and without
bias and a fused Relu; and the fallback to the direct loop where the bordered plane would not
fit a task's stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import pyc_cli


def depthwise_float64(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, pads: list[int],
                      strides: list[int], dilations: list[int]) -> np.ndarray:
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    _, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    oh = (h - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((x.shape[0], c, oh, ow))
    for i in range(kh):
        for j in range(kw):
            top, left = i * dilations[0], j * dilations[1]
            patch = x[:, :, top:top + strides[0] * oh:strides[0], left:left + strides[1] * ow:strides[1]]
            out += patch * w[:, 0, i, j].astype(np.float64).reshape(1, -1, 1, 1)
    return out + (0 if b is None else b.astype(np.float64).reshape(1, -1, 1, 1))


CASES = [  # N, C, H, W, kernel, pads (t, l, b, r), strides, dilations, bias, relu
    (1, 3, 5, 1, (3, 3), [1, 1, 1, 1], [1, 1], [1, 1], True, False),
    (2, 4, 9, 7, (3, 3), [1, 1, 1, 1], [1, 1], [1, 1], True, True),
    (1, 5, 12, 17, (5, 5), [2, 2, 2, 2], [1, 1], [1, 1], False, True),
    (1, 2, 11, 33, (3, 3), [1, 1, 1, 1], [2, 2], [1, 1], True, False),
    (1, 6, 8, 33, (5, 3), [2, 0, 1, 2], [2, 1], [1, 2], True, True),
    (3, 1, 4, 9, (1, 1), [0, 0, 0, 0], [1, 1], [1, 1], True, False),
    (1, 8, 6, 80, (5, 5), [2, 2, 2, 2], [2, 1], [1, 1], True, True),
]


def depthwise_model(n: int, c: int, h: int, w: int, kernel: tuple[int, int], pads: list[int],
                    strides: list[int], dilations: list[int], bias: bool, relu: bool,
                    rng: np.random.Generator) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray | None]:
    weights = rng.standard_normal((c, 1, *kernel)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32) if bias else None
    inits = [numpy_helper.from_array(weights, "w")] + ([numpy_helper.from_array(b, "b")] if bias else [])
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["c" if relu else "y"],
                              group=c, kernel_shape=list(kernel), pads=pads, strides=strides,
                              dilations=dilations)]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    graph = helper.make_graph(nodes, "depthwise",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [n, c, h, w])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model), weights, b


def case_id(c: tuple) -> str:
    return f"{c[1]}x{c[2]}x{c[3]}k{c[4][0]}{c[4][1]}s{c[6]}d{c[7]}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_depthwise_kernel_matches_float64(case: tuple, rng: np.random.Generator,
                                          tmp_path: Path) -> None:
    n, c, h, w, kernel, pads, strides, dilations, bias, relu = case
    model, weights, b = depthwise_model(n, c, h, w, kernel, pads, strides, dilations, bias, relu, rng)
    path = tmp_path / "depthwise.onnx"
    onnx.save(model, path)
    result = pyc_cli.build(path, tmp_path / "art")
    [conv] = result.graph.nodes
    assert conv.ann.kernel_name == "conv2d_depthwise"
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    with pyc_cli.load(result.artifact) as compiled:
        got = compiled.run({"x": x})["y"]
    want = depthwise_float64(x, weights, b, pads, strides, dilations)
    if relu:
        want = np.maximum(want, 0)
    # float32 sums of at most 25 products, against exact float64
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_planes_too_big_for_the_stack_take_the_direct_loop(rng: np.random.Generator,
                                                          tmp_path: Path) -> None:
    model, _, _ = depthwise_model(1, 2, 200, 200, (3, 3), [1, 1, 1, 1], [1, 1], [1, 1], True,
                                  False, rng)
    path = tmp_path / "big.onnx"
    onnx.save(model, path)
    [conv] = pyc_cli.build(path, tmp_path / "art").graph.nodes
    assert conv.ann.kernel_name == "conv2d_direct"  # 202 x 202 floats exceed 128 KiB
