"""Models whose own tensors are float16 (an ONNX model exported in fp16) on the CUDA target,
without a GPU: every case of f16_cases.py built for --target cuda and run emulated
(emulate_cuda.h: bit-exact float16 conversions, round to nearest even) against onnxruntime on
fresh random inputs, outputs and arena poisoned first (tolerances in f16_cases.py: Casts and
data movement bit for bit, NaN where onnxruntime's is); the fp16 MLP and conv net at
--precision fp16 too (MatMul / Conv on the tensor-core kernels, reading the 16-bit
activations the Casts around them store); the reference MLP, CNN and transformer exported in
float16 (f16_cases.to_float16), at fp32 and fp16; the whole runtime path (runtime/cuda.py through the
emulated driver) takes and returns numpy float16 arrays; the generated source compiles under
NVRTC for sm_90 and sm_80 (skipped only without the NVRTC wheel). The GPU tests of the same
cases are in test_cuda_gpu.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REFERENCE_MODELS, onnxruntime_outputs
from cuda_emulation import CXX
from f16_cases import CASES, REFERENCE_RTOL, F16Case, conv_net, half, mlp, to_float16
from helpers import randomize_initializers, write_model
from mma_precision import assert_close_to_max
from nvrtc_check import compile_cleanly
from test_cuda_emulated import Emulated
from test_cuda_generic import emitted
from test_cuda_runtime_emulated import fake_for, use

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.ir.types import DType
from pyc_cli.targets.cuda import bindings

needs_cxx = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")
needs_nvrtc = pytest.mark.skipif(not bindings.available(),
                                 reason='the NVRTC wheel is not installed (pip install ".[cuda]")')


def compare(ours: dict[str, np.ndarray], expected: dict[str, np.ndarray], rtol: float,
            atol: float) -> None:
    for name, value in expected.items():
        assert ours[name].dtype == value.dtype, (name, ours[name].dtype, value.dtype)
        if rtol == 0 and atol == 0 or value.dtype.kind in "iub":
            np.testing.assert_array_equal(ours[name], value, err_msg=name)  # NaN where it is NaN
        else:
            np.testing.assert_allclose(ours[name].astype(np.float32), value.astype(np.float32),
                                       rtol=rtol, atol=atol, err_msg=name)


@needs_cxx
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_f16_model_matches_onnxruntime(case: F16Case, tmp_path: Path,
                                       rng: np.random.Generator) -> None:
    path = write_model(case.make(rng), tmp_path)
    emulated = Emulated(path, tmp_path)
    kernels = [n.ann.kernel_name for n in emulated.graph.nodes  # a fused node keeps its name
               if n.op == case.op or n.name.startswith(f"{case.op}_")]
    assert case.kernel in kernels, {n.name: n.ann.kernel_name for n in emulated.graph.nodes}
    for _ in range(2):  # fresh inputs; poisoned buffers each run
        feeds = case.feeds(rng)
        compare(emulated.run(feeds), onnxruntime_outputs(path, feeds), case.rtol, case.atol)


@needs_cxx
@pytest.mark.parametrize("make,shape,kernel", [(mlp, (16, 48), "cuda_matmul_mma"),
                                               (conv_net, (2, 3, 16, 16), "cuda_conv_mma")],
                         ids=["mlp", "conv_net"])
def test_f16_model_on_tensor_cores(make, shape: tuple[int, ...], kernel: str,  # noqa: ANN001
                                   tmp_path: Path, rng: np.random.Generator) -> None:
    """At --precision fp16 an fp16 model's MatMul / Conv (float32 between the casts
    canonicalize puts around them) run on tensor cores, reading the casts' results stored in 16
    bits: rtol 2e-2, atol 2e-2 against onnxruntime's float16 model, as in float32."""
    path = write_model(make(rng), tmp_path)
    emulated = Emulated(path, tmp_path, precision="fp16")
    assert kernel in {n.ann.kernel_name for n in emulated.graph.nodes}
    assert any(t.dtype is DType.F16 for v, t in emulated.graph.types.items()
               if v not in emulated.graph.inputs and v not in emulated.graph.outputs
               and v not in emulated.graph.constants)
    for _ in range(2):
        feeds = {"x": half(rng, *shape)}
        compare(emulated.run(feeds), onnxruntime_outputs(path, feeds), 2e-2, 2e-2)


def float16_feeds(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in feeds.items()}


@needs_cxx
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_reference_model_exported_in_float16(name: str, precision: str, tmp_path: Path,
                                              rng: np.random.Generator) -> None:
    """The reference models with fresh random weights, exported in float16 (to_float16), against
    onnxruntime's run of the same float16 model within REFERENCE_RTOL of max |output|; at fp16
    the CNN's convs and the transformer's MatMuls on tensor cores."""
    ref = REFERENCE_MODELS[name]
    path = write_model(to_float16(randomize_initializers(onnx.load(str(ref.path)), rng)), tmp_path)
    emulated = Emulated(path, tmp_path, dict(ref.shapes), precision=precision)
    kernels = {n.ann.kernel_name for n in emulated.graph.nodes}
    if precision == "fp16" and name != "mlp":  # the MLP's 3 rows stay on the skinny GEMM
        assert kernels & {"cuda_conv_mma", "cuda_matmul_mma"}, kernels
    for _ in range(2):
        feeds = float16_feeds(ref.random_feeds(rng))
        ours = emulated.run(feeds)
        for key, value in onnxruntime_outputs(path, feeds).items():
            assert ours[key].dtype == np.float16
            assert_close_to_max(ours[key].astype(np.float32), value.astype(np.float32),
                                REFERENCE_RTOL, f"{name} {key} at {precision}")


@needs_cxx
@needs_nvrtc
def test_runtime_takes_and_returns_float16(tmp_path: Path, rng: np.random.Generator,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime/cuda.py through the emulated driver: float16 inputs in, float16 outputs out (the
    manifest's dtype), a float32 input refused as for any other type mismatch; the C entry
    point's byte counts are float16's."""
    path = write_model(mlp(rng), tmp_path)
    artifact = tmp_path / "mlp.pyc"
    pyc_cli.build(path, artifact, target="cuda", arch="sm_90")
    (entry,) = (artifact / "src").glob("*_cuda.c")  # the C entry point counts 2 bytes a value
    assert "INPUT_BYTES[1] = { 1536 }" in entry.read_text()  # 16 x 48 float16
    assert "OUTPUT_BYTES[1] = { 320 }" in entry.read_text()  # 16 x 10
    use(monkeypatch, fake_for(artifact, tmp_path))
    with pyc_cli.load(artifact) as model:
        assert [s.dtype for s in (*model.inputs, *model.outputs)] == [np.dtype(np.float16)] * 2
        for _ in range(2):
            feeds = {"x": half(rng, 16, 48)}
            model.poison()
            ours = model.run(feeds)
            compare(ours, onnxruntime_outputs(path, feeds), 2e-2, 2e-2)
        with pytest.raises(PycError) as caught:
            model.run({"x": feeds["x"].astype(np.float32)})
        assert caught.value.code == "E041" and "float32" in str(caught.value), caught.value


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_f16_source_compiles_under_nvrtc(case: F16Case, arch: str, tmp_path: Path) -> None:
    source, _ = emitted(write_model(case.make(np.random.default_rng(0)), tmp_path))
    assert "pyc_round_f16(" in source or "pyc_f16*" in source
    compile_cleanly(source, arch)
