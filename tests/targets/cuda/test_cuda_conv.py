"""The tensor-core conv (cuda_conv_mma, --precision fp16 / bf16), the float32 implicit-GEMM conv
(cuda_conv_tiled, fp32 / tf32) and the depthwise conv (cuda_conv_depthwise, every precision)
without a GPU: which kernel each precision selects, how
the 16-bit conv weights are stored and read back, NVRTC compilation for sm_90 and sm_80 (every
tile), and the kernels run on the CPU emulation (emulate_cuda.h: mma.sync with the PTX fragment
layouts and bit-exact conversions) on cuda_conv_cases.py's odd shapes, outputs and arena poisoned.

Tolerances: the tensor-core conv against the numpy rounding model of mma_precision.py (x and w
rounded to the precision, exact float64 sums) within model_rtol(K) of max |output| and against
exact float64 within EXACT_RTOL (fp16 2e-2, bf16 5e-2); the float32 convs (tiled, depthwise)
against float64 within rtol 1e-4, atol 1e-5 (as the other float32 kernels)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from cuda_conv_cases import (
    CONV_MMA_CASES,
    DEPTHWISE_CASES,
    FEW_CHANNELS,
    GPU_CONV_MMA_CASES,
    PIPELINED_CASES,
    ConvCase,
)
from cuda_emulation import CXX
from helpers import rand, write_model
from mma_precision import EXACT_RTOL, assert_close_to_max, model_rtol, round_to
from nvrtc_check import compile_cleanly
from onnx import numpy_helper
from test_cuda_compile import needs_nvrtc
from test_cuda_mma import emit_mma

import pyc_cli
from pyc_cli.api import compile_graph
from pyc_cli.artifact.reader import load_graph
from pyc_cli.errors import PycError
from pyc_cli.targets.cuda import toolchain

HALF = ("fp16", "bf16")
TENSOR_CORE = ("tf32", "fp16", "bf16")  # the precisions cuda_conv_mma runs at
needs_cxx = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")


def weights_of(path: Path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def conv_kernels(path: Path, precision: str) -> list[str]:
    graph, _ = compile_graph(path, target="cuda", precision=precision)
    return [n.ann.kernel_name for n in graph.nodes if n.op == "Conv"]


def force_tile(monkeypatch: pytest.MonkeyPatch, tile: int | None, split: int | None = None,
               ksplit: int | None = None) -> None:
    """Every tensor-core conv takes `tile`, `split` and `ksplit` (None: the default choice)."""
    if tile is not None:
        monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context._conv_mma_tile", lambda m, n, k: tile)
    if split is not None:
        monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context._conv_mma_split",
                            lambda tile, m, n, k: split)
    if ksplit is not None:
        monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context._conv_mma_ksplit",
                            lambda tile, m, n, k: ksplit)


# ---------------------------------------------------------------- selection

@pytest.mark.parametrize("case", CONV_MMA_CASES, ids=lambda c: c.name)
def test_reduced_precisions_select_the_tensor_core_conv(case: ConvCase, tmp_path: Path) -> None:
    path = write_model(case.make(np.random.default_rng(0)), tmp_path)
    for precision in TENSOR_CORE:
        assert conv_kernels(path, precision) == ["cuda_conv_mma"]
    assert conv_kernels(path, "fp32") == ["cuda_conv_tiled"]


@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "bf16"])
def test_depthwise_convs_select_the_depthwise_kernel(precision: str, tmp_path: Path) -> None:
    for index, case in enumerate(DEPTHWISE_CASES):
        path = write_model(case.make(np.random.default_rng(0)), tmp_path, f"m{index}.onnx")
        assert conv_kernels(path, precision) == ["cuda_conv_depthwise"], case.name


def test_grouped_convs_keep_the_direct_kernel(tmp_path: Path) -> None:
    """Groups of several channels: neither the tensor-core nor the depthwise conv applies."""
    case = ConvCase("grouped", (1, 8, 9, 9), (6, 4, 3, 3), group=2)
    path = write_model(case.make(np.random.default_rng(0)), tmp_path)
    assert conv_kernels(path, "fp16") == ["cuda_conv_direct"]


def test_a_weight_other_ops_read_takes_the_float32_conv(tmp_path: Path) -> None:
    """w is the conv's weight and a Mul's operand: it stays float32 (stored once), read by the
    float32 implicit-GEMM conv at fp16, by the tensor-core conv at tf32 (which reads float32)."""
    from helpers import init, make_model, rand, vinfo
    from onnx import helper

    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("Mul", ["w", "s"], ["w2"])]
    model = make_model(nodes, [vinfo("x", (1, 4, 6, 6)), vinfo("s", (1,))],
                       [vinfo("c", (1, 4, 4, 4)), vinfo("w2", (4, 4, 3, 3))],
                       [init("w", rand(rng, 4, 4, 3, 3))])
    path = write_model(model, tmp_path)
    assert conv_kernels(path, "fp16") == ["cuda_conv_tiled"]
    assert conv_kernels(path, "tf32") == ["cuda_conv_mma"]


# ---------------------------------------------------------------- 16-bit weights

@pytest.mark.parametrize("precision", HALF)
def test_conv_weights_are_stored_as_16_bit_rows(precision: str, tmp_path: Path) -> None:
    """The stem's [16, 3, 7, 7] weight: 16 rows of K = 147 values padded to 152, the bias
    float32; read back (pyc explain, --compare) as the kernel sees it."""
    case = CONV_MMA_CASES[0]
    path = write_model(case.make(np.random.default_rng(2)), tmp_path)
    artifact = tmp_path / "a.pyc"
    pyc_cli.build(path, artifact, target="cuda", precision=precision)
    manifest = json.loads((artifact / "manifest.json").read_text())
    dtype = {"fp16": "float16", "bf16": "bfloat16"}[precision]
    assert manifest["weights"]["converted"] == {"w": {"columns": 152, "dtype": dtype, "flat": True}}
    w = weights_of(path)
    blob = (artifact / "weights.bin").read_bytes()
    stored = np.frombuffer(blob, np.uint16, 16 * 152, manifest["weights"]["layout"]["w"]).reshape(16, 152)
    assert not stored[:, 147:].any()
    if precision == "fp16":
        np.testing.assert_array_equal(stored[:, :147].view(np.float16),
                                      w["w"].reshape(16, 147).astype(np.float16))
    b = np.frombuffer(blob, np.float32, 16, manifest["weights"]["layout"]["b"])
    np.testing.assert_array_equal(b, w["b"])
    graph = load_graph(artifact, manifest)
    np.testing.assert_array_equal(graph.constants["w"], round_to(w["w"], precision).astype(np.float32))
    for record in ({"dtype": "float16", "columns": 152, "flat": 1},
                   {"dtype": "float16", "columns": 8},  # 7 columns (KW) would be the unflat row
                   {"dtype": "float16", "columns": 200, "flat": True}):
        changed = json.loads(json.dumps(manifest))
        changed["weights"]["converted"]["w"] = record
        with pytest.raises(PycError) as caught:
            load_graph(artifact, changed)
        assert caught.value.code == "E030", record


# grids: (tiles in raster order, channel tiles fastest; 1; blocks along K)
@pytest.mark.parametrize("name,block,grid", [
    ("resnet_stem_b1", 128, [196, 1, 1]),                # 64 x 64 tiles fill the GPU
    ("resnet_layer1_3x3_b4", 256, [196, 1, 1]),          # 196 blocks, K = 576: 2 groups of warps
    ("resnet_layer1_expand_b4_residual", 128, [784, 1, 1]),  # 196 128-tiles: under 2 a GPU
    # 64 tiles of 64 x 32, K = 1024: 3 blocks along K (1.5 MB of partial sums)
    ("resnet_downsample_1x1_s2_b1", 128, [64, 1, 3]),
    # 16 tiles, K = 4608: 9 blocks along K of 8 64-deep slices, 2 groups of warps each
    ("resnet_layer4_3x3_b1", 256, [16, 1, 9]),
    ("deep_7x7_split", 128, [2, 1, 9]),                  # 36 slices: 9 blocks of 4
])
def test_default_tiles(name: str, block: int, grid: list[int], tmp_path: Path) -> None:
    case = next(c for c in CONV_MMA_CASES + GPU_CONV_MMA_CASES if c.name == name)
    _, launches = emit_mma(case, "fp16", tmp_path)  # type: ignore[arg-type]
    assert (launches[0]["block"], launches[0]["grid"]) == ([block, 1, 1], grid)


def test_k_split_within_the_workspace_cap() -> None:
    """The K split halves until its partial sums fit the cap: 4 MiB, memory_first's 32 KiB."""
    from pyc_cli.passes.select_kernels import WORKSPACE_CAPS
    from pyc_cli.targets.cuda.kernel_context import conv_mma_geometry, conv_mma_workspace_cap

    params = {"OC": 2048, "N": 1, "OD": 1, "OH": 7, "OW": 7, "C": 1024, "KD": 1, "KH": 1, "KW": 1}
    caps = {mode: conv_mma_workspace_cap(cap) for mode, cap in WORKSPACE_CAPS.items()}
    assert caps == {"latency_first": 4 << 20, "balanced": 4 << 20, "memory_first": 32 * 1024}
    assert conv_mma_geometry(params, caps["balanced"]).ksplit == 3
    geometry = conv_mma_geometry({**params, "conv_ksplit": 16}, caps["balanced"])
    assert geometry.ksplit == 8 and geometry.workspace_bytes <= 4 << 20
    assert conv_mma_geometry(params, caps["memory_first"]).ksplit == 1
    assert conv_mma_geometry(params, 0).workspace_bytes == 0


# ---------------------------------------------------------------- NVRTC

VARIANTS = [(128, 1), (64, 1), (32, 1), (64, 2), (32, 2), (64, 4), (32, 4)]  # (tile, split)
# (tile, split, ksplit asked, blocks along K): 36 slices of 32 (18 of 64 when split)
KSPLITS = [(32, 1, 3, 3), (32, 2, 2, 2), (64, 4, 5, 5), (128, 1, 4, 4), (32, 1, 16, 12)]


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("precision", TENSOR_CORE)
@pytest.mark.parametrize("tile,split", VARIANTS)
def test_nvrtc_compiles_the_tensor_core_conv(tile: int, split: int, precision: str, arch: str,
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    force_tile(monkeypatch, tile, split)
    pointwise = next(c for c in CONV_MMA_CASES if c.name == "1x1_batch4_residual")  # float4 gather
    for index, case in enumerate([*CONV_MMA_CASES[:3], pointwise]):
        (tmp_path / str(index)).mkdir()
        source, launches = emit_mma(case, precision, tmp_path / str(index))  # type: ignore[arg-type]
        assert "conv_mma.cu.j2" in source
        assert launches[0]["block"] == [256 if tile == 128 else 128 * split, 1, 1]
        compiled = compile_cleanly(source, arch)
        shape = "m16n8k8" if precision == "tf32" else "m16n8k16"
        assert f"mma.sync.aligned.{shape}" in compiled.ptx
        assert ("ldmatrix" in compiled.ptx) == (precision != "tf32") and "cp.async" in compiled.ptx


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("tile,split,ksplit,blocks", KSPLITS)
def test_nvrtc_compiles_the_k_split(tile: int, split: int, ksplit: int, blocks: int, arch: str,
                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    force_tile(monkeypatch, tile, split, ksplit)
    case = next(c for c in CONV_MMA_CASES if c.name == "deep_7x7_split")
    source, launches = emit_mma(case, "fp16", tmp_path)  # type: ignore[arg-type]
    assert launches[0]["grid"][2] == blocks and "float* __restrict__ WS" in source
    compiled = compile_cleanly(source, arch)
    assert "atom.global.add" in compiled.ptx or "red.global.add" in compiled.ptx


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=lambda c: c.name)
def test_nvrtc_compiles_the_depthwise_conv(case: ConvCase, arch: str, tmp_path: Path) -> None:
    source, _ = emit_mma(case, "fp32", tmp_path)  # type: ignore[arg-type]
    assert "conv_depthwise.cu.j2" in source
    compile_cleanly(source, arch)


# ---------------------------------------------------------------- emulated

def check_tensor_core_conv(case: ConvCase, ours: np.ndarray, feeds: dict[str, np.ndarray],
                           weights: dict[str, np.ndarray], precision: str) -> None:
    """Against the rounding model (model_rtol(K)) and exact float64 (EXACT_RTOL), and the
    rounding really happened: the model explains the output better than exact math."""
    model = case.forward(feeds, weights, precision)
    exact = case.forward(feeds, weights, "fp32")
    k = int(np.prod(case.w[1:]))
    assert_close_to_max(ours, model, model_rtol(k), f"{case.name} {precision} vs the rounding model")
    assert_close_to_max(ours, exact, EXACT_RTOL[precision], f"{case.name} {precision} vs float64")
    assert np.max(np.abs(ours - model)) < np.max(np.abs(ours - exact))


@needs_cxx
@pytest.mark.parametrize("precision", TENSOR_CORE)
@pytest.mark.parametrize("case", CONV_MMA_CASES, ids=lambda c: c.name)
def test_emulated_tensor_core_conv(case: ConvCase, precision: str, tmp_path: Path,
                                   rng: np.random.Generator) -> None:
    from test_cuda_emulated import Emulated

    path = write_model(case.make(rng), tmp_path)
    emulated = Emulated(path, tmp_path, precision=precision)
    assert [n.ann.kernel_name for n in emulated.graph.nodes] == ["cuda_conv_mma"]
    for _ in range(2):  # fresh inputs, poisoned buffers each run
        feeds = case.feeds(rng)
        check_tensor_core_conv(case, emulated.run(feeds)["y"], feeds, weights_of(path), precision)


@needs_cxx
@pytest.mark.parametrize("precision", ["fp16", "tf32"])
@pytest.mark.parametrize("tile,split", VARIANTS)
def test_emulated_tensor_core_conv_tiles(tile: int, split: int, precision: str, tmp_path: Path,
                                         rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tile and split on the 49-pixel map (70 channels: a partial row tile; K = 360, not
    a multiple of a slice), the stem and a pointwise conv (the float4 gather)."""
    from test_cuda_emulated import Emulated

    force_tile(monkeypatch, tile, split)
    pointwise = next(c for c in CONV_MMA_CASES if c.name == "1x1_batch4_residual")
    for index, case in enumerate((CONV_MMA_CASES[3], CONV_MMA_CASES[0], pointwise)):
        path = write_model(case.make(rng), tmp_path, f"m{index}.onnx")
        emulated = Emulated(path, tmp_path, precision=precision)
        assert emulated.plan["launches"][0]["block"] == [256 if tile == 128 else 128 * split, 1, 1]
        feeds = case.feeds(rng)
        check_tensor_core_conv(case, emulated.run(feeds)["y"], feeds, weights_of(path), precision)


@needs_cxx
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=lambda c: c.name)
def test_emulated_depthwise_conv(case: ConvCase, precision: str, tmp_path: Path,
                                 rng: np.random.Generator) -> None:
    from test_cuda_emulated import Emulated

    path = write_model(case.make(rng), tmp_path)
    emulated = Emulated(path, tmp_path, precision=precision)
    assert [n.ann.kernel_name for n in emulated.graph.nodes] == ["cuda_conv_depthwise"]
    for _ in range(2):
        feeds = case.feeds(rng)
        np.testing.assert_allclose(emulated.run(feeds)["y"], case.forward(feeds, weights_of(path), "fp32"),
                                   rtol=1e-4, atol=1e-5)


@needs_cxx
@pytest.mark.parametrize("precision", HALF)
@pytest.mark.parametrize("name", ["cnn", "mobilenet"])
def test_emulated_conv_models_at_reduced_precision(name: str, precision: str, tmp_path: Path,
                                                   rng: np.random.Generator) -> None:
    """The CNN and MobileNet (depthwise and pointwise convs) with their convs on the emulated
    tensor cores and (fp16 / bf16) their activations in 16 bits, against onnxruntime in float32
    within WHOLE_MODEL_RTOL of max |output| (measured here with float32 activations: bf16 ~3e-3
    (CNN) and ~6e-4 (MobileNet), fp16 ~1e-4)."""
    from conftest import MODELS_DIR, REFERENCE_MODELS, ReferenceModel, onnxruntime_outputs
    from mma_precision import WHOLE_MODEL_RTOL
    from test_cuda_emulated import Emulated

    model = REFERENCE_MODELS.get(name) or ReferenceModel(name, MODELS_DIR / "mobilenet.onnx",
                                                         {"image": (1, 3, 64, 64)})
    emulated = Emulated(model.path, tmp_path, dict(model.shapes), precision=precision)
    kernels = [n.ann.kernel_name for n in emulated.graph.nodes if n.op == "Conv"]
    assert "cuda_conv_mma" in kernels and (name == "cnn" or "cuda_conv_depthwise" in kernels)
    # at fp16 / bf16 the activations between the convs are stored in 16 bits
    storage = {"fp16": "f16", "bf16": "bf16"}[precision]
    assert len([t for t in emulated.graph.types.values() if t.dtype.value == storage]) > 3
    feeds = model.random_feeds(rng)
    ours = emulated.run(feeds)
    for key, value in onnxruntime_outputs(model.path, feeds).items():
        assert_close_to_max(ours[key], value, WHOLE_MODEL_RTOL[precision], f"{key} {precision}")


@needs_cxx
@pytest.mark.parametrize("tile,split,ksplit,blocks", KSPLITS)
def test_emulated_k_split(tile: int, split: int, ksplit: int, blocks: int, tmp_path: Path,
                          rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks along K (the last of a tile adds the partial sums): a residual epilogue after the
    sums, three runs (each tile's counter back at zero after each), a last block with fewer
    slices (18 slices of 64 in 5 blocks), 16 asked of 36 slices: 12 blocks of 3."""
    from test_cuda_emulated import Emulated

    force_tile(monkeypatch, tile, split, ksplit)
    case = next(c for c in CONV_MMA_CASES if c.name == "deep_7x7_split")
    path = write_model(case.make(rng), tmp_path)
    emulated = Emulated(path, tmp_path, precision="bf16")
    (launch,) = emulated.plan["launches"]
    assert launch["grid"][2] == blocks and launch["args"][0][0] == "status"
    assert emulated.plan["status_bytes"] == 4 + 4 * launch["grid"][0] * launch["grid"][1]
    for _ in range(3):
        feeds = case.feeds(rng)
        check_tensor_core_conv(case, emulated.run(feeds)["y"], feeds, weights_of(path), "bf16")
        assert not emulated.status.any()  # the counters reset themselves


@needs_cxx
@needs_nvrtc
@pytest.mark.parametrize("graphs", ["1", "0"])
def test_k_split_through_the_runtime(graphs: str, tmp_path: Path, rng: np.random.Generator,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime/cuda.py's whole path (FakeDriver: host memory as device memory, the kernels on
    the CPU) with a K-split conv: the status words past the status word allocated and zeroed
    at load, three runs (outputs and arena poisoned) against the rounding model, replayed as
    a CUDA graph or launched one by one."""
    from test_cuda_runtime_emulated import fake_for, use

    monkeypatch.setenv("PYC_CUDA_GRAPHS", graphs)
    case = next(c for c in CONV_MMA_CASES if c.name == "deep_7x7_split")
    path = write_model(case.make(rng), tmp_path)
    artifact = tmp_path / "k.pyc"
    pyc_cli.build(path, artifact, target="cuda", precision="fp16")
    plan = json.loads((artifact / "src" / "launches.json").read_text())
    assert plan["launches"][0]["grid"] == [2, 1, 9] and plan["status_bytes"] == 4 + 4 * 2
    use(monkeypatch, fake_for(artifact, tmp_path))
    with pyc_cli.load(artifact) as model:
        for _ in range(3):
            feeds = case.feeds(rng)
            model.poison()
            check_tensor_core_conv(case, model.run(feeds)["y"], feeds, weights_of(path), "fp16")


def test_hostile_status_bytes_are_refused() -> None:
    from pyc_cli.runtime.cuda import _plan_problem

    manifest = {"arena_bytes": 64, "weights": {"bytes": 32}, "inputs": [{}], "outputs": [{}]}
    launch = {"kernel": "k0_conv", "grid": [1, 1, 1], "block": [32, 1, 1], "shared_bytes": 0,
              "args": [["status", 4], ["input", 0], ["weights", 0], ["output", 0]]}
    plan = {"format": 1, "arena_bytes": 64, "weights_bytes": 32, "launches": [launch],
            "status_bytes": 8}
    assert _plan_problem(plan, manifest) == ""
    for bad in (3, 6, "8", -4, 2**40):
        assert "status_bytes" in _plan_problem({**plan, "status_bytes": bad}, manifest), bad
    outside = {**launch, "args": [["status", 8], ["input", 0]]}
    assert "outside" in _plan_problem({**plan, "launches": [outside]}, manifest)


# ---------------------------------------------------------------- the pipelined conv (conv_stages)
# conv_stages 3 / 4: the im2col slice comes by cp.async (4-byte copies of a float32 input's
# values or of the aligned words holding a 16-bit input's elements, zero-filled past borders,
# pads and K), STAGES - 1 slices in flight; 2: the register gather. Against the rounding model
# (model_rtol(K), plus 2 ulps of the storage type where the output is stored in 16 bits) and
# onnxruntime in float32 (WHOLE_MODEL_RTOL), outputs and arena poisoned, two runs each.

STAGES = (2, 3, 4)


def force_stages(monkeypatch: pytest.MonkeyPatch, stages: int) -> None:
    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context.CONV_MMA_STAGES", stages)


def check_pipelined(case: ConvCase, ours: np.ndarray, feeds: dict[str, np.ndarray],
                    weights: dict[str, np.ndarray], precision: str, path: Path) -> None:
    from conftest import onnxruntime_outputs
    from mma_precision import WHOLE_MODEL_RTOL
    from test_cuda_half import ULP

    k = int(np.prod(case.w[1:]))
    stored = 2 * ULP[precision] if case.half_output else 0.0
    assert_close_to_max(ours, case.forward(feeds, weights, precision), model_rtol(k) + stored,
                        f"{case.name} {precision} vs the rounding model")
    assert_close_to_max(ours, onnxruntime_outputs(path, feeds)["y"], WHOLE_MODEL_RTOL[precision],
                        f"{case.name} {precision} vs onnxruntime")


def pipelined_launch(emulated: object, case: ConvCase, precision: str, stages: int) -> dict:  # type: ignore[type-arg]
    """The conv's launch, after checking what it reads and stores in 16 bits and how deep its
    pipeline is (dynamic shared memory only where pipelined)."""
    from test_cuda_half import STORAGE

    graph = emulated.graph  # type: ignore[attr-defined]
    (conv,) = [n for n in graph.nodes if n.op == "Conv"]
    assert conv.ann.kernel_name == "cuda_conv_mma"
    assert (graph.types[conv.inputs[0]].dtype is STORAGE[precision]) == case.half_input
    assert (graph.types[conv.outputs[0]].dtype is STORAGE[precision]) == case.half_output
    (launch,) = [s for s in emulated.plan["launches"] if s["op"] == "Conv"]  # type: ignore[attr-defined]
    assert (launch["shared_bytes"] > 0) == (stages > 2), launch
    return launch  # type: ignore[no-any-return]


@needs_cxx
@pytest.mark.parametrize("precision,stages", [("fp16", 2), ("fp16", 3), ("fp16", 4), ("bf16", 3),
                                              ("bf16", 4)])
@pytest.mark.parametrize("case", PIPELINED_CASES, ids=lambda c: c.name)
def test_emulated_pipelined_conv(case: ConvCase, precision: str, stages: int, tmp_path: Path,
                                 rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_cuda_emulated import Emulated

    force_stages(monkeypatch, stages)
    path = write_model(case.make(rng), tmp_path)
    emulated = Emulated(path, tmp_path, precision=precision)
    pipelined_launch(emulated, case, precision, stages)
    for _ in range(2):  # fresh inputs, poisoned buffers each run
        feeds = case.feeds(rng)
        check_pipelined(case, emulated.run(feeds)["y"], feeds, weights_of(path), precision, path)


@needs_cxx
@pytest.mark.parametrize("stages", [3, 4])
@pytest.mark.parametrize("tile,split", VARIANTS)
def test_emulated_pipelined_conv_tiles(tile: int, split: int, stages: int, tmp_path: Path,
                                       rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tile and split, pipelined, on a 16-bit input (odd channels, a residual) and a
    float32 one with a 16-bit output (the dilated conv's float32 twin)."""
    from dataclasses import replace

    from test_cuda_emulated import Emulated

    force_tile(monkeypatch, tile, split)
    force_stages(monkeypatch, stages)
    dilated = replace(PIPELINED_CASES[2], name="p_dilated_float32_input", half_input=False)
    for index, case in enumerate((PIPELINED_CASES[0], dilated)):
        path = write_model(case.make(rng), tmp_path, f"m{index}.onnx")
        emulated = Emulated(path, tmp_path, precision="fp16")
        launch = pipelined_launch(emulated, case, "fp16", stages)
        assert launch["block"] == [256 if tile == 128 else 128 * split, 1, 1]
        feeds = case.feeds(rng)
        check_pipelined(case, emulated.run(feeds)["y"], feeds, weights_of(path), "fp16", path)


@needs_cxx
@pytest.mark.parametrize("stages", [3, 4])
@pytest.mark.parametrize("tile,split,ksplit,blocks", KSPLITS)
def test_emulated_pipelined_k_split(tile: int, split: int, ksplit: int, blocks: int, stages: int,
                                    tmp_path: Path, rng: np.random.Generator,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks along K, pipelined (a block's slices fewer than the stages among them: 36 slices in
    12 blocks of 3), on the deep 16-bit conv: three runs, the counters reset each time."""
    from test_cuda_emulated import Emulated

    force_tile(monkeypatch, tile, split, ksplit)
    force_stages(monkeypatch, stages)
    case = next(c for c in PIPELINED_CASES if c.name == "p_deep_7x7_residual")
    path = write_model(case.make(rng), tmp_path)
    emulated = Emulated(path, tmp_path, precision="bf16")
    launch = pipelined_launch(emulated, case, "bf16", stages)
    assert launch["grid"][2] == blocks
    for _ in range(3):
        feeds = case.feeds(rng)
        check_pipelined(case, emulated.run(feeds)["y"], feeds, weights_of(path), "bf16", path)
        assert not emulated.status.any()


@needs_cxx
@pytest.mark.parametrize("precision,stages", [("fp16", 3), ("fp16", 4), ("bf16", 3), ("fp16", 2)])
def test_emulated_pipelined_conv_of_a_misaligned_16_bit_input(precision: str, stages: int, tmp_path: Path,
                                                              rng: np.random.Generator,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The conv's 16-bit input 2 bytes past a 4-byte boundary (a Concat operand in the arena):
    the halves its words hold follow the element's address. Against onnxruntime
    (WHOLE_MODEL_RTOL), both outputs."""
    from conftest import onnxruntime_outputs
    from cuda_conv_cases import MISALIGNED_INPUTS, misaligned_input_model
    from mma_precision import WHOLE_MODEL_RTOL
    from test_cuda_emulated import Emulated
    from test_cuda_half import STORAGE

    force_stages(monkeypatch, stages)
    path = write_model(misaligned_input_model(rng), tmp_path)
    emulated = Emulated(path, tmp_path, precision=precision)
    (conv,) = [n for n in emulated.graph.nodes if n.op == "Conv"]
    assert conv.ann.kernel_name == "cuda_conv_mma"
    assert emulated.graph.types[conv.inputs[0]].dtype is STORAGE[precision]
    (launch,) = [s for s in emulated.plan["launches"] if s["op"] == "Conv"]
    assert launch["args"][0][0] == "arena" and launch["args"][0][1] % 4 == 2
    assert (launch["shared_bytes"] > 0) == (stages > 2)
    for _ in range(2):
        feeds = {name: rand(rng, *shape) for name, shape in MISALIGNED_INPUTS.items()}
        ours = emulated.run(feeds)
        for name, value in onnxruntime_outputs(path, feeds).items():
            assert_close_to_max(ours[name], value, WHOLE_MODEL_RTOL[precision], f"{name} {precision}")


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("stages", [3, 4])
@pytest.mark.parametrize("tile,split", VARIANTS)
def test_nvrtc_compiles_the_pipelined_conv(tile: int, split: int, stages: int, arch: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tile and split, 3 or 4 stages, a 16-bit and a float32 input, fp16 and bf16: the 4-byte
    cp.async gather and the deeper wait in the PTX, no register spills or stack frame, shared
    memory within sm_80's 163 KiB (ptxas' registers printed)."""
    from pyc_cli.targets.cuda.kernel_context import CONV_MMA_SHARED_LIMIT

    force_tile(monkeypatch, tile, split)
    force_stages(monkeypatch, stages)
    for index, (case, precision) in enumerate([(PIPELINED_CASES[0], "fp16"), (PIPELINED_CASES[6], "bf16")]):
        (tmp_path / str(index)).mkdir()
        source, launches = emit_mma(case, precision, tmp_path / str(index))  # type: ignore[arg-type]
        (launch,) = [s for s in launches if s["op"] == "Conv"]
        assert 48 * 1024 // 2 < launch["shared_bytes"] <= CONV_MMA_SHARED_LIMIT
        assert "PYC_DYNAMIC_SHARED(smem)" in source
        compiled = compile_cleanly(source, arch)
        assert "cp.async.ca.shared.global" in compiled.ptx and ", 4, " in compiled.ptx
        assert f"cp.async.wait_group {stages - 2};" in compiled.ptx
        for usage in toolchain.resource_usage(source, arch):
            print(case.name, precision, usage)
            assert usage.spill_store_bytes == usage.spill_load_bytes == usage.stack_bytes == 0, usage


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("stages", [3, 4])
def test_nvrtc_compiles_the_pipelined_k_split_and_gpu_sizes(stages: int, arch: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Every K split of KSPLITS on the deep 16-bit conv, and the GPU tests' ResNet-50-sized
    convs (default tiles and splits, 16-bit and float32 inputs): no spills, no stack frame."""
    from cuda_conv_cases import GPU_PIPELINED_CASES

    force_stages(monkeypatch, stages)
    deep = next(c for c in PIPELINED_CASES if c.name == "p_deep_7x7_residual")
    runs: list[tuple[ConvCase, tuple[int, int, int] | None]] = [(deep, v[:3]) for v in KSPLITS]
    runs += [(case, None) for case in GPU_PIPELINED_CASES]
    for index, (case, forced) in enumerate(runs):
        with monkeypatch.context() as patch:
            if forced is not None:
                force_tile(patch, *forced)
            (tmp_path / str(index)).mkdir()
            source, launches = emit_mma(case, "fp16", tmp_path / str(index))  # type: ignore[arg-type]
        (launch,) = [s for s in launches if s["op"] == "Conv"]
        assert launch["shared_bytes"] > 0 and (forced is None or launch["grid"][2] > 1)
        for usage in toolchain.resource_usage(source, arch):
            print(case.name, forced, usage)
            assert usage.spill_store_bytes == usage.spill_load_bytes == usage.stack_bytes == 0, usage


def test_pipeline_depth_within_the_shared_memory_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tile and split fits 4 stages within sm_80's 163 KiB; a limit that cannot hold them
    lowers the stages (to the register gather, 2, where not even 3 fit); pointwise convs and
    tf32 keep 2; the decision log says which."""
    from pyc_cli.targets.cuda import kernel_context as kc

    params = {"OC": 256, "N": 8, "OD": 1, "OH": 14, "OW": 14, "C": 256, "KD": 1, "KH": 3, "KW": 3,
              "pointwise": False}
    for tile, split in VARIANTS:
        forced = {**params, "conv_tile": tile, "conv_split": split, "conv_stages": 4}
        geo = kc.conv_mma_geometry(forced)
        pipe = kc.conv_mma_pipeline(forced, geo, False)
        assert pipe.stages == 4 and pipe.shared_bytes == kc.conv_async_bytes(geo, 4) <= 163 * 1024
        assert kc.conv_mma_pipeline(forced, geo, True).stages == 2  # tf32
        pointwise = {**forced, "KH": 1, "KW": 1, "pointwise": True}
        assert kc.conv_mma_pipeline(pointwise, kc.conv_mma_geometry(pointwise), False).stages == 2
    forced = {**params, "conv_tile": 128, "conv_stages": 4}
    geo = kc.conv_mma_geometry(forced)
    monkeypatch.setattr(kc, "CONV_MMA_SHARED_LIMIT", kc.conv_async_bytes(geo, 3))
    assert kc.conv_mma_pipeline(forced, geo, False).stages == 3
    monkeypatch.setattr(kc, "CONV_MMA_SHARED_LIMIT", kc.conv_async_bytes(geo, 3) - 1)
    assert kc.conv_mma_pipeline(forced, geo, False).stages == 2


def test_the_decision_log_names_the_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyc_cli.api import compile_graph as build_graph

    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context.CONV_MMA_STAGES", 3)

    for case, words in ((PIPELINED_CASES[0], "conv_stages 3: the im2col slices by cp.async, 2 in flight"),
                        (CONV_MMA_CASES[6], "conv_stages 2: double-buffered slices (pointwise")):
        path = write_model(case.make(np.random.default_rng(0)), tmp_path, f"{case.name}.onnx")
        _, ctx = build_graph(path, target="cuda", precision="fp16")
        reasons = [e.reason for e in ctx.decisions if e.action == "select_kernel"
                   and getattr(e, "after", None) == "cuda_conv_mma"]
        assert len(reasons) == 1 and words in reasons[0], reasons


# ---------------------------------------------------------------- the float32 implicit GEMM

@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("tile", [64, 32, 8])
def test_nvrtc_compiles_the_tiled_conv(tile: int, arch: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context._conv_tiled_tile", lambda m, n: tile)
    for index, case in enumerate(CONV_MMA_CASES[:2]):
        (tmp_path / str(index)).mkdir()
        source, _ = emit_mma(case, "fp32", tmp_path / str(index))  # type: ignore[arg-type]
        assert "conv_tiled.cu.j2" in source
        compile_cleanly(source, arch)


@needs_cxx
@pytest.mark.parametrize("case", [*CONV_MMA_CASES, FEW_CHANNELS], ids=lambda c: c.name)
def test_emulated_tiled_conv(case: ConvCase, tmp_path: Path, rng: np.random.Generator) -> None:
    from test_cuda_emulated import Emulated

    path = write_model(case.make(rng), tmp_path)
    emulated = Emulated(path, tmp_path, precision="fp32")
    assert [n.ann.kernel_name for n in emulated.graph.nodes] == ["cuda_conv_tiled"]
    for _ in range(2):
        feeds = case.feeds(rng)
        np.testing.assert_allclose(emulated.run(feeds)["y"], case.forward(feeds, weights_of(path), "fp32"),
                                   rtol=1e-4, atol=1e-5)


@needs_cxx
@pytest.mark.parametrize("tile", [64, 32, 8])
def test_emulated_tiled_conv_tiles(tile: int, tmp_path: Path, rng: np.random.Generator,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Every tile on the 49-pixel map (70 channels) and the few-channel conv."""
    from test_cuda_emulated import Emulated

    monkeypatch.setattr("pyc_cli.targets.cuda.kernel_context._conv_tiled_tile", lambda m, n: tile)
    for index, case in enumerate((CONV_MMA_CASES[3], FEW_CHANNELS)):
        path = write_model(case.make(rng), tmp_path, f"m{index}.onnx")
        emulated = Emulated(path, tmp_path, precision="fp32")
        feeds = case.feeds(rng)
        np.testing.assert_allclose(emulated.run(feeds)["y"], case.forward(feeds, weights_of(path), "fp32"),
                                   rtol=1e-4, atol=1e-5)


def test_the_c_entry_point_zeroes_the_counters(tmp_path: Path) -> None:
    """NAME_cuda.c of a K-split conv: the status words it allocates and zeroes at load (the
    status word and the tile counters), arguments offset into them; strict C11 against cuda.h."""
    import shutil

    from test_cuda_c_api import INCLUDE, strict_c11_errors

    case = next(c for c in CONV_MMA_CASES if c.name == "deep_7x7_split")
    path = write_model(case.make(np.random.default_rng(5)), tmp_path)
    artifact = tmp_path / "k.pyc"
    pyc_cli.build(path, artifact, target="cuda", precision="fp16")
    prefix = json.loads((artifact / "manifest.json").read_text())["symbol_prefix"]
    source = (artifact / "src" / f"{prefix}_cuda.c").read_text()
    assert "device_alloc(&r, 12);" in source and "cuMemsetD32(m->status, 0, 3)" in source
    assert "m->values[a] = m->status + arg.at" in source and "{ 4, 4ull }" in source
    if INCLUDE is None or shutil.which("gcc") is None:
        pytest.skip("no cuda.h or gcc here to compile it")
    errors = strict_c11_errors("gcc", artifact, prefix, tmp_path)
    assert errors is None, errors
