"""The depthwise conv kernel (conv2d_depthwise) against a float64 numpy depthwise convolution
written here, on odd sizes: widths that leave partial vectors (1, 7, 17, 33), unit and larger
strides and dilations along each axis, asymmetric pads, 1x1 to 5x5 windows, with and without
bias and a fused Relu; the register blocks of every ISA's vector width (AVX-512, AVX2, the
portable vectors: whole blocks, narrower last blocks, 1- to 12-row maps, 3-row blocks) under a
fused hardswish; unit-stride planes whose rows start on a vector boundary (lead columns before
the left pad) and are copied a vector at a time (161 columns, 3 pad ones; no left pad); and the
fallback to the direct loop where the bordered plane would not fit a
task's stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from test_gemm import BUILDS

import pyc_cli
from pyc_cli.targets.cpu import kernels


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
    # rows copied a vector at a time to a vector boundary, a part vector left (161 columns,
    # 3 left pad columns: 13 lead ones on AVX-512), a window wider than a row's pad
    (1, 3, 7, 161, (7, 7), [3, 3, 3, 3], [1, 1], [1, 1], True, False),
    (1, 2, 3, 19, (3, 3), [1, 0, 1, 2], [1, 1], [1, 1], False, True),  # no left pad: no lead
]


def depthwise_model(n: int, c: int, h: int, w: int, kernel: tuple[int, int], pads: list[int],
                    strides: list[int], dilations: list[int], bias: bool, relu: bool,
                    rng: np.random.Generator, dtype: type = np.float32
                    ) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray | None]:
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    weights = rng.standard_normal((c, 1, *kernel)).astype(dtype)
    b = rng.standard_normal(c).astype(dtype) if bias else None
    inits = [numpy_helper.from_array(weights, "w")] + ([numpy_helper.from_array(b, "b")] if bias else [])
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["c" if relu else "y"],
                              group=c, kernel_shape=list(kernel), pads=pads, strides=strides,
                              dilations=dilations)]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    graph = helper.make_graph(nodes, "depthwise",
                              [helper.make_tensor_value_info("x", elem, [n, c, h, w])],
                              [helper.make_tensor_value_info("y", elem, None)], inits)
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


BLOCK_CASES = [  # N, C, H, W, kernel, pads (t, l, b, r), strides, dilations
    (1, 1, 3, 80, (5, 5), [2, 2, 2, 2], [1, 1], [1, 1]),  # one channel, 3 rows, 5 vectors of 16
    (1, 7, 1, 17, (3, 3), [1, 1, 1, 1], [1, 1], [1, 1]),  # one row; a block past the width
    (1, 5, 6, 80, (5, 5), [2, 2, 2, 2], [2, 1], [1, 1]),  # stride (2, 1) to 3 rows
    (1, 3, 12, 80, (5, 5), [2, 2, 2, 2], [2, 1], [1, 1]),  # to 6 rows: two 3-row blocks
    (2, 13, 7, 31, (3, 3), [1, 1, 1, 1], [1, 1], [1, 1]),  # primes: a 4-row and a 3-row block
    (1, 11, 5, 47, (5, 5), [2, 1, 2, 3], [1, 2], [1, 1]),  # column phases, asymmetric pads
    (1, 2, 9, 33, (3, 5), [1, 2, 1, 2], [2, 2], [2, 1]),  # dilated rows, both strides
    (1, 3, 24, 160, (3, 3), [1, 1, 1, 1], [1, 1], [1, 1]),  # PP-OCR's first depthwise conv
    (1, 4, 12, 160, (3, 3), [1, 1, 1, 1], [1, 2], [1, 1]),  # its stride (1, 2) one
    (1, 3, 2, 1, (1, 1), [0, 0, 0, 0], [1, 1], [1, 1]),  # one column
    (1, 2, 5, 23, (5, 5), [0, 0, 0, 0], [1, 1], [1, 1]),  # no padding
    (1, 3, 6, 70, (3, 3), [0, 0, 1, 1], [1, 2], [1, 1]),  # stride 2 columns, no left pad
    (1, 2, 4, 41, (5, 5), [1, 3, 0, 0], [2, 2], [1, 1]),  # an odd left pad past one column
    (1, 5, 3, 96, (3, 3), [1, 1, 1, 1], [2, 2], [1, 1]),  # whole pairs of 16-float vectors
    (1, 3, 7, 20, (5, 5), [2, 2, 2, 2], [2, 2], [1, 1]),  # stride 2, too narrow for a pair
    (1, 2, 5, 29, (3, 3), [1, 1, 1, 1], [1, 3], [1, 1]),  # three column phases
    (1, 2, 41, 112, (3, 3), [1, 1, 1, 1], [1, 1], [1, 1]),  # epilogue per row block (> 4 KiB)
]


def hardswish_model(rng: np.random.Generator) -> tuple[onnx.ModelProto, dict[str, np.ndarray],
                                                          dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every BLOCK_CASES conv on its own input, each followed by PP-OCR's hardswish
    (y * Clip(y + 3, 0, 6) / 6) and a residual Add, fused into the conv: the feeds, the
    float64 results, and a bound on each float32 result's error."""
    nodes, inputs, outputs, inits = [], [], [], []
    feeds, expected, bounds = {}, {}, {}
    three, zero, six = (numpy_helper.from_array(np.array(v, np.float32), name)
                        for v, name in ((3, "three"), (0, "zero"), (6, "six")))
    inits += [three, zero, six]
    for i, (n, c, h, w, kernel, pads, strides, dilations) in enumerate(BLOCK_CASES):
        x = rng.standard_normal((n, c, h, w)).astype(np.float32)
        weights = rng.standard_normal((c, 1, *kernel)).astype(np.float32)
        b = rng.standard_normal(c).astype(np.float32)
        inits += [numpy_helper.from_array(weights, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        inputs.append(helper.make_tensor_value_info(f"x{i}", onnx.TensorProto.FLOAT, [n, c, h, w]))
        nodes += [
            helper.make_node("Conv", [f"x{i}", f"w{i}", f"b{i}"], [f"c{i}"], group=c,
                             kernel_shape=list(kernel), pads=pads, strides=strides,
                             dilations=dilations),
            helper.make_node("Add", [f"c{i}", "three"], [f"s{i}"]),
            helper.make_node("Clip", [f"s{i}", "zero", "six"], [f"k{i}"]),
            helper.make_node("Mul", [f"c{i}", f"k{i}"], [f"m{i}"]),
            helper.make_node("Div", [f"m{i}", "six"], [f"h{i}"]),
            helper.make_node("Add", [f"h{i}", f"r{i}"], [f"y{i}"])]
        outputs.append(helper.make_tensor_value_info(f"y{i}", onnx.TensorProto.FLOAT, None))
        y = depthwise_float64(x, weights, b, pads, strides, dilations)
        # a residual indexed by the whole pixel, by the row only or by the column only
        _, _, oh, ow = y.shape
        residual = rng.standard_normal([(n, c, oh, ow), (1, 1, oh, 1), (1, 1, 1, ow)][i % 3])
        feeds[f"r{i}"] = residual.astype(np.float32)
        inputs.append(helper.make_tensor_value_info(f"r{i}", onnx.TensorProto.FLOAT,
                                                    list(residual.shape)))
        feeds[f"x{i}"] = x
        expected[f"y{i}"] = y * np.clip(y + 3, 0, 6) / 6 + feeds[f"r{i}"]
        # the sum's float32 error (taps + 1 roundings of at most the absolute sum), carried
        # through the hardswish (slope at most 2.5 for |y| < 3 + 5 roundings of the result)
        magnitude = depthwise_float64(np.abs(x), np.abs(weights), np.abs(b), pads, strides,
                                      dilations)
        sum_error = (kernel[0] * kernel[1] + 1) * 2.0 ** -24 * magnitude
        bounds[f"y{i}"] = 2.5 * sum_error + 6 * 2.0 ** -24 * (np.abs(expected[f"y{i}"])
                                                              + np.abs(feeds[f"r{i}"])) + 1e-7
    graph = helper.make_graph(nodes, "hardswish", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model), feeds, expected, bounds


@pytest.mark.parametrize("isa", sorted(BUILDS))
def test_register_blocks_of_every_isa_match_float64(isa: str, rng: np.random.Generator,
                                                   tmp_path: Path) -> None:
    """Each ISA's vector width gives other whole and last blocks: all within the bound."""
    model, feeds, expected, bounds = hardswish_model(rng)
    onnx.save(model, tmp_path / "m.onnx")
    build = BUILDS[isa]
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=build.cpu,
                           cpu_features=build.features)
    convs = [node for node in result.graph.nodes if node.op == "Conv"]
    assert [node.ann.kernel_name for node in convs] == ["conv2d_depthwise"] * len(BLOCK_CASES)
    assert all(len(node.ann.epilogue) == 5 for node in convs), "the hardswish and Add fused"
    if not build.runnable:
        return  # compiled for a CPU this one is not: compile-only
    with pyc_cli.load(result.artifact) as compiled:
        got = compiled.run(feeds)
    for name, want in expected.items():
        assert got[name].shape == want.shape, name
        excess = np.abs(got[name] - want) - bounds[name]
        assert excess.max() <= 0, (name, float(excess.max()))


@pytest.mark.parametrize(("rows", "block"), [(1, 1), (2, 2), (3, 3), (4, 4), (5, 4), (6, 3),
                                             (7, 4), (9, 3), (12, 4), (24, 4)])
def test_block_rows_split_the_output_rows(rows: int, block: int) -> None:
    """4-row blocks, or 3-row ones where they split the rows evenly and 4-row ones do not."""
    assert kernels._depthwise_block_rows(rows) == block


@pytest.mark.parametrize("case", [BLOCK_CASES[i] for i in (0, 4, 5, 6)], ids=case_id)
def test_float64_register_blocks_match(case: tuple, rng: np.random.Generator,
                                       tmp_path: Path) -> None:
    """float64: half as many lanes per vector, and 2-lane vectors for the last columns."""
    n, c, h, w, kernel, pads, strides, dilations = case
    model, weights, b = depthwise_model(n, c, h, w, kernel, pads, strides, dilations, True, True,
                                        rng, np.float64)
    onnx.save(model, tmp_path / "m.onnx")
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "art")
    [conv] = result.graph.nodes
    assert conv.ann.kernel_name == "conv2d_depthwise"
    x = rng.standard_normal((n, c, h, w))
    with pyc_cli.load(result.artifact) as compiled:
        got = compiled.run({"x": x})["y"]
    want = np.maximum(depthwise_float64(x, weights, b, pads, strides, dilations), 0)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)  # 26 roundings of 2^-53
