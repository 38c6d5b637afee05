"""Convs of a few output pixels as dot products (targets/cpu/conv_dots.py,
codegen_templates/c/kernels/conv2d_dots.c.j2) against numpy float64: 1-D, 2-D and 3-D, strides,
pads, dilation, groups, batches, a reduction that is not a whole number of vectors, bias + Relu
and residual epilogues, an elementwise prologue (Silero VAD's magnitude sqrt(re^2 + im^2)), on
every vector ISA (AVX-512 compiled everywhere, run where the CPU has it), float32 and float64,
and the same bits for every team size.

Tolerance: a float32 sum of R products in another order than float64's:
|got - want| <= (R + 2) 2^-24 sum|terms| + 1e-5 + 1e-4 |want|.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_gemm import BUILDS, Build
from test_gemm_threads import _run

import pyc_cli
from pyc_cli.frontend.onnx_import import import_model
from pyc_cli.targets import get_target
from pyc_cli.targets.cpu import conv_dots

RTOL, ATOL = 1e-4, 1e-5
# (x shape, w shape, strides, pads (begins + ends), dilations, group, epilogue)
CONVS = [
    ((1, 1, 576), (37, 1, 256), (128,), (0, 0), (1,), 1, "bias_relu"),  # Silero's STFT: 3 pixels
    ((1, 33, 3), (19, 33, 3), (2,), (1, 1), (1,), 1, "residual"),  # 2 pixels
    ((2, 20, 5), (9, 20, 5), (1,), (0, 0), (1,), 1, ""),  # 1 pixel, 2 images, R = 100
    ((1, 6, 7), (5, 6, 3), (2,), (2, 2), (3,), 1, ""),  # dilated columns across both pads
    ((1, 7, 3, 3), (13, 7, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, "bias_relu"),  # 2 x 2 pixels
    ((1, 8, 5, 6), (12, 4, 2, 3), (3, 2), (0, 1, 0, 0), (2, 1), 2, ""),  # groups, dilation
    ((1, 5, 3, 4, 4), (6, 5, 2, 3, 3), (1, 2, 2), (0, 1, 1, 0, 0, 0), (1, 1, 1), 1, "residual"),
]


def _reference(x: np.ndarray, w: np.ndarray, strides: tuple[int, ...], pads: tuple[int, ...],
               dilations: tuple[int, ...], group: int) -> np.ndarray:
    """Conv in float64 by windows (few output pixels: a loop over them is cheap)."""
    rank = x.ndim - 2
    padded = np.pad(x, [(0, 0), (0, 0)] + [(pads[d], pads[d + rank]) for d in range(rank)])
    kernel = w.shape[2:]
    out = [(padded.shape[2 + d] - dilations[d] * (kernel[d] - 1) - 1) // strides[d] + 1
           for d in range(rank)]
    cg, ocg = x.shape[1] // group, w.shape[0] // group
    y = np.zeros((x.shape[0], w.shape[0], *out))
    for pixel in itertools.product(*(range(o) for o in out)):
        window = tuple(slice(pixel[d] * strides[d],
                             pixel[d] * strides[d] + dilations[d] * (kernel[d] - 1) + 1,
                             dilations[d]) for d in range(rank))
        for g in range(group):
            patch = padded[(slice(None), slice(g * cg, (g + 1) * cg), *window)]
            weights = w[g * ocg:(g + 1) * ocg]
            y[(slice(None), slice(g * ocg, (g + 1) * ocg), *pixel)] = \
                np.tensordot(patch, weights, axes=(range(1, rank + 2), range(1, rank + 2)))
    return y


def _model(rng: np.random.Generator, dtype: type = np.float32) -> tuple[
        onnx.ModelProto, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The convs of CONVS plus a prologue conv; feeds, float64 references and summation bounds."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes, inputs, outputs, inits = [], [], [], []
    feeds: dict[str, np.ndarray] = {}
    expected: dict[str, np.ndarray] = {}
    bounds: dict[str, np.ndarray] = {}

    def feed(name: str, value: np.ndarray) -> np.ndarray:
        feeds[name] = value.astype(dtype)
        inputs.append(helper.make_tensor_value_info(name, elem, list(value.shape)))
        return feeds[name].astype(np.float64)

    def conv(i: int, x_name: str, x: np.ndarray, w_shape: tuple[int, ...], attrs: dict,
             epilogue: str) -> None:
        w = rng.standard_normal(w_shape).astype(dtype)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        geometry = (attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"])
        want = _reference(x, w.astype(np.float64), *geometry)
        magnitude = _reference(np.abs(x), np.abs(w.astype(np.float64)), *geometry)
        out = f"y{i}"
        nodes.append(helper.make_node("Conv", [x_name, f"w{i}"], [out if not epilogue else f"t{i}"],
                                      kernel_shape=list(w_shape[2:]), **attrs))
        if epilogue == "bias_relu":
            bias = rng.standard_normal((w_shape[0],) + (1,) * (len(w_shape) - 2)).astype(dtype)
            inits.append(numpy_helper.from_array(bias, f"b{i}"))
            nodes.extend([helper.make_node("Add", [f"t{i}", f"b{i}"], [f"u{i}"]),
                          helper.make_node("Relu", [f"u{i}"], [out])])
            want = np.maximum(want + bias.astype(np.float64), 0)
        elif epilogue == "residual":
            residual = feed(f"r{i}", rng.standard_normal(want.shape))
            nodes.append(helper.make_node("Add", [f"t{i}", f"r{i}"], [out]))
            want = want + residual
        outputs.append(helper.make_tensor_value_info(out, elem, list(want.shape)))
        expected[out] = want
        bounds[out] = (math.prod(w_shape[1:]) + 2) * 2.0 ** -24 * (magnitude + np.abs(want))

    for i, (xs, ws, strides, pads, dilations, group, epilogue) in enumerate(CONVS):
        x = feed(f"x{i}", rng.standard_normal(xs))
        conv(i, f"x{i}", x, ws, {"strides": list(strides), "pads": list(pads),
                                 "dilations": list(dilations), "group": group}, epilogue)
    # Silero's magnitude, fused into the conv as a prologue: sqrt(re^2 + im^2)
    re, im = feed("re", rng.standard_normal((1, 29, 3))), feed("im", rng.standard_normal((1, 29, 3)))
    nodes += [helper.make_node("Mul", ["re", "re"], ["re2"]), helper.make_node("Mul", ["im", "im"], ["im2"]),
              helper.make_node("Add", ["re2", "im2"], ["mag2"]), helper.make_node("Sqrt", ["mag2"], ["mag"])]
    conv(len(CONVS), "mag", np.sqrt(re * re + im * im), (23, 29, 3),
         {"strides": [1], "pads": [1, 1], "dilations": [1], "group": 1}, "bias_relu")
    graph = helper.make_graph(nodes, "dots", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, feeds, expected, bounds


def _build(model: onnx.ModelProto, tmp_path: Path, build: Build) -> Path:
    onnx.save(model, tmp_path / "m.onnx")
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=build.cpu,
                           cpu_features=build.features)
    convs = [n for n in result.graph.nodes if n.op == "Conv"]
    assert {n.ann.kernel.candidate for n in convs} == {"conv2d_dots"}
    assert any(n.ann.prologue for n in convs), "the magnitude is the last conv's prologue"
    assert sum(bool(n.ann.epilogue) for n in convs) == 5, "bias + Relu and residuals fused"
    return result.artifact


def _check(got: dict[str, np.ndarray], expected: dict[str, np.ndarray],
           bounds: dict[str, np.ndarray], scale: float = 1.0) -> None:
    for name, want in expected.items():
        assert got[name].shape == want.shape, name
        excess = np.abs(got[name] - want) - (RTOL * np.abs(want) + ATOL + scale * bounds[name])
        assert np.all(excess <= 0), (name, float(excess.max()))


@pytest.mark.parametrize("isa", sorted(BUILDS))
def test_few_pixel_convs_match_numpy(isa: str, tmp_path: Path, rng: np.random.Generator) -> None:
    model, feeds, expected, bounds = _model(rng)
    art = _build(model, tmp_path, BUILDS[isa])
    marker = {"avx512": "_mm512_fmadd_ps", "avx2": "_mm256_fmadd_ps", "vector": "pyc_gv"}
    assert marker[isa] in (art / "src" / "model.c").read_text()
    if not BUILDS[isa].runnable:
        return  # compiled for a CPU this one is not: compile-only
    with pyc_cli.load(art) as compiled:
        _check(compiled.run(feeds), expected, bounds)


def test_float64_few_pixel_convs_match_numpy(tmp_path: Path, rng: np.random.Generator) -> None:
    model, feeds, expected, bounds = _model(rng, np.float64)
    art = _build(model, tmp_path, BUILDS["avx2"])
    with pyc_cli.load(art) as compiled:
        _check(compiled.run(feeds), expected, bounds, scale=2.0 ** -29)  # float64's unit: 2^-53


def test_applies_to_few_pixels_and_long_windows(tmp_path: Path) -> None:
    """1..8 output pixels and a window of at least 16 products: the im2col GEMM keeps the rest."""
    def conv(x: tuple[int, ...], w: tuple[int, ...]) -> bool:  # a 1x1 kernel: y is x's size
        model = helper.make_model(helper.make_graph(
            [helper.make_node("Conv", ["x", "w"], ["y"])], "c",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x))],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [x[0], w[0], *x[2:]])],
            [numpy_helper.from_array(np.ones(w, np.float32), "w")]),
            opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, tmp_path / "c.onnx")
        graph = import_model(tmp_path / "c.onnx")
        return conv_dots.applies(graph.nodes[0], graph)
    assert conv((1, 16, 8, 1), (4, 16, 1, 1))  # 8 pixels
    assert not conv((1, 16, 9, 1), (4, 16, 1, 1))  # 9
    assert not conv((1, 15, 2), (4, 15, 1))  # a window of 15


@pytest.mark.skipif(not get_target("cpu").openmp(), reason="the C compiler has no OpenMP runtime")
def test_big_few_pixel_conv_is_the_same_for_every_team_size(
        tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Enough work for threads (tasks of output channels): 1, 2 and 3 threads, the same bits."""
    x = rng.standard_normal((1, 512, 4)).astype(np.float32)
    w = (rng.standard_normal((700, 512, 3)) / 40).astype(np.float32)
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 0])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 700, 2])],
        [numpy_helper.from_array(w, "w")]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    art = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a").artifact
    assert "\n      PYC_PARALLEL_FOR\n" in (art / "src" / "model.c").read_text()
    manifest = json.loads((art / "manifest.json").read_text())
    results = {}
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("PYC_NUM_THREADS", threads)
        results[threads] = _run(art / "libmodel.so", manifest["symbol_prefix"],
                                art / "weights.bin", manifest, {"x": x})["y"]
    np.testing.assert_array_equal(results["2"], results["1"])
    np.testing.assert_array_equal(results["3"], results["1"])
    want = _reference(x.astype(np.float64), w.astype(np.float64), (1,), (0, 0), (1,), 1)
    np.testing.assert_allclose(results["2"], want, rtol=1e-4, atol=1e-4)


def test_a_3d_conv_leaves_its_producer_unfused(tmp_path: Path, rng: np.random.Generator) -> None:
    """Prologues are fused into 1-D and 2-D convs only (the im2col GEMM, which select_kernels
    may pick instead, applies none to a 3-D conv): Relu -> 3-D Conv stays two kernels."""
    x = rng.standard_normal((1, 5, 3, 4, 4)).astype(np.float32)
    w = rng.standard_normal((6, 5, 2, 3, 3)).astype(np.float32)
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Conv", ["r", "w"], ["y"])],
        "relu_conv3d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 2, 2, 2])],
        [numpy_helper.from_array(w, "w")]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "m.onnx")
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a")
    (conv,) = [n for n in result.graph.nodes if n.op == "Conv"]
    assert conv.ann.kernel.candidate == "conv2d_dots" and not conv.ann.prologue
    with pyc_cli.load(result.artifact) as compiled:
        got = compiled.run({"x": x})["y"]
    want = _reference(np.maximum(x, 0).astype(np.float64), w.astype(np.float64), (1, 1, 1),
                      (0,) * 6, (1, 1, 1), 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
