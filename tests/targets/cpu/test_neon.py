"""Artifacts built for arm64 (a cross C compiler: CC=aarch64-linux-gnu-gcc, --cpu armv8.2-a) use
the NEON micro-kernels of the packed GEMM (float32x4_t / float64x2_t intrinsics, 8 x 8 register
blocks in AArch64's 32 vector registers), and compute what onnxruntime computes on this machine:
each artifact runs under qemu-aarch64 through tests/c/io_driver.c on fresh random inputs and
weights, compared with onnxruntime (float32: rtol 1e-4, atol 1e-5 times the output's scale; the
arm64 build sums in other orders and with fused multiply-adds). GEMMs of odd sizes (1, primes,
tails past the 8-wide panels), float32 and float64, constant and run-time B, and the reference
models (MLP, CNN, transformer). Skipped where the cross compiler or qemu is missing
(.ci/run installs both)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REFERENCE_MODELS, ReferenceModel, onnxruntime_outputs
from helpers import Forced
from onnx import TensorProto, helper, numpy_helper

import pyc_cli
from pyc_cli.ir.types import DType

REPO = Path(__file__).resolve().parents[3]
CROSS_CC = shutil.which("aarch64-linux-gnu-gcc")
QEMU = shutil.which("qemu-aarch64")
SYSROOT = Path("/usr/aarch64-linux-gnu")
pytestmark = pytest.mark.skipif(
    CROSS_CC is None or QEMU is None or not SYSROOT.is_dir(),
    reason="needs aarch64-linux-gnu-gcc, qemu-aarch64 and the arm64 C library "
           "(apt-get install gcc-aarch64-linux-gnu qemu-user libc6-dev-arm64-cross)")


def build_for_arm64(model: Path, out: Path, shapes: dict[str, tuple[int, ...]],
                    monkeypatch: pytest.MonkeyPatch, tuning: Forced | None = None) -> Path:
    monkeypatch.setenv("CC", str(CROSS_CC))
    pyc_cli.build(model, out, input_shapes=shapes, cpu="armv8.2-a", tuning=tuning)
    return out


def run_under_qemu(artifact: Path, feeds: dict[str, np.ndarray], tmp_path: Path
                   ) -> dict[str, np.ndarray]:
    """The artifact's C, linked with io_driver.c by the cross compiler, run by qemu-aarch64."""
    manifest = json.loads((artifact / "manifest.json").read_text())
    exe = tmp_path / "driver"
    flags = [f for f in manifest["toolchain"]["flags"] if f != "-fPIC"]
    subprocess.run([str(CROSS_CC), *flags, f"-DPYC_NAME={manifest['symbol_prefix']}",
                    "-I", str(artifact / "src"), str(artifact / "src" / "model.c"),
                    str(artifact / "src" / "pyc_runtime.c"), str(REPO / "tests" / "c" / "io_driver.c"),
                    "-o", str(exe), *manifest["toolchain"]["libraries"], "-pthread"], check=True)
    args = [str(artifact / "weights.bin")]
    for entry in manifest["inputs"]:
        path = tmp_path / f"in_{len(args)}.bin"
        path.write_bytes(np.ascontiguousarray(feeds[entry["name"]]).tobytes())
        args.append(str(path))
    outs = [tmp_path / f"out_{i}.bin" for i in range(len(manifest["outputs"]))]
    done = subprocess.run([str(QEMU), "-L", str(SYSROOT), str(exe), *args, *map(str, outs)],
                          capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr
    return {entry["name"]: np.frombuffer(path.read_bytes(), DType(entry["dtype"]).numpy
                                         ).reshape(entry["shape"])
            for entry, path in zip(manifest["outputs"], outs)}


def assert_matches(got: dict[str, np.ndarray], want: dict[str, np.ndarray], rtol: float) -> None:
    for name, expected in want.items():
        scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
        np.testing.assert_allclose(got[name], expected, rtol=rtol, atol=1e-5 * scale,
                                   err_msg=name)


def gemm_model(m: int, k: int, n: int, dtype: np.dtype, constant_b: bool,
               rng: np.random.Generator) -> onnx.ModelProto:
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    inputs = [helper.make_tensor_value_info("a", elem, [m, k])]
    inits = []
    if constant_b:
        inits.append(numpy_helper.from_array(rng.standard_normal((k, n)).astype(dtype), "b"))
    else:
        inputs.append(helper.make_tensor_value_info("b", elem, [k, n]))
    inits.append(numpy_helper.from_array(rng.standard_normal(n).astype(dtype), "bias"))
    nodes = [helper.make_node("MatMul", ["a", "b"], ["ab"]),
             helper.make_node("Add", ["ab", "bias"], ["y"])]
    graph = helper.make_graph(nodes, "gemm", inputs,
                              [helper.make_tensor_value_info("y", elem, [m, n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("m,k,n,dtype,constant_b", [
    (1, 13, 29, np.float32, True), (7, 64, 17, np.float32, True), (37, 31, 67, np.float32, True),
    (9, 19, 23, np.float32, False), (11, 5, 9, np.float64, True), (16, 40, 24, np.float64, False)])
def test_gemm_on_arm64_uses_neon_and_matches_onnxruntime(
        m: int, k: int, n: int, dtype: np.dtype, constant_b: bool, tmp_path: Path,
        rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gemm.onnx"
    onnx.save(gemm_model(m, k, n, dtype, constant_b, rng), path)
    artifact = build_for_arm64(path, tmp_path / "gemm.pyc", {}, monkeypatch)
    source = (artifact / "src" / "model.c").read_text()
    suffix = "f32" if dtype == np.float32 else "f64"
    assert f"vfmaq_{suffix}(" in source and "#include <arm_neon.h>" in source
    feeds = {"a": rng.standard_normal((m, k)).astype(dtype)}
    if not constant_b:
        feeds["b"] = rng.standard_normal((k, n)).astype(dtype)
    assert_matches(run_under_qemu(artifact, feeds, tmp_path), onnxruntime_outputs(path, feeds),
                   1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("m,k,n,dtype,constant_b", [
    (37, 70, 67, np.float32, True), (1, 50, 29, np.float32, True), (9, 45, 23, np.float32, False),
    (16, 40, 24, np.float64, False)])
def test_k_blocked_gemm_on_arm64_matches_onnxruntime(
        m: int, k: int, n: int, dtype: np.dtype, constant_b: bool, tmp_path: Path,
        rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reduction in K blocks of 16 (a shorter last one) on the NEON micro-kernels, the
    bias added once after the last block."""
    path = tmp_path / "gemm.onnx"
    onnx.save(gemm_model(m, k, n, dtype, constant_b, rng), path)
    candidate = "matmul_packed_const" if constant_b else "matmul_packed"
    artifact = build_for_arm64(path, tmp_path / "gemm.pyc", {}, monkeypatch,
                               Forced("MatMul", candidate, {"kc": 16}))
    source = (artifact / "src" / "model.c").read_text()
    assert "vfmaq_" in source and "part[" in source
    feeds = {"a": rng.standard_normal((m, k)).astype(dtype)}
    if not constant_b:
        feeds["b"] = rng.standard_normal((k, n)).astype(dtype)
    assert_matches(run_under_qemu(artifact, feeds, tmp_path), onnxruntime_outputs(path, feeds),
                   1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_reference_models_on_arm64_match_onnxruntime(
        name: str, tmp_path: Path, rng: np.random.Generator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    model: ReferenceModel = REFERENCE_MODELS[name]
    artifact = build_for_arm64(model.path, tmp_path / f"{name}.pyc", model.shapes, monkeypatch)
    assert json.loads((artifact / "manifest.json").read_text())["cpu"]["arch"] == "aarch64"
    feeds = model.random_feeds(rng)
    assert_matches(run_under_qemu(artifact, feeds, tmp_path),
                   onnxruntime_outputs(model.path, feeds), 1e-4)
