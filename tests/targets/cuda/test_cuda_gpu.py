"""The CUDA target on a GPU (skipped without an NVIDIA driver and GPU, detected through the
driver API): every kernel case of cuda_cases.py and the reference models against onnxruntime,
with fresh random inputs and weights each run and the device outputs and arena poisoned (NaN)
before every run, so an element a kernel skips cannot pass as a stale right answer.

float32 tolerances: kernels rtol 1e-4, atol 1e-5 (GEMMs and LayerNorm atol 1e-4: their sums
run in another order than onnxruntime's); whole models rtol 1e-4, atol 1e-4 (the MLP) and
rtol 1e-3, atol 1e-4 (the CNN, MobileNet and the transformers: a dozen GEMM or convolution,
softmax and normalisation steps deep).
Reduced precisions (--precision tf32 / fp16 / bf16, the tensor-core GEMM): each GEMM case
against the numpy rounding model of mma_precision.py (inputs rounded as the kernel rounds
them: MODEL_RTOL = 1e-4 of max |output|, times K / 256 past K = 256, as tensor cores truncate)
and the exact float64 product (EXACT_RTOL of max |output|: tf32 5e-3, fp16 2e-2, bf16 5e-2);
whole models (MLP, MiniLM-shaped encoder) against
onnxruntime in float32 within WHOLE_MODEL_RTOL of max |output| (tf32 and fp16 5e-3, bf16 3e-2).
At fp16 / bf16 activations are stored in 16 bits in the arena (a section checks that
they are, and the kernels reading and writing them). Models whose own tensors are float16
(f16_cases.py: Casts, data movement, elementwise programs, an fp16 MLP and conv net), at fp32
and fp16, with f16_cases.py's tolerances; bfloat16 ones (tests/bf16_cases.py and the reference MLP
and transformer converted to bfloat16) at fp32 and bf16 (the last sections).
The GPU architecture is the device's own (sm_80 ... sm_90), or PYC_CUDA_ARCH."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from attention_cases import (
    GPU_SHAPES,
    HEAD_GPU_SHAPES,
    MMA_TILE_KEYS,
    ROUNDED_RTOL,
    float64_attention,
    head_attention_model,
    head_feeds,
    rounded_attention,
)
from bf16_cases import CASES as BF16_CASES
from bf16_cases import Bf16Case
from conftest import MODELS_DIR, REFERENCE_MODELS, ReferenceModel, onnxruntime_outputs
from cuda_cases import CASES, Case
from cuda_conv_cases import (
    CONV_MMA_CASES,
    DEPTHWISE_CASES,
    FEW_CHANNELS,
    GPU_CONV_MMA_CASES,
    GPU_DEPTHWISE_CASES,
    GPU_PIPELINED_CASES,
    PIPELINED_CASES,
    ConvCase,
)
from dims_cases import CASES as DIMS_CASES
from dims_cases import DimsCase
from f16_cases import CASES as F16_CASES
from f16_cases import F16Case
from gemm_dims_cases import CASES as GEMM_DIMS_CASES
from gemm_dims_cases import GemmDimsCase
from generic_cases import CASES as GENERIC_CASES
from generic_cases import OUT_OF_RANGE as GENERIC_OUT_OF_RANGE
from generic_cases import GenericCase
from helpers import init, make_model, rand, vinfo, write_model
from mma_cases import MMA_CASES, MmaCase
from mma_precision import (
    EXACT_RTOL,
    MODEL_RTOL,
    PRECISIONS,
    WHOLE_MODEL_RTOL,
    assert_close_to_max,
    matmul,
    model_rtol,
)
from onnx import helper, numpy_helper
from ops.test_references import attention_feeds, attention_model
from test_cuda_half import CONV_SHAPES, GEMM_SHAPES

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.runtime import cuda as cuda_runtime
from pyc_cli.targets.cuda import bindings
from pyc_cli.targets.cuda.toolchain import SUPPORTED_ARCHS


def device_arch() -> str | None:
    """sm_XY of GPU 0, or None when there is no usable driver and GPU."""
    if not bindings.available():
        return None
    try:
        driver = cuda_runtime.init_driver("tests")
        device = driver("cuDeviceGet", 0)
        attribute = driver.cu.CUdevice_attribute
        major = driver("cuDeviceGetAttribute", attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
        minor = driver("cuDeviceGetAttribute", attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
    except PycError:
        return None
    arch = f"sm_{major}{minor}"
    return os.environ.get("PYC_CUDA_ARCH") or (arch if arch in SUPPORTED_ARCHS else "sm_80")


ARCH = device_arch()
pytestmark = pytest.mark.skipif(ARCH is None, reason="no NVIDIA GPU and driver here (or the "
                                "CUDA wheels are missing): the GPU tests run on a GPU machine")


def runs_against_onnxruntime(path: Path, artifact: Path, feeds_for, rng: np.random.Generator,  # noqa: ANN001
                             rounds: int):  # noqa: ANN201 (a generator of output pairs)
    """Each round's outputs of the built artifact (fresh inputs, outputs poisoned first) and
    onnxruntime's on the same inputs."""
    with pyc_cli.load(artifact) as model:
        for _ in range(rounds):
            feeds = feeds_for(rng)
            model.poison()
            ours = model.run(feeds)
            expected = onnxruntime_outputs(path, feeds)
            for name, value in expected.items():
                yield name, ours[name], value


def check_against_onnxruntime(path: Path, artifact: Path, feeds_for, rtol: float, atol: float,  # noqa: ANN001
                              rng: np.random.Generator, shapes: dict | None = None,  # type: ignore[type-arg]
                              rounds: int = 2) -> None:
    pyc_cli.build(path, artifact, target="cuda", arch=ARCH, input_shapes=shapes)
    for name, ours, value in runs_against_onnxruntime(path, artifact, feeds_for, rng, rounds):
        np.testing.assert_allclose(ours, value, rtol=rtol, atol=atol, err_msg=name)


def check_at_precision(path: Path, artifact: Path, feeds_for, precision: str,  # noqa: ANN001
                       rng: np.random.Generator, shapes: dict | None = None,  # type: ignore[type-arg]
                       rounds: int = 2) -> None:
    """A reduced-precision build against onnxruntime (float32) within WHOLE_MODEL_RTOL."""
    pyc_cli.build(path, artifact, target="cuda", arch=ARCH, input_shapes=shapes,
                  precision=precision)
    for name, ours, value in runs_against_onnxruntime(path, artifact, feeds_for, rng, rounds):
        assert_close_to_max(ours, value, WHOLE_MODEL_RTOL[precision], f"{name} at {precision}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_kernel_matches_onnxruntime(case: Case, tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_model(case.make(rng), tmp_path)
    atol = 1e-4 if case.name.startswith(("matmul", "layernorm")) else case.atol
    check_against_onnxruntime(path, tmp_path / "a.pyc", case.feeds, case.rtol, atol, rng)


@pytest.mark.parametrize("name,rtol,atol", [("mlp", 1e-4, 1e-4), ("cnn", 1e-3, 1e-4),
                                            ("transformer", 1e-3, 1e-4), ("mobilenet", 1e-3, 1e-4)])
def test_reference_model(name: str, rtol: float, atol: float, tmp_path: Path,
                         rng: np.random.Generator) -> None:
    model = REFERENCE_MODELS.get(name) or ReferenceModel(name, MODELS_DIR / "mobilenet.onnx",
                                                         {"image": (1, 3, 64, 64)})
    check_against_onnxruntime(model.path, tmp_path / f"{name}.pyc", model.random_feeds, rtol, atol,
                              rng, dict(model.shapes))


@pytest.mark.parametrize("name,precision", [("transformer", "fp32"), ("transformer", "fp16"),
                                            ("cnn", "fp16"), ("mobilenet", "fp32")])
def test_programmatic_dependents_give_the_same_outputs(name: str, precision: str, tmp_path: Path,
                                                       rng: np.random.Generator,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """On sm_90, kernels launched as programmatic dependents (PYC_CUDA_PROGRAMMATIC=1: each
    starts while the previous one runs and waits for it in griddepcontrol.wait) give bitwise the
    outputs of plain launches, as CUDA graph replays and call by call, over 3 runs of fresh
    inputs with the arena and outputs poisoned before each."""
    if ARCH != "sm_90":
        pytest.skip("programmatic dependent launch: sm_90 builds only")
    model = REFERENCE_MODELS.get(name) or ReferenceModel(name, MODELS_DIR / "mobilenet.onnx",
                                                         {"image": (1, 3, 64, 64)})
    built = pyc_cli.build(model.path, tmp_path / f"{name}.pyc", target="cuda", arch=ARCH,
                          precision=precision, input_shapes=dict(model.shapes))
    feeds = [model.random_feeds(rng) for _ in range(3)]
    results = {}
    for graphs in ("1", "0"):
        for programmatic in ("0", "1"):
            monkeypatch.setenv("PYC_CUDA_GRAPHS", graphs)
            monkeypatch.setenv("PYC_CUDA_PROGRAMMATIC", programmatic)
            with pyc_cli.load(built.artifact) as loaded:
                assert loaded.stats.programmatic_launch is (programmatic == "1")
                outputs = []
                for feed in feeds:
                    loaded.poison()
                    outputs.append(loaded.run(feed))
            results[graphs, programmatic] = outputs
    plain = results["1", "0"]
    for key, outputs in results.items():
        for ours, theirs in zip(outputs, plain):
            for out in theirs:
                np.testing.assert_array_equal(ours[out], theirs[out], err_msg=f"{key} {out}")
    expected = onnxruntime_outputs(model.path, feeds[0])
    for out, value in expected.items():  # and they are right (fp32 as the reference models)
        tolerance = 1e-3 if precision == "fp32" else 2e-2
        assert np.max(np.abs(plain[0][out] - value)) <= tolerance * (1 + np.max(np.abs(value))), out


def test_minilm_shaped_encoder(tmp_path: Path, rng: np.random.Generator) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))
    from make_encoder import encoder_feeds, make_encoder

    path = write_model(make_encoder(batch=2, seq=40, layers=2, vocab=500,
                                    seed=int(rng.integers(1 << 30))), tmp_path)
    check_against_onnxruntime(path, tmp_path / "enc.pyc",
                              lambda r: encoder_feeds(r, 2, 40, 500), 1e-3, 1e-4, rng)


def test_index_out_of_range_is_reported(tmp_path: Path, rng: np.random.Generator) -> None:
    gather = next(c for c in CASES if c.name == "gather")
    path = write_model(gather.make(rng), tmp_path)
    pyc_cli.build(path, tmp_path / "g.pyc", target="cuda", arch=ARCH)
    with pyc_cli.load(tmp_path / "g.pyc") as model:
        ids = rng.integers(0, 50, (2, 9), dtype=np.int64)
        ids[1, 4] = 50
        with pytest.raises(PycError) as caught:
            model.run({"ids": ids})
        assert caught.value.code in ("E048", "E042")
        ids[1, 4] = 3  # the model keeps working after a failed run
        model.run({"ids": ids})


def test_onnxruntime_calling_convention_and_timing(tmp_path: Path, rng: np.random.Generator) -> None:
    model = REFERENCE_MODELS["mlp"]
    pyc_cli.build(model.path, tmp_path / "m.pyc", target="cuda", arch=ARCH,
                  input_shapes=dict(model.shapes))
    with pyc_cli.load(tmp_path / "m.pyc") as loaded:
        feeds = model.random_feeds(rng)
        (out,) = loaded.run(None, feeds)
        np.testing.assert_array_equal(out, loaded.run(feeds)[loaded.outputs[0].name])
        times = loaded.time_runs(feeds, 5)
        assert len(times) == 5 and all(t > 0 for t in times)
        assert loaded.device_name
    with pytest.raises(PycError) as caught:
        loaded.run(feeds)
    assert caught.value.code == "E047"


def run_feeds(artifact: Path, feeds_list: list[dict], graphs: str,  # type: ignore[type-arg]
              monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict], dict]:  # type: ignore[type-arg]
    """Each feed run once, outputs and arena poisoned first, with PYC_CUDA_GRAPHS=`graphs`."""
    monkeypatch.setenv("PYC_CUDA_GRAPHS", graphs)
    with pyc_cli.load(artifact) as model:
        results = []
        for feeds in feeds_list:
            model.poison()
            results.append(model.run(feeds))
        times = model.time_kernels(feeds_list[0], 5)
        assert len(times) == 5 and all(t > 0 for t in times)
        return results, model.stats.to_json()


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_cuda_graph_replay_matches_launches(name: str, tmp_path: Path, rng: np.random.Generator,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs replayed as one CUDA graph give the outputs of the kernels launched one by one
    (bitwise: the same kernels in the same order), match onnxruntime, and a replay after new
    inputs gives the new inputs' outputs."""
    model = REFERENCE_MODELS[name]
    artifact = tmp_path / f"{name}.pyc"
    pyc_cli.build(model.path, artifact, target="cuda", arch=ARCH, input_shapes=dict(model.shapes))
    feeds_list = [model.random_feeds(rng) for _ in range(3)]
    graphed, stats = run_feeds(artifact, feeds_list, "1", monkeypatch)
    assert stats["execution"] == stats["kernels_timed"] == "cuda_graph"
    streamed, stats = run_feeds(artifact, feeds_list, "0", monkeypatch)
    assert stats["execution"] == stats["kernels_timed"] == "cuda_stream"
    for feeds, ours, theirs in zip(feeds_list, graphed, streamed):
        for key, value in onnxruntime_outputs(model.path, feeds).items():
            np.testing.assert_allclose(ours[key], value, rtol=1e-3, atol=1e-4, err_msg=key)
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    assert all(not np.array_equal(graphed[0][k], graphed[1][k]) for k in graphed[0])


def test_multi_target_artifact_runs_on_the_gpu(tmp_path: Path, rng: np.random.Generator) -> None:
    """Where the GPU passes every guard, a cuda,cpu artifact runs on CUDA: no PYC-W001, no
    fallback counted; its CPU target (loaded directly) agrees with onnxruntime too."""
    import warnings

    model = REFERENCE_MODELS["mlp"]
    artifact = tmp_path / "multi.pyc"
    pyc_cli.build(model.path, artifact, target="cuda,cpu", arch=ARCH, input_shapes=dict(model.shapes))
    feeds = model.random_feeds(rng)
    expected = onnxruntime_outputs(model.path, feeds)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fallback warning fails the test
        loaded = pyc_cli.load(artifact)
    with loaded:
        stats = loaded.stats.to_json()
        assert stats["target"] == "cuda" and stats["targets"] == ["cuda", "cpu"]
        assert stats["fallback_count"] == stats["guard_miss_count"] == 0
        loaded.poison()
        ours = loaded.run(feeds)
    with pyc_cli.load(artifact / "targets" / "cpu") as cpu:
        theirs = cpu.run(feeds)
    for name, value in expected.items():
        np.testing.assert_allclose(ours[name], value, rtol=1e-4, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(theirs[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


# ---------------------------------------------------------------- reduced precisions

@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", MMA_CASES, ids=lambda c: c.name)
def test_tensor_core_gemm_matches_the_rounding_model(case: MmaCase, precision: str, tmp_path: Path,
                                                     rng: np.random.Generator) -> None:
    import onnx

    path = write_model(case.make(rng), tmp_path)
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    built = pyc_cli.build(path, tmp_path / "a.pyc", target="cuda", arch=ARCH, precision=precision)
    assert any(n.ann.kernel is not None and n.ann.kernel.candidate == "cuda_matmul_mma"
               for n in built.graph.nodes)
    with pyc_cli.load(built.artifact) as model:
        for _ in range(2):
            feeds = case.feeds(rng)
            model.poison()
            ours = model.run(feeds)["y"]
            exact = case.forward(feeds, weights, "fp32")
            assert_close_to_max(ours, case.forward(feeds, weights, precision), MODEL_RTOL,
                                f"{case.name} {precision} vs the rounding model")
            assert_close_to_max(ours, exact, EXACT_RTOL[precision], f"{case.name} {precision} vs float64")


def _gemm_model(rng: np.random.Generator, m: int, k: int, n: int):  # noqa: ANN202
    return make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [vinfo("x", (m, k))],
                      [vinfo("y", (m, n))], [init("w", rand(rng, k, n, scale=k ** -0.5))])


@pytest.mark.parametrize("precision", ("fp32", *PRECISIONS))
@pytest.mark.parametrize("m,k,n", [(1, 37, 53), (7, 1, 13), (9, 40, 70), (131, 257, 67),
                                   (257, 1031, 523), (1024, 1024, 1024)])
def test_every_precision_on_odd_sizes(m: int, k: int, n: int, precision: str, tmp_path: Path,
                                      rng: np.random.Generator) -> None:
    """One GEMM per size (1, primes, tile tails; 8 rows or fewer run the float32 skinny GEMM
    at any precision) against float64 within EXACT_RTOL[precision] of max |output|, and the
    tensor-core ones against the rounding model."""
    model = _gemm_model(rng, m, k, n)
    w = numpy_helper.to_array(model.graph.initializer[0])
    path = write_model(model, tmp_path)
    built = pyc_cli.build(path, tmp_path / "g.pyc", target="cuda", arch=ARCH, precision=precision)
    (chosen,) = [n.ann.kernel.candidate for n in built.graph.nodes if n.ann.kernel is not None]
    with pyc_cli.load(built.artifact) as loaded:
        x = rng.standard_normal((m, k)).astype(np.float32)
        loaded.poison()
        ours = loaded.run({"x": x})["y"]
    assert_close_to_max(ours, matmul(x, w, "fp32"), EXACT_RTOL[precision], f"{chosen} vs float64")
    if chosen == "cuda_matmul_mma":
        assert_close_to_max(ours, matmul(x, w, precision), model_rtol(k), f"{chosen} vs the model")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_mlp_at_reduced_precision(precision: str, tmp_path: Path, rng: np.random.Generator) -> None:
    model = REFERENCE_MODELS["mlp"]
    shapes = {"x": (33, 64)}  # more rows than the skinny GEMM takes: the tensor-core GEMM runs
    check_at_precision(model.path, tmp_path / "m.pyc",
                       lambda r: {"x": r.standard_normal((33, 64)).astype(np.float32)}, precision,
                       rng, shapes)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_minilm_shaped_encoder_at_reduced_precision(precision: str, tmp_path: Path,
                                                    rng: np.random.Generator) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))
    from make_encoder import encoder_feeds, make_encoder

    path = write_model(make_encoder(batch=2, seq=40, layers=2, vocab=500,
                                    seed=int(rng.integers(1 << 30))), tmp_path)
    check_at_precision(path, tmp_path / "enc.pyc", lambda r: encoder_feeds(r, 2, 40, 500),
                       precision, rng)


# ---------------------------------------------------------------- fused attention
# pyc.Attention (fuse_attention) on the GPU against numpy float64: float32 (cuda_attention_flash,
# at fp32 and tf32) within rtol 1e-4, atol 2e-5, as the CPU kernel; fp16 / bf16
# (cuda_attention_mma) within EXACT_RTOL of max |output| of float64, and, where the keys fit
# one 64-key tile, within ROUNDED_RTOL (2e-3) of the numpy model of the kernel's roundings
# (attention_cases.py). The shapes add, to the emulated ones, sizes the emulation cannot
# afford: long sequences and many heads.

def _attention_run(shape: tuple, precision: str, tmp_path: Path,  # type: ignore[type-arg]
                   rng: np.random.Generator) -> tuple[np.ndarray, dict, str]:  # type: ignore[type-arg]
    model = attention_model(*shape)
    path = write_model(model, tmp_path)
    built = pyc_cli.build(path, tmp_path / "att.pyc", target="cuda", arch=ARCH, precision=precision)
    (kernel,) = [n.ann.kernel_name for n in built.graph.nodes]
    feeds = attention_feeds(model, rng)
    with pyc_cli.load(built.artifact) as loaded:
        loaded.poison()
        return loaded.run(feeds)["y"], feeds, kernel


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=str)
def test_fused_attention_in_float32(shape: tuple, precision: str, tmp_path: Path,  # type: ignore[type-arg]
                                    rng: np.random.Generator) -> None:
    ours, feeds, kernel = _attention_run(shape, precision, tmp_path, rng)
    assert kernel == "cuda_attention_flash"
    np.testing.assert_allclose(ours, float64_attention(feeds, shape[5]), rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=str)
def test_fused_attention_on_tensor_cores(shape: tuple, precision: str, tmp_path: Path,  # type: ignore[type-arg]
                                         rng: np.random.Generator,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # the cost model prefers the float32 kernel below ATTENTION_MMA_MIN_KEYS keys: these
    # shapes test the tensor-core one
    monkeypatch.setattr("pyc_cli.targets.cuda.kernels.ATTENTION_MMA_MIN_KEYS", 1)
    ours, feeds, kernel = _attention_run(shape, precision, tmp_path, rng)
    assert kernel == "cuda_attention_mma"
    assert_close_to_max(ours, float64_attention(feeds, shape[5]), EXACT_RTOL[precision],
                        f"{precision} vs float64")
    if shape[3] <= MMA_TILE_KEYS:
        assert_close_to_max(ours, rounded_attention(feeds, shape[5], precision), ROUNDED_RTOL,
                            f"{precision} vs the rounding model")


@pytest.mark.parametrize("precision, force_mma", [("fp32", False), ("fp16", False), ("fp16", True),
                                               ("bf16", False), ("bf16", True)])
@pytest.mark.parametrize("project", [False, True, "self"])
@pytest.mark.parametrize("shape", HEAD_GPU_SHAPES, ids=str)
def test_fused_attention_over_folded_heads(shape: tuple, project: bool | str, precision: str,  # type: ignore[type-arg]
                                           force_mma: bool, tmp_path: Path,
                                           rng: np.random.Generator,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The heads' Reshape + Transpose of Q, K, V and the Transpose back folded into
    pyc.Attention (read and written through strides; no Transpose launched), against
    onnxruntime over 2 runs of fresh inputs, outputs poisoned: float32 rtol 1e-4, atol 2e-5 (with
    the `project` GEMMs in front: rtol 1e-3, atol 1e-4, as whole transformers), fp16 / bf16
    EXACT_RTOL of max |output|; `force_mma` takes the tensor-core kernel at every key count.
    `project` "self": Q, K, V projected from one input, one GEMM over the concatenated weights,
    the attention reading its three parts."""
    if force_mma:
        monkeypatch.setattr("pyc_cli.targets.cuda.kernels.ATTENTION_MMA_MIN_KEYS", 1)
    if project == "self" and (shape[2] != shape[3] or shape[4] != shape[5]):
        pytest.skip("self-attention needs S = T and D = E")
    model = head_attention_model(*shape, rng, project=project is True, self_attention=project == "self")
    path = write_model(model, tmp_path)
    built = pyc_cli.build(path, tmp_path / "heads.pyc", target="cuda", arch=ARCH, precision=precision)
    assert "Transpose" not in [n.op for n in built.graph.nodes]
    [kernel] = [n.ann.kernel_name for n in built.graph.nodes if n.op == "pyc.Attention"]
    mma = precision != "fp32" and (force_mma or shape[3] >= 256)
    assert kernel == ("cuda_attention_mma" if mma else "cuda_attention_flash")
    gemms = 1 if project == "self" else 3 if project else 0  # the projections merged into one
    assert [n.op for n in built.graph.nodes].count("MatMul") == gemms
    for name, ours, value in runs_against_onnxruntime(path, built.artifact, lambda r: head_feeds(model, r),
                                                      rng, 2):
        if precision == "fp32":
            np.testing.assert_allclose(ours, value, rtol=1e-3 if project else 1e-4,
                                       atol=1e-4 if project else 2e-5, err_msg=name)
        else:
            assert_close_to_max(ours, value, EXACT_RTOL[precision], f"{name} at {precision}")


# ---------------------------------------------------------------- convolution
# cuda_conv_mma (tf32 / fp16 / bf16: implicit GEMM on tensor cores) against the numpy rounding model
# (x and w rounded, exact float64 sums) within model_rtol(K) of max |output| and exact float64
# within EXACT_RTOL; cuda_conv_tiled (fp32) and cuda_conv_depthwise (float32 at every
# precision) against float64 within rtol 1e-4, atol 1e-5; whole CNNs at fp16 / bf16 against
# onnxruntime within WHOLE_MODEL_RTOL.

def _conv_outputs(case: ConvCase, precision: str, tmp_path: Path, rng: np.random.Generator,
                  kernel: str, rounds: int = 2):  # noqa: ANN202 (a generator of runs)
    import onnx

    path = write_model(case.make(rng), tmp_path)
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    built = pyc_cli.build(path, tmp_path / "c.pyc", target="cuda", arch=ARCH, precision=precision)
    assert [n.ann.kernel_name for n in built.graph.nodes if n.op == "Conv"] == [kernel]
    with pyc_cli.load(built.artifact) as model:
        for _ in range(rounds):  # fresh inputs, poisoned outputs and arena each run
            feeds = case.feeds(rng)
            model.poison()
            yield model.run(feeds)["y"], feeds, weights


def _check_conv_mma(case: ConvCase, precision: str, tmp_path: Path, rng: np.random.Generator) -> None:
    k = int(np.prod(case.w[1:]))
    for ours, feeds, weights in _conv_outputs(case, precision, tmp_path, rng, "cuda_conv_mma"):
        assert_close_to_max(ours, case.forward(feeds, weights, precision), model_rtol(k),
                            f"{case.name} {precision} vs the rounding model")
        assert_close_to_max(ours, case.forward(feeds, weights, "fp32"), EXACT_RTOL[precision],
                            f"{case.name} {precision} vs float64")


@pytest.mark.parametrize("precision", ["tf32", "fp16", "bf16"])
@pytest.mark.parametrize("case", CONV_MMA_CASES + GPU_CONV_MMA_CASES, ids=lambda c: c.name)
def test_tensor_core_conv(case: ConvCase, precision: str, tmp_path: Path,
                          rng: np.random.Generator) -> None:
    _check_conv_mma(case, precision, tmp_path, rng)


@pytest.mark.parametrize("tile,split,ksplit", [(128, 1, 1), (64, 1, 1), (32, 1, 1), (64, 2, 1),
                                               (32, 2, 1), (64, 4, 1), (32, 4, 1), (32, 1, 8),
                                               (32, 2, 4), (64, 1, 3), (128, 1, 2)])
@pytest.mark.parametrize("case", [CONV_MMA_CASES[3], GPU_CONV_MMA_CASES[0], GPU_CONV_MMA_CASES[4],
                                  GPU_CONV_MMA_CASES[5]], ids=lambda c: c.name)
@pytest.mark.parametrize("precision", ["fp16", "tf32"])
def test_tensor_core_conv_tiles(case: ConvCase, tile: int, split: int, ksplit: int, precision: str,
                                tmp_path: Path, rng: np.random.Generator,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tile, split groups of warps and K split (the partial sums through the workspace,
    tile counters past the status word: two runs, each starting from reset counters); a K
    split its workspace cap (4 MiB) cannot hold is halved until it fits."""
    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context._conv_mma_tile", lambda m, n, k: tile)
    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context._conv_mma_split", lambda t, m, n, k: split)
    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context._conv_mma_ksplit", lambda t, m, n, k: ksplit)
    _check_conv_mma(case, precision, tmp_path, rng)


@pytest.mark.parametrize("case", [*CONV_MMA_CASES, FEW_CHANNELS, *GPU_CONV_MMA_CASES], ids=lambda c: c.name)
def test_tiled_conv_in_float32(case: ConvCase, tmp_path: Path, rng: np.random.Generator) -> None:
    for ours, feeds, weights in _conv_outputs(case, "fp32", tmp_path, rng, "cuda_conv_tiled"):
        np.testing.assert_allclose(ours, case.forward(feeds, weights, "fp32"), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", DEPTHWISE_CASES + GPU_DEPTHWISE_CASES, ids=lambda c: c.name)
def test_depthwise_conv(case: ConvCase, precision: str, tmp_path: Path,
                        rng: np.random.Generator) -> None:
    for ours, feeds, weights in _conv_outputs(case, precision, tmp_path, rng, "cuda_conv_depthwise"):
        np.testing.assert_allclose(ours, case.forward(feeds, weights, "fp32"), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("precision", ["tf32", "fp16", "bf16"])
@pytest.mark.parametrize("name", ["cnn", "mobilenet"])
def test_conv_models_at_reduced_precision(name: str, precision: str, tmp_path: Path,
                                          rng: np.random.Generator) -> None:
    model = REFERENCE_MODELS.get(name) or ReferenceModel(name, MODELS_DIR / "mobilenet.onnx",
                                                         {"image": (1, 3, 64, 64)})  # its static shape
    check_at_precision(model.path, tmp_path / f"{name}.pyc", model.random_feeds, precision, rng,
                       dict(model.shapes))


# ---------------------------------------------------------------- the pipelined conv (conv_stages)
# conv_stages 3 / 4 (the im2col slice by cp.async, STAGES - 1 slices in flight) and 2 (the
# register gather), on 16-bit inputs (a Relu's result) and float32 ones, 16-bit and float32
# outputs: against the rounding model (model_rtol(K), plus 2 ulps of the storage type where the
# conv's output is stored in 16 bits) and onnxruntime in float32 (WHOLE_MODEL_RTOL), outputs and
# arena poisoned before each of two runs.

def _check_pipelined(case: ConvCase, precision: str, stages: int, tmp_path: Path,
                     rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import onnx
    from test_cuda_half import ULP

    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context.CONV_MMA_STAGES", stages)
    path = write_model(case.make(rng), tmp_path)
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    built = pyc_cli.build(path, tmp_path / "p.pyc", target="cuda", arch=ARCH, precision=precision)
    assert [n.ann.kernel_name for n in built.graph.nodes if n.op == "Conv"] == ["cuda_conv_mma"]
    (launch,) = [s for s in json.loads((built.artifact / "src" / "launches.json").read_text())["launches"]
                 if s["op"] == "Conv"]
    assert (launch["shared_bytes"] > 0) == (stages > 2), launch
    k = int(np.prod(case.w[1:]))
    stored = 2 * ULP[precision] if case.half_output else 0.0
    for name, ours, value in runs_against_onnxruntime(path, built.artifact, case.feeds, rng, 2):
        assert_close_to_max(ours, value, WHOLE_MODEL_RTOL[precision], f"{name} {case.name} {precision}")
    with pyc_cli.load(built.artifact) as model:
        feeds = case.feeds(rng)
        model.poison()
        assert_close_to_max(model.run(feeds)["y"], case.forward(feeds, weights, precision),
                            model_rtol(k) + stored, f"{case.name} {precision} vs the rounding model")


@pytest.mark.parametrize("stages", [2, 3, 4])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("case", PIPELINED_CASES + GPU_PIPELINED_CASES, ids=lambda c: c.name)
def test_pipelined_conv(case: ConvCase, precision: str, stages: int, tmp_path: Path,
                        rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    _check_pipelined(case, precision, stages, tmp_path, rng, monkeypatch)


@pytest.mark.parametrize("tile,split,ksplit", [(128, 1, 1), (64, 1, 1), (32, 1, 1), (64, 2, 1),
                                               (32, 2, 1), (64, 4, 1), (32, 4, 1), (32, 1, 8),
                                               (32, 2, 4), (64, 1, 3), (128, 1, 2)])
@pytest.mark.parametrize("stages", [3, 4])
@pytest.mark.parametrize("case", GPU_PIPELINED_CASES[2:4], ids=lambda c: c.name)
def test_pipelined_conv_tiles(case: ConvCase, stages: int, tile: int, split: int, ksplit: int,
                              tmp_path: Path, rng: np.random.Generator,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tile, split groups of warps and K split, pipelined, at ResNet's 14 x 14 and 7 x 7."""
    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context._conv_mma_tile", lambda m, n, k: tile)
    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context._conv_mma_split", lambda t, m, n, k: split)
    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context._conv_mma_ksplit", lambda t, m, n, k: ksplit)
    _check_pipelined(case, "fp16", stages, tmp_path, rng, monkeypatch)


@pytest.mark.parametrize("stages", [2, 3, 4])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_pipelined_conv_of_a_misaligned_16_bit_input(precision: str, stages: int, tmp_path: Path,
                                                     rng: np.random.Generator,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The conv's 16-bit input 2 bytes past a 4-byte boundary (cuda_conv_cases.misaligned_input_model)."""
    import json

    from cuda_conv_cases import MISALIGNED_INPUTS, misaligned_input_model

    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context.CONV_MMA_STAGES", stages)
    path = write_model(misaligned_input_model(rng), tmp_path)
    built = pyc_cli.build(path, tmp_path / "m.pyc", target="cuda", arch=ARCH, precision=precision)
    (launch,) = [s for s in json.loads((built.artifact / "src" / "launches.json").read_text())["launches"]
                 if s["op"] == "Conv"]
    assert launch["args"][0][0] == "arena" and launch["args"][0][1] % 4 == 2
    assert (launch["shared_bytes"] > 0) == (stages > 2)
    feeds_for = lambda r: {n: rand(r, *shape) for n, shape in MISALIGNED_INPUTS.items()}  # noqa: E731
    for name, ours, value in runs_against_onnxruntime(path, built.artifact, feeds_for, rng, 2):
        assert_close_to_max(ours, value, WHOLE_MODEL_RTOL[precision], f"{name} {precision}")


# ---------------------------------------------------------------- 16-bit activations
# At fp16 / bf16 intermediates live in the arena in 16 bits (targets/cuda/storage.py); the
# cases the emulation cannot afford run here (with one of test_cuda_half.py's odd ones each:
# the unaligned GEMM rows copied synchronously, a strided conv of odd sizes): the GEMM reading
# its 16-bit operands by cp.async against the rounding model (operands rounded, exact sums, the
# product rounded as stored: model_rtol(K) + 2 ulps of the storage type) and float64
# (EXACT_RTOL); convs and whole models against onnxruntime within WHOLE_MODEL_RTOL; the
# tensor-core attention on 16-bit Q / K / V against float64.

GPU_HALF_GEMMS = [((512, 1024), (1024, 768), False), ((4, 128, 64), (4, 64, 128), True),
                  ((1000, 520), (520, 1000), False), ((128, 384), (384, 1536), False)]
GPU_HALF_CONVS = [((8, 64, 28, 28), 64, 3, 1, 1), ((4, 256, 14, 14), 128, 1, 1, 0),
                  ((1, 512, 7, 7), 256, 3, 1, 1), ((2, 32, 57, 57), 48, 3, 2, 1)]


def _stored_16bit(built: object, precision: str) -> set[str]:
    from test_cuda_half import STORAGE

    graph = built.graph  # type: ignore[attr-defined]
    assert graph.activation_storage is STORAGE[precision]
    return {v for v, t in graph.types.items() if t.dtype is STORAGE[precision]}


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("a_shape,b_shape,b_activation", GPU_HALF_GEMMS + GEMM_SHAPES[1:2])
def test_gemm_on_16_bit_activations(a_shape: tuple, b_shape: tuple, b_activation: bool,  # type: ignore[type-arg]
                                    precision: str, tmp_path: Path, rng: np.random.Generator) -> None:
    from mma_precision import round_to
    from test_cuda_half import ULP, gemm_model

    model = gemm_model(a_shape, b_shape, b_activation, rng)
    path = write_model(model, tmp_path)  # type: ignore[arg-type]
    built = pyc_cli.build(path, tmp_path / "g.pyc", target="cuda", arch=ARCH, precision=precision)
    matmul_node = next(n for n in built.graph.nodes if n.op == "MatMul")
    assert matmul_node.ann.kernel_name == "cuda_matmul_mma"
    assert {matmul_node.inputs[0], matmul_node.outputs[0]} <= _stored_16bit(built, precision)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}  # type: ignore[attr-defined]
    with pyc_cli.load(built.artifact) as compiled:
        for _ in range(2):
            feeds = {"a": rand(rng, *a_shape)}
            if b_activation:
                feeds["b"] = rand(rng, *b_shape)
            b = np.maximum(feeds["b"], 0) if b_activation else weights["w"]
            a = np.maximum(feeds["a"], 0)
            compiled.poison()
            got = np.swapaxes(compiled.run(feeds)["y"], -1, -2)
            rounded = round_to(np.matmul(round_to(a, precision), round_to(b, precision)).astype(np.float32),
                               precision)
            exact = np.matmul(a.astype(np.float64), b.astype(np.float64))
            k = a_shape[-1]
            assert_close_to_max(got, rounded, model_rtol(k) + 2 * ULP[precision], "the rounding model")
            assert_close_to_max(got, exact, EXACT_RTOL[precision], "float64")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("shape,channels,kernel,stride,pad", GPU_HALF_CONVS + CONV_SHAPES[2:3])
def test_conv_on_16_bit_activations(shape: tuple, channels: int, kernel: int, stride: int,  # type: ignore[type-arg]
                                    pad: int, precision: str, tmp_path: Path,
                                    rng: np.random.Generator) -> None:
    from test_cuda_half import conv_model

    path = write_model(conv_model(shape, channels, kernel, stride, pad, rng), tmp_path)  # type: ignore[arg-type]
    built = pyc_cli.build(path, tmp_path / "c.pyc", target="cuda", arch=ARCH, precision=precision)
    conv = next(n for n in built.graph.nodes if n.op == "Conv")
    assert conv.ann.kernel_name == "cuda_conv_mma" and conv.outputs[0] in _stored_16bit(built, precision)
    for name, ours, value in runs_against_onnxruntime(path, built.artifact,
                                                      lambda r: {"x": rand(r, *shape)}, rng, 2):
        assert_close_to_max(ours, value, WHOLE_MODEL_RTOL[precision], f"{name} at {precision}")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=str)
def test_attention_on_16_bit_activations(shape: tuple, precision: str, tmp_path: Path,  # type: ignore[type-arg]
                                         rng: np.random.Generator,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from test_cuda_half import negated_attention

    monkeypatch.setattr("pyc_cli.targets.cuda.kernels.ATTENTION_MMA_MIN_KEYS", 1)
    model = negated_attention(shape)
    path = write_model(model, tmp_path)  # type: ignore[arg-type]
    built = pyc_cli.build(path, tmp_path / "att.pyc", target="cuda", arch=ARCH, precision=precision)
    node = next(n for n in built.graph.nodes if n.op == "pyc.Attention")
    assert node.ann.kernel_name == "cuda_attention_mma"
    assert set(node.inputs[:3]) <= _stored_16bit(built, precision)
    with pyc_cli.load(built.artifact) as compiled:
        feeds = attention_feeds(model, rng)  # type: ignore[arg-type]
        compiled.poison()
        got = compiled.run(feeds)["y"]
    negated = {n: -feeds[f"{n}_in"] for n in ("q", "kt", "v")}
    if "mask" in feeds:
        negated["mask"] = feeds["mask"]
    assert_close_to_max(got, float64_attention(negated, shape[5]), EXACT_RTOL[precision], "float64")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("name", ["minilm", "cnn", "mobilenet"])
def test_models_with_16_bit_activations(name: str, precision: str, tmp_path: Path,
                                        rng: np.random.Generator) -> None:
    """The MiniLM-L6-shaped encoder (batch 1, sequence 128, as benchmarked), the CNN and
    MobileNet with their activations in 16 bits, against onnxruntime (WHOLE_MODEL_RTOL)."""
    import sys

    if name == "minilm":
        sys.path.insert(0, str(MODELS_DIR))
        from make_encoder import encoder_feeds, make_encoder

        path = write_model(make_encoder(batch=1, seq=128, seed=int(rng.integers(1 << 30))), tmp_path)
        feeds_for, shapes = (lambda r: encoder_feeds(r, 1, 128, 30522)), None
    else:
        model = REFERENCE_MODELS.get(name) or ReferenceModel(name, MODELS_DIR / "mobilenet.onnx",
                                                             {"image": (1, 3, 64, 64)})
        path, feeds_for, shapes = model.path, model.random_feeds, dict(model.shapes)
    built = pyc_cli.build(path, tmp_path / "m.pyc", target="cuda", arch=ARCH, precision=precision,
                          input_shapes=shapes)
    assert len(_stored_16bit(built, precision)) > 5
    assert all(built.graph.types[v].dtype.value == "f32" for v in (*built.graph.inputs, *built.graph.outputs)
               if built.graph.types[v].dtype.is_float)
    for name_, ours, value in runs_against_onnxruntime(path, built.artifact, feeds_for, rng, 2):
        assert_close_to_max(ours, value, WHOLE_MODEL_RTOL[precision], f"{name_} at {precision}")


# ---------------------------------------------------------------- fused LayerNormalization
# A LayerNormalization fused into the tensor-core GEMM before it (targets/cuda/fuse_norm.py:
# the last block of each row-block normalizes its rows, counters reset for the next run):
# GEMM + bias + residual + LayerNormalization models (test_cuda_layernorm_fusion.py's) against
# onnxruntime within EXACT_RTOL of max |output|, five runs in a row (CUDA-graph replays: a
# counter left unreset would normalize too early or never, leaving the NaN poison), forced
# K splits and 128-row tiles among them; the batch-1 MiniLM encoder is checked fused by
# test_models_with_16_bit_activations above.
FUSED_NORM_SHAPES = [(128, 384, 384, False), (128, 1536, 384, False), (300, 256, 384, True),
                     (9, 64, 200, False), (70, 512, 200, True), (20, 32, 1600, False)]


@pytest.mark.parametrize("m,k,n,big_tiles", FUSED_NORM_SHAPES)
@pytest.mark.parametrize("precision", ["fp16", "bf16", "tf32"])
def test_fused_gemm_layernorm(m: int, k: int, n: int, big_tiles: bool, precision: str,
                              tmp_path: Path, rng: np.random.Generator,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from test_cuda_layernorm_fusion import feeds_for, norm_model

    from pyc_cli.targets.cuda import fuse_norm, kernel_context

    monkeypatch.setattr(fuse_norm, "GEMM_KERNELS", fuse_norm.FUSABLE_GEMMS)

    if big_tiles:
        monkeypatch.setattr(kernel_context, "FILL_BLOCKS", 1)
    model = norm_model(m, k, n, rng, tail=precision != "tf32")
    path = write_model(model, tmp_path)
    built = pyc_cli.build(path, tmp_path / "n.pyc", target="cuda", arch=ARCH, precision=precision)
    plan = json.loads((built.artifact / "src" / "launches.json").read_text())
    assert "LayerNormalization" not in [s["op"] for s in plan["launches"]]
    for name, ours, value in runs_against_onnxruntime(path, built.artifact,
                                                      lambda r: feeds_for(model, r), rng, 5):
        assert_close_to_max(ours, value, EXACT_RTOL[precision], f"{name} at {precision}")


# ---------------------------------------------------------------- the generic kernel
# generic_cases.py's one-node models (the CPU target's kernel body on one GPU thread, and the
# parallel Pad kernel) against onnxruntime (CumProd: numpy float64), two runs of fresh inputs
# with outputs and arena poisoned; tolerances as stated there (float32 rtol 1e-4, atol 1e-5 or
# 1e-4; integers exactly)

@pytest.mark.parametrize("case", GENERIC_CASES, ids=lambda c: c.name)
def test_generic_op_on_the_gpu(case: GenericCase, tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_model(case.make(rng), tmp_path)
    built = pyc_cli.build(path, tmp_path / "generic.pyc", target="cuda", arch=ARCH)
    assert f"({case.kernel}, " in (built.artifact / "src" / "model.cu").read_text()
    with pyc_cli.load(built.artifact) as model:
        for _ in range(2):
            feeds = case.feeds(rng)
            model.poison()
            ours = model.run(feeds)
            expected = case.reference(feeds, onnx.load(str(path))) if case.reference \
                else onnxruntime_outputs(path, feeds)
            for name, value in expected.items():
                if value.dtype.kind in "iub":
                    np.testing.assert_array_equal(ours[name], value, err_msg=name)
                else:
                    np.testing.assert_allclose(ours[name], value, rtol=case.rtol, atol=case.atol,
                                               err_msg=name)


@pytest.mark.parametrize("name", sorted(GENERIC_OUT_OF_RANGE))
def test_generic_index_out_of_range_is_reported(name: str, tmp_path: Path,
                                                rng: np.random.Generator) -> None:
    """The CPU body's index check on the GPU: the run fails as the CUDA Gather's does, and the
    model keeps working after it."""
    case = next(c for c in GENERIC_CASES if c.name == name)
    path = write_model(case.make(rng), tmp_path)
    pyc_cli.build(path, tmp_path / "g.pyc", target="cuda", arch=ARCH)
    with pyc_cli.load(tmp_path / "g.pyc") as model:
        with pytest.raises(PycError) as caught:
            model.run(GENERIC_OUT_OF_RANGE[name](rng))
        assert caught.value.code in ("E048", "E042")
        model.run(case.feeds(rng))


def test_silero_vad_on_the_gpu(tmp_path: Path, rng: np.random.Generator) -> None:
    """Silero VAD, the benchmark's 16 kHz If-less file (Pad on the parallel Pad kernel), three
    chunks against onnxruntime at rtol 1e-3, atol 1e-3 (test_cuda_generic.SILERO_RTOL says
    why); and the official file with its run-time If (its LSTMs on the recurrent kernel) at
    16 kHz."""
    from test_cuda_generic import (
        SILERO,
        SILERO_ATOL,
        SILERO_IFLESS,
        SILERO_RTOL,
        SILERO_SHAPES,
        fixed_rate,
        silero_feeds,
    )

    if SILERO_IFLESS is None or SILERO is None:
        pytest.skip("the silero-vad wheel is not installed")
    for path, shapes, rate in ((fixed_rate(SILERO_IFLESS, tmp_path), SILERO_SHAPES, None),
                               (SILERO, {**SILERO_SHAPES, "sr": ()}, 16000)):
        built = pyc_cli.build(path, tmp_path / f"silero{rate}.pyc", target="cuda", arch=ARCH,
                              input_shapes=shapes)
        with pyc_cli.load(built.artifact) as model:
            for _ in range(3):
                feeds = silero_feeds(rng)
                if rate:
                    feeds["sr"] = np.array(rate, np.int64)
                model.poison()
                ours = model.run(feeds)
                for name, value in onnxruntime_outputs(path, feeds).items():
                    np.testing.assert_allclose(ours[name], value, rtol=SILERO_RTOL,
                                               atol=SILERO_ATOL, err_msg=f"{path.name} {name}")


# ---------------------------------------------------------------- float16 models (f16_cases.py)

@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", F16_CASES, ids=lambda c: c.name)
def test_f16_model_on_the_gpu(case: F16Case, precision: str, tmp_path: Path,
                              rng: np.random.Generator) -> None:
    """A model's own float16 tensors (inputs, weights, outputs, Casts both ways) on the GPU
    against onnxruntime, with the tolerances of f16_cases.py (Casts and data movement bit for
    bit); at --precision fp16 the fp16 MLP's and conv net's MatMul / Conv on tensor cores
    (rtol 2e-2, atol 2e-2 as in float32)."""
    from test_cuda_f16 import compare

    path = write_model(case.make(rng), tmp_path)
    built = pyc_cli.build(path, tmp_path / "f16.pyc", target="cuda", arch=ARCH, precision=precision)
    source = (built.artifact / "src" / "model.cu").read_text()
    if precision == "fp32":
        assert f"({case.kernel}, " in source
    elif case.name in ("mlp", "conv_net"):
        assert "(cuda_matmul_mma, " in source or "(cuda_conv_mma, " in source
    with pyc_cli.load(built.artifact) as model:
        for _ in range(2):
            feeds = case.feeds(rng)
            model.poison()
            compare(model.run(feeds), onnxruntime_outputs(path, feeds), case.rtol, case.atol)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer"])
def test_reference_model_exported_in_float16_on_the_gpu(name: str, precision: str, tmp_path: Path,
                                                        rng: np.random.Generator) -> None:
    """The reference models exported in float16 (f16_cases.to_float16, fresh random weights)
    against onnxruntime within f16_cases.REFERENCE_RTOL of max |output|."""
    from f16_cases import REFERENCE_RTOL, to_float16
    from helpers import randomize_initializers
    from test_cuda_f16 import float16_feeds

    ref = REFERENCE_MODELS[name]
    path = write_model(to_float16(randomize_initializers(onnx.load(str(ref.path)), rng)), tmp_path)
    pyc_cli.build(path, tmp_path / "f16.pyc", target="cuda", arch=ARCH, precision=precision,
                  input_shapes=dict(ref.shapes))
    with pyc_cli.load(tmp_path / "f16.pyc") as model:
        for _ in range(2):
            feeds = float16_feeds(ref.random_feeds(rng))
            model.poison()
            ours = model.run(feeds)
            for key, value in onnxruntime_outputs(path, feeds).items():
                assert ours[key].dtype == np.float16
                assert_close_to_max(ours[key].astype(np.float32), value.astype(np.float32),
                                    REFERENCE_RTOL, f"{name} {key} at {precision}")


# ---------------------------------------------------------------- bfloat16 models (tests/bf16_cases.py)

@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("case", BF16_CASES, ids=lambda c: c.name)
def test_bf16_model_on_the_gpu(case: Bf16Case, precision: str, tmp_path: Path,
                               rng: np.random.Generator) -> None:
    """A model's own bfloat16 tensors on the GPU against onnxruntime (where its CPU provider
    has the kernel) or numpy's per-op rounded float64, with bf16_cases.py's tolerances (Casts
    and data movement bit for bit, NaN where NaN)."""
    from bf16_cases import compare, expected_outputs

    path = write_model(case.make(rng), tmp_path)
    built = pyc_cli.build(path, tmp_path / "bf16.pyc", target="cuda", arch=ARCH, precision=precision)
    if precision == "fp32":
        assert f"({case.kernel}, " in (built.artifact / "src" / "model.cu").read_text()
    with pyc_cli.load(built.artifact) as model:
        for _ in range(2):
            feeds = case.feeds(rng)
            model.poison()
            compare(model.run(feeds), expected_outputs(case, path, feeds), case.rtol, case.atol,
                    nan_bits=False, of_max=case.name == "mlp")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_reference_model_converted_to_bf16_on_the_gpu(name: str, precision: str, tmp_path: Path,
                                                       rng: np.random.Generator) -> None:
    """The reference MLP and transformer converted to bfloat16 (fresh weights) against
    onnxruntime's float32 twin within bf16_cases.BF16_MODEL_RTOL of max |output|."""
    from test_cuda_bf16 import check_against_twin, converted_model

    model, twin = converted_model(name, rng)
    path = write_model(model, tmp_path)
    pyc_cli.build(path, tmp_path / "bf16.pyc", target="cuda", arch=ARCH, precision=precision,
                  input_shapes=dict(REFERENCE_MODELS[name].shapes))
    with pyc_cli.load(tmp_path / "bf16.pyc") as compiled:
        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            compiled.poison()
            return compiled.run(feeds)
        check_against_twin(run, twin, name, rng)


# ---------------------------------------------------------------- sizes known at run time only
# dims_cases.py's models (NonZero chains, TopK with run-time K, Tile and Range with counts from
# input values, Slice with run-time starts over a symbolic batch, an MLP over a symbolic batch):
# shapes and values against onnxruntime on fresh inputs each run, sizes of 0 and at their bound
# among them, outputs and arena poisoned first (integers exactly, float32 rtol 1e-5 / atol 1e-6,
# the MLP rtol 1e-4 / atol 1e-5), graphs on and off bitwise alike; a size past its bound E041

@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")
@pytest.mark.parametrize("graphs", ["1", "0"])
@pytest.mark.parametrize("case", DIMS_CASES, ids=lambda c: c.name)
def test_run_time_sizes_on_the_gpu(case: DimsCase, graphs: str, tmp_path: Path,
                                   rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_cuda_dims import check_outputs

    from tests.dynamic.checks import poison_outputs

    poison_outputs(monkeypatch)
    monkeypatch.setenv("PYC_CUDA_GRAPHS", graphs)
    path = case.make(tmp_path)
    pyc_cli.build(path, tmp_path / "dims.pyc", target="cuda", arch=ARCH,
                  input_shapes=case.input_shapes, input_values=case.input_values)
    with pyc_cli.load(tmp_path / "dims.pyc") as model:
        for _ in range(2):
            for index, feeds_for in enumerate(case.runs):
                feeds = feeds_for(rng)
                model.poison()
                check_outputs(case, model.run(feeds), onnxruntime_outputs(path, feeds),
                              f"run {index}")
            for feeds_for in case.refused:
                with pytest.raises(PycError) as refused:
                    model.run(feeds_for(rng))
                assert refused.value.code == "E041"


# ---------------------------------------------------------------- GEMMs over run-time sizes
# gemm_dims_cases.py's MatMuls (a Linear with bias, GELU and residual over a symbolic row count,
# odd K and N over two row tiles, a 3-D Linear with batch and seq symbolic, batched
# attention-shaped MatMuls with b and s symbolic): the parallel GEMMs over run-time sizes
# (cuda_matmul_tiled_dims at fp32, cuda_matmul_mma_dims at tf32 / fp16 / bf16), each run (sizes
# of 1 and at the upper bounds among them, fresh inputs, outputs and arena poisoned) against
# onnxruntime (fp32 rtol 1e-4 / atol 1e-4) and at a reduced precision against the rounding
# model (model_rtol(K) of max |output|) and the exact result (EXACT_RTOL), as the emulated
# test_cuda_gemm_dims.py

@pytest.mark.parametrize("precision", ["fp32", *PRECISIONS])
@pytest.mark.parametrize("case", GEMM_DIMS_CASES, ids=lambda c: c.name)
def test_run_time_sizes_gemm_on_the_gpu(case: GemmDimsCase, precision: str, tmp_path: Path,
                                        rng: np.random.Generator,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from test_cuda_gemm_dims import build, check_kernel, run_and_check

    from tests.dynamic.checks import poison_outputs

    poison_outputs(monkeypatch)
    path, artifact = build(case, precision, rng, tmp_path / "build", ARCH or "sm_80")
    check_kernel(artifact, precision)
    for _ in range(2):
        run_and_check(case, precision, path, artifact, rng)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("project", [False, True])
def test_run_time_sizes_attention_on_the_gpu(precision: str, project: bool, tmp_path: Path,
                                            rng: np.random.Generator,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """test_cuda_attention_dims.py's heads over symbolic batch and sequence lengths, on the
    GPU (cuda_attention_flash_dims / cuda_attention_mma_dims): shapes 1, the bounds and
    between against onnxruntime, graphs on and off bitwise alike."""
    from test_cuda_attention_dims import (
        SIZES,
        attention_kernel,
        build,
        feeds_at,
        run_and_check,
        symbolic_heads,
    )

    from tests.dynamic.checks import poison_outputs

    poison_outputs(monkeypatch)
    monkeypatch.setattr("pyc_cli.targets.cuda.kernels.ATTENTION_MMA_MIN_KEYS", 1)
    model = symbolic_heads(rng, project=project)
    path, artifact = build(model, tmp_path, precision, arch=ARCH)
    assert attention_kernel(artifact).endswith("_dims")
    run_and_check(path, artifact, monkeypatch, [feeds_at(model, rng, **size) for size in SIZES],
                  precision)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_run_time_sizes_transformer_on_the_gpu(precision: str, tmp_path: Path,
                                              rng: np.random.Generator) -> None:
    """The reference transformer built once over `batch:1..4, seq:1..16` runs at several shapes
    against onnxruntime (its attention on the run-time-size kernels)."""
    from test_cuda_attention_dims import transformer_at, transformer_check

    path, artifact = transformer_at(tmp_path, precision, ARCH)
    transformer_check(path, artifact, rng, precision)
