"""Models whose own tensors are bfloat16 (issue #14) on the CUDA target, without a GPU: every
case of tests/bf16_cases.py built for --target cuda and run emulated (emulate_cuda.h:
bit-exact bfloat16 conversions, round to nearest even) against onnxruntime where its CPU
provider has the bfloat16 kernel, else numpy float64 rounded to bfloat16 per op, on fresh random
inputs with outputs and arena poisoned (tolerances in bf16_cases.py; NaN where onnxruntime's
is, its bits the GPU's); the MLP at --precision bf16 on the tensor-core GEMM; the reference MLP
and transformer converted to bfloat16 (fp32 and bf16) against their float32 twin; the runtime
path (runtime/cuda.py through the emulated driver) takes and returns ml_dtypes.bfloat16 arrays;
the generated source compiles under NVRTC for sm_90 and sm_80. The GPU test of the converted
models is in test_cuda_gpu.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from bf16_cases import (
    BF,
    BF16_MODEL_RTOL,
    CASES,
    Bf16Case,
    bf,
    compare,
    expected_outputs,
    float32_twin,
    mlp,
    mlp_reference,
    to_bfloat16,
)
from conftest import REFERENCE_MODELS
from cuda_emulation import CXX
from helpers import randomize_initializers, write_model
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


@needs_cxx
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bf16_model_emulated(case: Bf16Case, tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_model(case.make(rng), tmp_path)
    emulated = Emulated(path, tmp_path)
    kernels = [n.ann.kernel_name for n in emulated.graph.nodes  # a fused node keeps its name
               if n.op == case.op or n.name.startswith(f"{case.op}_")]
    assert case.kernel in kernels, {n.name: n.ann.kernel_name for n in emulated.graph.nodes}
    for _ in range(2):  # fresh inputs; poisoned buffers each run
        feeds = case.feeds(rng)
        compare(emulated.run(feeds), expected_outputs(case, path, feeds), case.rtol, case.atol,
                nan_bits=False, of_max=case.name == "mlp")


def converted_model(name: str, rng: np.random.Generator) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """A reference model with fresh weights converted to bfloat16, and its float32 twin."""
    model = to_bfloat16(randomize_initializers(onnx.load(str(REFERENCE_MODELS[name].path)), rng))
    return model, float32_twin(model)


def check_against_twin(run, twin: onnx.ModelProto, name: str,  # noqa: ANN001
                       rng: np.random.Generator) -> None:
    """`run` (bfloat16 feeds -> outputs) against onnxruntime's float32 twin on the same inputs,
    within BF16_MODEL_RTOL of max |output|."""
    session = ort.InferenceSession(twin.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    for _ in range(2):
        feeds = REFERENCE_MODELS[name].random_feeds(rng)
        ours = run({k: v.astype(BF) if v.dtype == np.float32 else v for k, v in feeds.items()})
        exact = {k: v.astype(BF).astype(np.float32) if v.dtype == np.float32 else v
                 for k, v in feeds.items()}
        for key, value in zip(names, session.run(names, exact)):
            assert ours[key].dtype == BF
            scale = float(np.abs(value).max())
            error = float(np.abs(ours[key].astype(np.float32) - value).max())
            assert error <= BF16_MODEL_RTOL * scale, (name, key, error, scale)


@needs_cxx
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", ["mlp", "transformer"])  # the CNN's Conv takes bfloat16 from opset 22
def test_reference_model_converted_to_bf16(name: str, precision: str, tmp_path: Path,
                                           rng: np.random.Generator) -> None:
    model, twin = converted_model(name, rng)
    path = write_model(model, tmp_path)
    emulated = Emulated(path, tmp_path, dict(REFERENCE_MODELS[name].shapes), precision=precision)
    if precision == "bf16" and name != "mlp":  # the MLP's 3 rows stay on the skinny GEMM
        assert "cuda_matmul_mma" in {n.ann.kernel_name for n in emulated.graph.nodes}
    check_against_twin(emulated.run, twin, name, rng)


@needs_cxx
def test_bf16_mlp_on_tensor_cores(tmp_path: Path, rng: np.random.Generator) -> None:
    """At --precision bf16 the bfloat16 MLP's MatMuls (float32 between the casts) run on the
    tensor-core GEMM reading the casts' results stored in 16 bits: within 2^-6 of max |output|
    of numpy's per-op rounded float64 reference, as at fp32."""
    model = mlp(rng)
    path = write_model(model, tmp_path)
    emulated = Emulated(path, tmp_path, precision="bf16")
    assert "cuda_matmul_mma" in {n.ann.kernel_name for n in emulated.graph.nodes}
    assert any(t.dtype is DType.BF16 for v, t in emulated.graph.types.items()
               if v not in emulated.graph.inputs and v not in emulated.graph.outputs
               and v not in emulated.graph.constants)
    for _ in range(2):
        feeds = {"x": bf(rng, 16, 48)}
        compare(emulated.run(feeds), mlp_reference(model)(feeds), 0.0, 2.0**-6, of_max=True)


@needs_cxx
@needs_nvrtc
def test_runtime_takes_and_returns_bf16(tmp_path: Path, rng: np.random.Generator,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime/cuda.py through the emulated driver: bfloat16 inputs in, bfloat16 outputs out
    (the manifest's dtype bf16), a float32 input refused (PYC-E041); the C entry point counts 2
    bytes a value."""
    model = mlp(rng)
    path = write_model(model, tmp_path)
    artifact = tmp_path / "mlp.pyc"
    pyc_cli.build(path, artifact, target="cuda", arch="sm_90")
    (entry,) = (artifact / "src").glob("*_cuda.c")
    assert "INPUT_BYTES[1] = { 1536 }" in entry.read_text()  # 16 x 48 bfloat16
    use(monkeypatch, fake_for(artifact, tmp_path))
    with pyc_cli.load(artifact) as compiled:
        assert [s.dtype for s in (*compiled.inputs, *compiled.outputs)] == [np.dtype(BF)] * 3
        for _ in range(2):
            feeds = {"x": bf(rng, 16, 48)}
            compiled.poison()
            compare(compiled.run(feeds), mlp_reference(model)(feeds), 0.0, 2.0**-6, of_max=True)
        with pytest.raises(PycError) as caught:
            compiled.run({"x": feeds["x"].astype(np.float32)})
        assert caught.value.code == "E041" and "float32" in str(caught.value), caught.value


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bf16_source_compiles_under_nvrtc(case: Bf16Case, arch: str, tmp_path: Path) -> None:
    source, _ = emitted(write_model(case.make(np.random.default_rng(0)), tmp_path))
    assert "pyc_round_bf16(" in source or "pyc_bf16*" in source
    compile_cleanly(source, arch)
