"""Fused attention over sizes known at run time on the CUDA target (issues #14, #15), without a
GPU: multi-head attention whose batch and sequence lengths are symbolic input dims
(`--input-shape q=batch:1..3,s:1..40,...`) fuses into one pyc.Attention as in a static build
(the head Transposes folded into its strides, Q, K and V projections of one input merged into
one GEMM) and runs on `cuda_attention_flash_dims` (float32) or `cuda_attention_mma_dims`
(tensor cores at fp16 / bf16): blocks for the upper bounds of the batch and the query rows,
those past the run's exit, S, T, the batch extents and the strides that hold them read from
the dims in device memory. Built with NVRTC (sm_90, sm_80), run through runtime/cuda.py over
the emulated driver (cuda_emulation.FakeDriver: the artifact's kernels compiled for the CPU),
outputs poisoned before every run, CUDA graphs on and off (bitwise alike), on fresh random
inputs and weights at several shapes including 1 and the bounds, against onnxruntime: float32
rtol 1e-4 / atol 2e-5 (attention_cases.py's statement for the float32 kernel); fp16 / bf16
within EXACT_RTOL[precision] of max |output| (mma_precision.py: the precision's own error)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from attention_cases import head_attention_model, head_feeds
from conftest import REFERENCE_MODELS, ReferenceModel, onnxruntime_outputs
from cuda_emulation import CXX
from helpers import write_model
from mma_precision import EXACT_RTOL, WHOLE_MODEL_RTOL, assert_close_to_max
from onnx import numpy_helper
from test_cuda_runtime_emulated import fake_for, use

import pyc_cli
from pyc_cli.targets.cuda import bindings
from tests.dynamic.checks import poison_outputs

pytestmark = [
    pytest.mark.skipif(not bindings.available(),
                       reason='the NVRTC wheel is not installed (pip install ".[cuda]")'),
    pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")]

HEADS, D = 2, 16
BOUNDS = {"batch": (1, 3), "s": (1, 40), "t": (1, 70)}


def symbolic_heads(rng: np.random.Generator, project: bool = False,
                   self_attention: bool = False) -> onnx.ModelProto:
    """head_attention_model with its batch and sequence dims symbolic: inputs [batch, s, .]
    (queries) and [batch, t, .] (keys and values; s for self-attention), the head Reshapes'
    targets copying them (0)."""
    model = head_attention_model(1, HEADS, 1, 1, D, D, D ** -0.5, rng, project=project,
                                 self_attention=self_attention)
    t = "s" if self_attention else "t"
    seq = {"q": "s", "x": "s", "k": t, "v": t, "kv": t, "kt": t, "mask": t}
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        dims[0].dim_param = "batch"
        dims[-1 if value.name == "mask" else 1].dim_param = seq.get(value.name, "s")
    for k, init in enumerate(model.graph.initializer):
        if init.name.startswith("shape_"):
            target = numpy_helper.to_array(init).copy()
            target[:2] = 0
            model.graph.initializer[k].CopyFrom(numpy_helper.from_array(target, init.name))
    return model


def input_shapes(model: onnx.ModelProto) -> dict[str, tuple[object, ...]]:
    """--input-shape for each input: its symbolic dims with their BOUNDS, the rest as numbers."""
    out = {}
    for value in model.graph.input:
        dims: list[object] = []
        for d in value.type.tensor_type.shape.dim:
            lo, hi = BOUNDS.get(d.dim_param, (0, 0))
            dims.append(f"{d.dim_param}:{lo}..{hi}" if d.dim_param else d.dim_value)
        out[value.name] = tuple(dims)
    return out


def feeds_at(model: onnx.ModelProto, rng: np.random.Generator, **sizes: int) -> dict[str, np.ndarray]:
    """head_feeds over the inputs at `sizes` (batch, s, t)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param:
                d.dim_value = sizes[d.dim_param]
    return head_feeds(fixed, rng)


SIZES = [dict(batch=1, s=1, t=1), dict(batch=3, s=40, t=70), dict(batch=2, s=17, t=33),
         dict(batch=1, s=40, t=5)]


def build(model: onnx.ModelProto, tmp_path: Path, precision: str = "fp32",
          arch: str = "sm_90") -> tuple[Path, Path]:
    path = write_model(model, tmp_path)
    artifact = tmp_path / f"attention_{precision}_{arch}.pyc"
    pyc_cli.build(path, artifact, target="cuda", arch=arch, precision=precision,
                  input_shapes=input_shapes(model))
    return path, artifact


def attention_kernel(artifact: Path) -> str:
    """The kernel the decision log chose for the build's one pyc.Attention."""
    decisions = [json.loads(line) for line in
                 (artifact / "decisions.jsonl").read_text().splitlines()]
    [kernel] = {d["after"] for d in decisions
                if d["action"] == "select_kernel" and "attention" in d["after"]}
    return kernel  # type: ignore[no-any-return]


def run_and_check(path: Path, artifact: Path, monkeypatch: pytest.MonkeyPatch,
                  feeds_list: list[dict[str, np.ndarray]], precision: str,
                  driver: Callable[[], object] = lambda: None) -> None:
    """Every run against onnxruntime, graphs on and off (each load after `driver()`: the
    emulated one's setup), the two bitwise alike."""
    results: dict[str, list[np.ndarray]] = {}
    for graphs in ("1", "0"):
        monkeypatch.setenv("PYC_CUDA_GRAPHS", graphs)
        driver()
        results[graphs] = []
        with pyc_cli.load(artifact) as model:
            for feeds in feeds_list:
                model.poison()
                ours = model.run(feeds)["y"]
                [want] = onnxruntime_outputs(path, feeds).values()
                assert ours.shape == want.shape
                what = f"{precision} at {[v.shape for v in feeds.values()]}"
                if precision == "fp32":
                    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=2e-5, err_msg=what)
                else:
                    assert_close_to_max(ours, want, EXACT_RTOL[precision], what)
                results[graphs].append(ours.copy())
    for graphed, streamed in zip(results["1"], results["0"]):
        np.testing.assert_array_equal(graphed, streamed)


def emulated(artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], object]:
    return lambda: use(monkeypatch, fake_for(artifact, tmp_path))


@pytest.mark.parametrize("layout", ["heads", "projected", "self"])
def test_float32_attention_over_run_time_sizes(layout: str, tmp_path: Path,
                                               rng: np.random.Generator,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    poison_outputs(monkeypatch)
    model = symbolic_heads(rng, project=layout == "projected", self_attention=layout == "self")
    path, artifact = build(model, tmp_path)
    assert attention_kernel(artifact) == "cuda_attention_flash_dims"
    launches = json.loads((artifact / "src" / "launches.json").read_text())["launches"]
    ops = [launch["op"] for launch in launches]
    assert ops.count("pyc.Attention") == 1 and "Transpose" not in ops and "Softmax" not in ops
    if layout == "self":  # Q, K, V from one GEMM over the merged weights
        assert ops.count("MatMul") == 1, ops
    sizes = [dict(s, t=s["s"]) for s in SIZES] if layout == "self" else SIZES
    run_and_check(path, artifact, monkeypatch, [feeds_at(model, rng, **size) for size in sizes],
                  "fp32", emulated(artifact, tmp_path, monkeypatch))


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("project", [False, True])
def test_tensor_core_attention_over_run_time_sizes(precision: str, project: bool, tmp_path: Path,
                                                   rng: np.random.Generator,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`project`: Q, K, V come from GEMMs, stored in 16 bits and read as their bits. The
    tensor-core kernel is taken below ATTENTION_MMA_MIN_KEYS keys too (as the static kernel's
    emulated tests do), so that the emulation stays small."""
    poison_outputs(monkeypatch)
    monkeypatch.setattr("pyc_cli.targets.cuda.kernels.ATTENTION_MMA_MIN_KEYS", 1)
    model = symbolic_heads(rng, project=project)
    path, artifact = build(model, tmp_path, precision)
    assert attention_kernel(artifact) == "cuda_attention_mma_dims"
    run_and_check(path, artifact, monkeypatch, [feeds_at(model, rng, **size) for size in SIZES],
                  precision, emulated(artifact, tmp_path, monkeypatch))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_nvrtc_compiles_the_run_time_attention_for_sm80(precision: str, tmp_path: Path,
                                                       rng: np.random.Generator,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pyc_cli.targets.cuda.kernels.ATTENTION_MMA_MIN_KEYS", 1)
    _, artifact = build(symbolic_heads(rng, project=True), tmp_path, precision, arch="sm_80")
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["cuda"]["arch"] == "sm_80" and (artifact / "model.cubin").stat().st_size > 0
    assert attention_kernel(artifact) == {"fp32": "cuda_attention_flash_dims",
                                          "fp16": "cuda_attention_mma_dims"}[precision]


# the reference transformer (tests/models: two encoder layers, input_ids and attention_mask
# [batch, seq]) over symbolic batch and sequence
TRANSFORMER_BOUNDS = {"input_ids": ("batch:1..4", "seq:1..32"),
                      "attention_mask": ("batch:1..4", "seq:1..32")}
TRANSFORMER_SIZES = [(1, 1), (4, 32), (2, 13), (3, 24)]


def transformer_at(tmp_path: Path, precision: str, arch: str = "sm_90") -> tuple[Path, Path]:
    path = REFERENCE_MODELS["transformer"].path
    artifact = tmp_path / f"transformer_{precision}.pyc"
    pyc_cli.build(path, artifact, target="cuda", arch=arch, precision=precision,
                  input_shapes=TRANSFORMER_BOUNDS)
    return path, artifact


def transformer_check(path: Path, artifact: Path, rng: np.random.Generator, precision: str) -> None:
    """Runs at TRANSFORMER_SIZES (random ids, masks with padded tails) against onnxruntime:
    float32 rtol 1e-3 / atol 1e-4 (the static transformer's tolerance in
    test_cuda_runtime_emulated.py), reduced precisions WHOLE_MODEL_RTOL of max |output|."""
    with pyc_cli.load(artifact) as model:
        for batch, seq in TRANSFORMER_SIZES:
            shapes = {"input_ids": (batch, seq), "attention_mask": (batch, seq)}
            feeds = ReferenceModel("transformer", path, shapes).random_feeds(rng)
            model.poison()
            [ours] = model.run(feeds).values()
            [want] = onnxruntime_outputs(path, feeds).values()
            assert ours.shape == want.shape == (batch, seq, want.shape[-1])
            if precision == "fp32":
                np.testing.assert_allclose(ours, want, rtol=1e-3, atol=1e-4, err_msg=str(shapes))
            else:
                assert_close_to_max(ours, want, WHOLE_MODEL_RTOL[precision], str(shapes))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_transformer_builds_once_for_many_shapes(precision: str, tmp_path: Path,
                                                     rng: np.random.Generator,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: PYC-E051 (fuse_attention wrote the bounds into the merged QKV view's shape, and
    no CUDA attention kernel read run-time sizes)."""
    poison_outputs(monkeypatch)
    path, artifact = transformer_at(tmp_path, precision)
    assert attention_kernel(artifact) == "cuda_attention_flash_dims"  # 32 keys: the float32 one
    if precision == "fp16":  # the run-time-size kernels read and write activations in 16 bits
        ir = (artifact / "model.ir").read_text()
        assert ir.count('f16["batch","seq",') >= 10, ir
    use(monkeypatch, fake_for(artifact, tmp_path))
    transformer_check(path, artifact, rng, precision)
