"""Clip and Relu with constant bounds, named and opaque to the compiler in the kernels of
kernel_context.NAMED_BOUNDS_TEMPLATES (so that GCC vectorizes them as max / min): the same
results as numpy float64 on every ISA's build (AVX-512, AVX2, portable vectors), NaN and +-inf
inputs included. NaN stays NaN; a missing bound is the type's finite limit (Clip(+inf) is
FLT_MAX); the fused epilogues of the depthwise and implicit-GEMM convs and the elementwise loop
all take the named path (checked in the generated C), on lengths with vector tails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import Forced
from onnx import TensorProto, helper, numpy_helper
from test_gemm import BUILDS

import pyc_cli

F32_MAX = float(np.finfo(np.float32).max)
# (name, min, max): None is a missing bound (an empty input name)
CLIPS = [("both", -1.5, 6.0), ("relu6", 0.0, 6.0), ("min_only", 0.25, None),
         ("max_only", None, -0.5), ("none", None, None)]


def _clip_node(src: str, dst: str, lo: float | None, hi: float | None, inits: list) -> onnx.NodeProto:
    names = []
    for side, value in (("lo", lo), ("hi", hi)):
        if value is None:
            names.append("")
        else:
            names.append(f"{dst}_{side}")
            inits.append(numpy_helper.from_array(np.array(value, np.float32), names[-1]))
    return helper.make_node("Clip", [src, *names], [dst])


def _clip64(v: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    """numpy's maximum / minimum keep NaN; missing bounds are float32's finite limits."""
    v = np.maximum(v, -F32_MAX if lo is None else lo)
    return np.minimum(v, F32_MAX if hi is None else hi)


def _special(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random values in [-8, 8] with NaN, +-inf, +-0 and bound values sprinkled in."""
    x = rng.uniform(-8, 8, shape).astype(np.float32)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=flat.size // 3, replace=False)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 6.0, -1.5, 0.25, F32_MAX, -F32_MAX],
                        np.float32)
    flat[picks] = specials[np.arange(picks.size) % specials.size]
    return x


C, H, W = 9, 5, 37  # 37 columns: whole vectors and a tail on every ISA; 9 channels: the
# implicit GEMM takes reductions of 8 or more


def _model(rng: np.random.Generator, kind: str) -> tuple[onnx.ModelProto, np.ndarray,
                                                          dict[str, np.ndarray]]:
    """x (1, C, H, W) and, per clip case and a Relu, the clamp of one producer: `depthwise`, a
    1x1 depthwise conv (weights in [0.5, 1): +-inf stays +-inf, FLT_MAX finite) of x with NaN and +-inf in it;
    `pointwise`, a 1x1 conv of finite x whose bias holds NaN, +-inf and the bounds (the
    special values reach the epilogue through the bias); `elementwise`, x itself."""
    specials = kind != "pointwise"
    x = _special(rng, (1, C, H, W)) if specials else rng.uniform(-2, 2, (1, C, H, W)).astype(np.float32)
    x64 = x.astype(np.float64)
    inits: list = []
    if kind == "depthwise":
        w = rng.uniform(0.5, 1, (C, 1, 1, 1)).astype(np.float32)  # < 1: FLT_MAX * w stays finite
        b = rng.uniform(-1, 1, C).astype(np.float32)
        source = x64 * w.reshape(1, C, 1, 1) + b.reshape(1, C, 1, 1)
        conv = {"group": C}
    elif kind == "pointwise":
        oc = 12
        w = rng.uniform(-1, 1, (oc, C, 1, 1)).astype(np.float32)
        b = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 6.0, -1.5, 0.25, F32_MAX, -F32_MAX,
                      1.0, -3.0], np.float32)
        source = np.einsum("nchw,oc->nohw", x64, w[:, :, 0, 0].astype(np.float64)) \
            + b.reshape(1, oc, 1, 1)
        conv = {}
    else:
        source = x64
    if kind != "elementwise":
        inits += [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    nodes, outputs, expected = [], [], {}
    for name, lo, hi in CLIPS + [("relu", None, None)]:
        src = "x"
        if kind != "elementwise":
            src = f"{name}_conv"
            nodes.append(helper.make_node("Conv", ["x", "w", "b"], [src], kernel_shape=[1, 1], **conv))
        if name == "relu":
            nodes.append(helper.make_node("Relu", [src], [name]))
            expected[name] = np.maximum(source, 0.0)
        else:
            nodes.append(_clip_node(src, name, lo, hi, inits))
            expected[name] = _clip64(source, lo, hi)
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "clamps", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, list(x.shape))], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model), x, expected


KERNELS = {"depthwise": "conv2d_depthwise", "pointwise": "conv2d_implicit_gemm",
           "elementwise": "elementwise_loop"}
CASES = [(kind, isa) for kind in KERNELS for isa in sorted(BUILDS)
         if not (kind == "pointwise" and isa == "vector")]  # implicit GEMM: AVX only


@pytest.mark.parametrize(("kind", "isa"), CASES)
def test_named_bounds_match_float64_with_nan_and_inf(kind: str, isa: str, rng: np.random.Generator,
                                                    tmp_path: Path) -> None:
    model, x, expected = _model(rng, kind)
    onnx.save(model, tmp_path / "m.onnx")
    build = BUILDS[isa]
    forced = Forced("Conv", KERNELS[kind], {}) if kind == "pointwise" else None
    result = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a", cpu=build.cpu,
                           cpu_features=build.features, tuning=forced)
    chosen = [node.ann.kernel_name for node in result.graph.nodes]
    assert chosen == [KERNELS[kind]] * (len(CLIPS) + 1), chosen
    source = (result.artifact / "src" / "model.c").read_text()
    # every clip's and the relu's constant bounds are named (a Clip has two, Relu one), which
    # kernels that read the same constants share
    assert source.count("PYC_OPAQUE(pyc_e") >= 2 * len(CLIPS) + 1 - 1, "bounds not named"
    if not build.runnable:
        return  # compiled for a CPU this one is not: compile-only
    with pyc_cli.load(result.artifact) as compiled:
        got = compiled.run({"x": x})
    # float32 against float64: x * w + b rounded once or twice (no FMA on the portable build:
    # half an ulp of |x * w| <= 8 each, under 1e-6 absolute), six products for the pointwise;
    # elementwise exact. NaN exactly where float64 has NaN, +-inf and the limits exactly.
    rtol, atol = {"depthwise": (3e-7, 1e-6), "pointwise": (1e-6, 1e-5), "elementwise": (0, 0)}[kind]
    for name, want in expected.items():
        np.testing.assert_allclose(got[name], want, rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=name)


@pytest.mark.parametrize("kind", ["depthwise", "elementwise"])
def test_named_bounds_on_arm64_match_float64(kind: str, rng: np.random.Generator, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The same on an arm64 build (PYC_OPAQUE's "+w" asm operand), run under qemu-aarch64."""
    import test_neon

    if test_neon.CROSS_CC is None or test_neon.QEMU is None or not test_neon.SYSROOT.is_dir():
        pytest.skip("needs aarch64-linux-gnu-gcc, qemu-aarch64 and the arm64 C library")
    model, x, expected = _model(rng, kind)
    onnx.save(model, tmp_path / "m.onnx")
    artifact = test_neon.build_for_arm64(tmp_path / "m.onnx", tmp_path / "a", {}, monkeypatch)
    source = (artifact / "src" / "model.c").read_text()
    assert source.count("PYC_OPAQUE(pyc_e") >= 2 * len(CLIPS), "bounds not named"
    got = test_neon.run_under_qemu(artifact, {"x": x}, tmp_path)
    rtol, atol = {"depthwise": (3e-7, 1e-6), "elementwise": (0, 0)}[kind]
    for name, want in expected.items():
        np.testing.assert_allclose(got[name], want, rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=name)
