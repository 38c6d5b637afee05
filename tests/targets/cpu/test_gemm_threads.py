"""The GEMM's PYC_PARALLEL_FOR loops keep the threading contract (docs: each iteration writes
its own block, no reduction across iterations): the generated C built with OpenMP (the
runtime's macro is then an `omp parallel for`) and run on 2 threads gives, bit for bit, what a
build without OpenMP gives, and matches numpy float64."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_gemm import CONVS, MatMulGraph, _conv_model

import pyc_cli
from pyc_cli.targets import get_target


def _big_matmuls(rng: np.random.Generator, constant: bool
                 ) -> tuple[onnx.ModelProto, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """GEMMs big enough that their loops are marked parallel: blocks, GEMV, batched, with a
    residual epilogue each."""
    g = MatMulGraph(rng, constant)
    shapes = [((259, 512), (512, 515)), ((1, 2048), (2048, 2047)),
              ((12, 128, 64), (12, 64, 129)), ((2, 3, 97, 300), (300, 200))]
    for i, (a_shape, b_shape) in enumerate(shapes):
        g.matmul(str(i), a_shape, b_shape, "residual")
    return g.model("big"), g.feeds, g.expected


def _run(library: Path, prefix: str, weights: Path, manifest: dict,
         feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    lib = ctypes.CDLL(str(library))
    create, run = getattr(lib, f"{prefix}_create"), getattr(lib, f"{prefix}_run")
    create.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    run.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                    ctypes.POINTER(ctypes.c_void_p)]
    handle = ctypes.c_void_p()
    assert create(str(weights).encode(), ctypes.byref(handle)) == 0
    ins = [np.ascontiguousarray(feeds[i["name"]]) for i in manifest["inputs"]]
    outs = [np.empty(o["shape"], np.float32) for o in manifest["outputs"]]
    in_ptrs = (ctypes.c_void_p * len(ins))(*[a.ctypes.data for a in ins])
    out_ptrs = (ctypes.c_void_p * len(outs))(*[a.ctypes.data for a in outs])
    for _ in range(3):  # the same results every time
        assert run(handle, in_ptrs, out_ptrs) == 0
    return {o["name"]: value for o, value in zip(manifest["outputs"], outs)}


@pytest.mark.parametrize("kind", ["const_b", "runtime_b", "conv"])
def test_marked_loops_run_in_parallel_bit_for_bit(kind: str, tmp_path: Path,
                                                  rng: np.random.Generator,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    compiler = shutil.which("gcc")
    if compiler is None:
        pytest.skip("gcc is not installed here")
    if kind == "conv":
        monkeypatch.setattr("test_gemm.CONVS", [
            ((1, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, "residual"),
            ((1, 3, 112, 112), (64, 3, 7, 7), 2, 3, 1, "bias_relu"),
            ((1, 256, 28, 28), (128, 256, 1, 1), 1, 0, 1, "")])
        model, feeds, expected, _ = _conv_model(rng)
        monkeypatch.setattr("test_gemm.CONVS", CONVS)
    else:
        model, feeds, expected = _big_matmuls(rng, kind == "const_b")
    onnx.save(model, tmp_path / "m.onnx")
    art = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a").artifact
    manifest = json.loads((art / "manifest.json").read_text())
    flags = manifest["toolchain"]["flags"]
    src = art / "src"
    text = (src / "model.c").read_text()
    assert "\n  PYC_PARALLEL_FOR\n" in text or "\n        PYC_PARALLEL_FOR\n" in text
    results = {}
    # the runtime's PYC_PARALLEL_FOR is OpenMP's under -fopenmp; a run's team: PYC_NUM_THREADS
    monkeypatch.setenv("PYC_NUM_THREADS", "2")
    # the serial build leaves OpenMP out even where the artifact's flags have it
    serial_flags = [f for f in flags if f != "-fopenmp"]
    libraries = [lib for lib in manifest["toolchain"]["libraries"] if lib not in ("-lgomp", "-lomp")]
    for tag, extra, source in (("serial", [], "model.c"), ("omp", ["-fopenmp"], "model.c")):
        library = tmp_path / f"{tag}.so"
        built = subprocess.run([compiler, *serial_flags, *extra, "-shared", "-o", str(library),
                                source, "pyc_runtime.c", *libraries],
                               cwd=src, capture_output=True, text=True, check=False)
        if built.returncode != 0 and tag == "omp" and "fopenmp" in built.stderr:
            pytest.skip("this gcc has no OpenMP")
        assert built.returncode == 0, built.stderr[:4000]
        results[tag] = _run(library, manifest["symbol_prefix"], art / "weights.bin", manifest,
                            feeds)
    assert os.environ["PYC_NUM_THREADS"] == "2"
    for name, want in expected.items():
        np.testing.assert_array_equal(results["omp"][name], results["serial"][name], name)
        # sums of up to 2048 float32 products: 1e-4 relative, 1e-5 of the largest value
        np.testing.assert_allclose(results["omp"][name], want, rtol=1e-4,
                                   atol=1e-5 * np.abs(want).max(), err_msg=name)


def _gemvs(rng: np.random.Generator) -> tuple[onnx.ModelProto, dict[str, np.ndarray],
                                             dict[str, np.ndarray]]:
    """Short-M MatMuls on constant weights (the GEMV path: one statically scheduled task per
    panel), odd N so the last panel is partial, with a bias + Relu epilogue."""
    nodes, inputs, outputs, inits = [], [], [], []
    feeds: dict[str, np.ndarray] = {}
    expected: dict[str, np.ndarray] = {}
    for i, (m, k, n) in enumerate([(1, 2048, 2047), (3, 1031, 1553)]):
        a = rng.standard_normal((m, k)).astype(np.float32)
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        feeds[f"a{i}"] = a
        inputs.append(helper.make_tensor_value_info(f"a{i}", TensorProto.FLOAT, [m, k]))
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(bias, f"c{i}")]
        nodes += [helper.make_node("MatMul", [f"a{i}", f"w{i}"], [f"t{i}"]),
                  helper.make_node("Add", [f"t{i}", f"c{i}"], [f"s{i}"]),
                  helper.make_node("Relu", [f"s{i}"], [f"y{i}"])]
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [m, n]))
        expected[f"y{i}"] = np.maximum(a.astype(np.float64) @ w + bias, 0)
    graph = helper.make_graph(nodes, "gemv", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, feeds, expected


@pytest.mark.skipif(not get_target("cpu").openmp(), reason="the C compiler has no OpenMP runtime")
def test_static_gemv_is_the_same_for_every_team_size(tmp_path: Path, rng: np.random.Generator,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The statically scheduled GEMV splits B's panels by team size: 1, 2 and 3 threads (an
    uneven share) give the same bits, and numpy float64's values."""
    model, feeds, expected = _gemvs(rng)
    onnx.save(model, tmp_path / "m.onnx")
    art = pyc_cli.build(tmp_path / "m.onnx", tmp_path / "a").artifact
    assert (art / "src" / "model.c").read_text().count("\n  PYC_PARALLEL_FOR_STATIC\n") == 2
    manifest = json.loads((art / "manifest.json").read_text())
    results = {}
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("PYC_NUM_THREADS", threads)  # read when the model is created
        results[threads] = _run(art / "libmodel.so", manifest["symbol_prefix"],
                                art / "weights.bin", manifest, feeds)
    for name, want in expected.items():
        for threads in ("2", "3"):
            np.testing.assert_array_equal(results[threads][name], results["1"][name],
                                          f"{name}, {threads} threads")
        # sums of up to 2048 float32 products of unit scale: 1e-4 relative, 1e-5 absolute
        np.testing.assert_allclose(results["2"][name], want, rtol=1e-4, atol=1e-5, err_msg=name)
