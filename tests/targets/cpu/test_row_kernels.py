"""The vectorized row kernels (softmax.c.j2, layernorm.c.j2 with c/row_math.j2) and the
task-split elementwise loop against numpy float64, on row lengths around the vector widths
(1, primes, one past 16 and 32), on enough rows to take the parallel task split, and on rows
with a large common offset (where one-pass statistics without the shift lose the variance)."""

from __future__ import annotations

import ctypes
from math import erf
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import init, make_model, vinfo, write_model
from onnx import helper

from pyc_cli import api
from pyc_cli.targets.cpu.kernel_context import (
    ELEMENTWISE_PARALLEL_BYTES,
    LAYERNORM_TASK_ELEMENTS,
    SOFTMAX_TASK_ELEMENTS,
    elementwise_split,
    row_split,
)
from pyc_cli.targets.cpu.target import VECTOR_MATH_FLAGS, CpuTarget


def layernorm_ref(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    d = x.astype(np.float64)
    mean = d.mean(-1, keepdims=True)
    var = ((d - mean) ** 2).mean(-1, keepdims=True)
    return (d - mean) / np.sqrt(var + eps) * scale + bias


def softmax_ref(x: np.ndarray) -> np.ndarray:
    d = x.astype(np.float64)
    e = np.exp(d - d.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def build_and_run(tmp_path: Path, nodes: list, shape: tuple[int, ...], outputs: list[str],
                  initializers: list, x: np.ndarray) -> dict[str, np.ndarray]:
    model = make_model(nodes, [vinfo("x", shape)], [vinfo(name, shape) for name in outputs],
                       initializers)
    artifact = tmp_path / "model.pyc"
    api.build(write_model(model, tmp_path), artifact)
    with api.load(artifact) as compiled:
        return compiled.run({"x": x})


# (rows, row length, offset): lengths around the 16- and 32-wide loops; 1100 x 521 is two
# tasks of LAYERNORM_TASK_ELEMENTS and more of softmax's, so its rows are parallel tasks
SHAPES = [(3, 1, 0.0), (5, 7, 0.0), (4, 17, 0.0), (3, 33, 0.0), (2, 129, 100.0), (1100, 521, 100.0)]


@pytest.mark.parametrize(("rows", "row", "offset"), SHAPES)
def test_softmax_and_layernorm_rows_match_numpy(tmp_path: Path, rows: int, row: int,
                                                 offset: float) -> None:
    rng = np.random.default_rng(rows * 1000 + row)
    shape = (rows, row)
    scale = rng.uniform(0.5, 1.5, row).astype(np.float32)
    bias = rng.standard_normal(row).astype(np.float32)
    nodes = [onnx_node("LayerNormalization", ["x", "scale", "bias"], "ln", epsilon=1e-5),
             onnx_node("Softmax", ["x"], "sm"), onnx_node("LogSoftmax", ["x"], "lsm")]
    x = (rng.standard_normal(shape) * 3 + offset).astype(np.float32)
    got = build_and_run(tmp_path, nodes, shape, ["ln", "sm", "lsm"],
                        [init("scale", scale), init("bias", bias)], x)
    np.testing.assert_allclose(got["ln"], layernorm_ref(x, scale, bias, 1e-5), rtol=1e-5, atol=2e-5)
    expected = softmax_ref(x)
    np.testing.assert_allclose(got["sm"], expected, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(got["lsm"], np.log(expected), rtol=1e-6, atol=2e-5)
    for per_task in (SOFTMAX_TASK_ELEMENTS, LAYERNORM_TASK_ELEMENTS):
        split = row_split(rows, row, per_task)
        assert split["parallel"] == (rows * row >= 2 * per_task)
        assert split["tasks"] * split["rows_per_task"] >= rows  # type: ignore[operator]


def test_rows_with_nan_and_inf_follow_onnxruntime_semantics(tmp_path: Path) -> None:
    """A NaN anywhere in a row makes its softmax NaN (whichever maximum the vector max kept);
    an inf or a NaN sends a layernorm row down the double path (all NaN here)."""
    shape = (4, 40)
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    x[0, 0], x[1, 37], x[2, 5] = np.nan, np.nan, np.inf
    nodes = [onnx_node("Softmax", ["x"], "sm"),
             onnx_node("LayerNormalization", ["x", "scale"], "ln", epsilon=1e-5)]
    got = build_and_run(tmp_path, nodes, shape, ["sm", "ln"],
                        [init("scale", np.ones(40, np.float32))], x)
    assert np.isnan(got["sm"][:3]).all() and np.isnan(got["ln"][:3]).all()
    np.testing.assert_allclose(got["sm"][3], softmax_ref(x[3:])[0], rtol=2e-6, atol=1e-7)


def test_large_elementwise_chain_is_split_into_tasks(tmp_path: Path) -> None:
    shape = (3, 100003)
    dims = [3 * 100003]
    assert ELEMENTWISE_PARALLEL_BYTES <= 3 * 100003 * 4 and elementwise_split(dims, 4)["tasks"] > 2
    x = (np.random.default_rng(5).standard_normal(shape) * 4).astype(np.float32)
    nodes = [onnx_node("Erf", ["x"], "a"), onnx_node("Tanh", ["a"], "b"),
             onnx_node("Sigmoid", ["b"], "c"), onnx_node("Mul", ["c", "x"], "y")]
    got = build_and_run(tmp_path, nodes, shape, ["y"], [], x)
    d = x.astype(np.float64)
    expected = 1 / (1 + np.exp(-np.tanh(np.vectorize(erf)(d)))) * d
    np.testing.assert_allclose(got["y"], expected, rtol=3e-6, atol=1e-7)


def test_scalar_programs_without_libmvec_take_pycs_math(tmp_path: Path) -> None:
    """Built without glibc's libmvec (PYC_VECTOR_MATH), the scalar programs' exp / erf / tanh /
    sigmoid are PyC's (SIMD clones under GCC): the same artifact sources compiled that way
    match numpy too."""
    shape = (5, 1031)
    x = (np.random.default_rng(9).standard_normal(shape) * 5).astype(np.float32)
    nodes = [onnx_node("Erf", ["x"], "a"), onnx_node("Tanh", ["x"], "b"),
             onnx_node("Add", ["a", "b"], "c"), onnx_node("Sigmoid", ["c"], "d"),
             onnx_node("Exp", ["x"], "e"), onnx_node("Mul", ["d", "e"], "y")]
    model = make_model(nodes, [vinfo("x", shape)], [vinfo("y", shape)])
    artifact = tmp_path / "model.pyc"
    api.build(write_model(model, tmp_path), artifact, name="nomvec")
    assert "pyc_verff" in (artifact / "src" / "model.c").read_text()
    target = CpuTarget()
    library = tmp_path / "libnomvec.so"
    target.compile_library(artifact / "src", library, libraries=["-lm"],
                           flags=[f for f in target.flags() if f not in VECTOR_MATH_FLAGS])
    lib = ctypes.CDLL(str(library))
    handle = ctypes.c_void_p()
    assert lib.nomvec_create(str(artifact / "weights.bin").encode(), ctypes.byref(handle)) == 0
    y = np.empty(shape, np.float32)
    pointers = [(ctypes.c_void_p * 1)(a.ctypes.data) for a in (x, y)]
    status = lib.nomvec_run(handle, *pointers)
    lib.nomvec_destroy(handle)
    assert status == 0
    d = x.astype(np.float64)
    c = np.vectorize(erf)(d) + np.tanh(d)
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-c)) * np.exp(d), rtol=4e-6, atol=1e-30)


def onnx_node(op: str, inputs: list[str], output: str, **attrs: object) -> onnx.NodeProto:
    return helper.make_node(op, inputs, [output], **attrs)


@pytest.mark.parametrize(("shape", "axes"), [((5, 37), [1]), ((3, 4, 130), [2]), ((2, 3, 5), [1, 2]),
                                             ((67,), [0])])
def test_sums_and_means_over_trailing_rows_match_numpy(tmp_path: Path, shape: tuple[int, ...],
                                                       axes: list[int]) -> None:
    """ReduceSum / ReduceMean over contiguous trailing axes sum a vector at a time."""
    x = np.random.default_rng(len(shape) * 100 + shape[-1]).standard_normal(shape).astype(np.float32)
    out_shape = tuple(1 if i in axes else d for i, d in enumerate(shape))
    axes_init = init("axes", np.array(axes, np.int64))
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["s"]),
             helper.make_node("ReduceMean", ["x"], ["m"], axes=axes)]
    model = make_model(nodes, [vinfo("x", shape)], [vinfo("s", out_shape), vinfo("m", out_shape)],
                       [axes_init], opset=17)
    artifact = tmp_path / "model.pyc"
    api.build(write_model(model, tmp_path), artifact)
    assert "pyc_row_sumf(X0" in (artifact / "src" / "model.c").read_text()
    with api.load(artifact) as compiled:
        got = compiled.run({"x": x})
    d = x.astype(np.float64)
    np.testing.assert_allclose(got["s"], d.sum(tuple(axes), keepdims=True), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["m"], d.mean(tuple(axes), keepdims=True), rtol=1e-5, atol=1e-6)
