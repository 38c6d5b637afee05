"""The generated CUDA kernels run on the CPU: model.cu compiled as C++ with emulate_cuda.h (blocks
one after another, a fiber per CUDA thread run in a fresh shuffled order between barriers,
__syncthreads a barrier, warp shuffles through shared slots; test_emulator.py checks that a
missing barrier shows) and launched as the runtime would from launches.json, against onnxruntime on fresh
random inputs, outputs and arena poisoned with NaN first. This checks every kernel's indexing,
bounds, broadcasting, epilogues and block reductions without a GPU (not its speed, nor what only
a GPU does: memory ordering beyond barriers, the driver API). float32 tolerances as on the GPU:
rtol 1e-4, atol 1e-5 (GEMMs and LayerNorm atol 1e-4; transformers rtol 1e-3, atol 1e-4)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from attention_cases import (
    HEAD_MMA_SHAPES,
    HEAD_SHAPES,
    MMA_SHAPES,
    MMA_TILE_KEYS,
    ROUNDED_RTOL,
    SELF_SHAPES,
    SHAPES,
    flash_rows,
    float64_attention,
    head_attention_model,
    head_feeds,
    minilm_attention,
    rounded_attention,
)
from conftest import MODELS_DIR, REFERENCE_MODELS, ReferenceModel, onnxruntime_outputs
from cuda_cases import CASES, Case
from cuda_emulation import CXX, compile_kernels, launch
from helpers import write_model
from mma_cases import MMA_CASES, MmaCase
from mma_precision import (
    EXACT_RTOL,
    MODEL_RTOL,
    PRECISIONS,
    WHOLE_MODEL_RTOL,
    assert_close_to_max,
)
from onnx import numpy_helper
from ops.test_references import attention_feeds, attention_model

from pyc_cli.abi import io_infos
from pyc_cli.api import compile_graph
from pyc_cli.ir.run_dims import model_dims
from pyc_cli.ir.symbolic import Dim, check_within
from pyc_cli.ir.types import DType
from pyc_cli.planning.weights import layout_weights, weights_bytes
from pyc_cli.runtime.cuda import entry_steps, start_dims
from pyc_cli.targets.base import ModelInfo

MOBILENET = MODELS_DIR / "mobilenet.onnx"
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")


class Emulated:
    """A model's kernels built for the CPU, with host buffers standing in for device memory."""

    def __init__(self, model_path: Path, work: Path, shapes: dict | None = None,  # type: ignore[type-arg]
                 precision: str | None = None,
                 input_values: dict[str, tuple[float, float]] | None = None,
                 tuning: object = None) -> None:
        # a tuning database only where given (a test may bind one into compile_graph)
        extra = {"tuning": tuning} if tuning is not None else {}
        graph, ctx = compile_graph(model_path, input_shapes=shapes, target="cuda",
                                   precision=precision, input_values=input_values,
                                   **extra)  # type: ignore[arg-type]
        self.graph, self.target = graph, ctx.target
        # weights laid out as a build lays them (16-bit B matrices at fp16 / bf16)
        plan = ctx.artifacts["memory_plan"]
        layout = layout_weights(graph, {}, ctx.target.constant_conversions(graph))  # type: ignore[union-attr]
        info = ModelInfo("emu", io_infos(graph, graph.inputs),
                         io_infos(graph, graph.outputs, graph.public_outputs()), plan.arena_bytes,
                         layout.total_bytes, 0, "emu")
        sources = ctx.target.emit(graph, plan, layout, info)
        self.lib = compile_kernels(sources["model.cu"], work)
        self.plan = json.loads(sources["launches.json"])
        self.inputs, self.outputs = info.inputs, info.outputs
        self.weights = np.frombuffer(weights_bytes(graph, layout), np.uint8).copy()
        self.arena = np.empty(max(4, plan.arena_bytes), np.uint8)
        # the status word, then kernels' counters: zeroed once, as at load
        self.status = np.zeros(self.plan.get("status_bytes", 4) // 4, np.int32)
        # sizes known at run time only: the dims in the status words, set to their upper
        # bounds before a run (a static model's inputs: no input dim), read after it
        self.dims = model_dims(graph)
        self.output_types = [graph.types[name] for name in graph.outputs]
        self.input_types = [graph.types[name] for name in graph.inputs]

    def run_dims(self) -> np.ndarray:
        """The dims region of the status words (int64 each)."""
        at = self.plan["dims"]["at"]
        return self.status.view(np.uint8)[at:at + 8 * len(self.dims)].view(np.int64)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = [np.ascontiguousarray(feeds[i.name]) for i in self.inputs]
        outputs = [np.full(o.shape, np.nan if o.dtype.startswith(("f", "bf")) else 0, DType(o.dtype).numpy)
                   for o in self.outputs]
        self.arena.view(np.uint8)[:] = 0xFF  # NaN in every float32 slot
        self.status[0] = 0
        if self.dims:  # as runtime/cuda.py sets them (input dims, value dims, entry steps)
            env: dict[str, int] = {}
            for spec, array, typed in zip(self.inputs, inputs, self.input_types):
                check_within(spec.name, typed.shape, array.shape, env)
            start = np.array([env.get(d.name, d.hi) for d in self.dims], np.int64)
            if not start_dims(start, [d.name for d in self.dims],
                              self.plan["dims"].get("values", []),
                              entry_steps(self.plan["dims"], {d.name: d for d in self.dims}),
                              inputs):
                raise IndexError("the run's sizes are refused before the first kernel")
            self.run_dims()[:] = start
        places = {"input": lambda i: inputs[i].ctypes.data, "output": lambda i: outputs[i].ctypes.data,
                  "weights": lambda off: self.weights.ctypes.data + off,
                  "arena": lambda off: self.arena.ctypes.data + off,
                  "status": lambda off: self.status.ctypes.data + off}
        for step in self.plan["launches"]:
            launch(self.lib, step["kernel"], step["grid"], step["block"],
                   [places[s](v) for s, v in step["args"]])
        if self.status[0]:
            raise IndexError(f"kernel status {self.status[0]}")
        if self.dims:  # each output dense at its actual shape, at the front of its buffer
            env = {d.name: int(v) for d, v in zip(self.dims, self.run_dims())}
            shapes = [tuple(d.evaluate(env) if isinstance(d, Dim) else int(d) for d in t.shape)
                      for t in self.output_types]
            outputs = [a.reshape(-1)[:int(np.prod(shape, dtype=np.int64))].reshape(shape)
                       for a, shape in zip(outputs, shapes)]
        return {o.name: array for o, array in zip(self.outputs, outputs)}


def check(emulated: Emulated, path: Path, feeds: dict[str, np.ndarray], rtol: float, atol: float) -> None:
    ours = emulated.run(feeds)
    for name, value in onnxruntime_outputs(path, feeds).items():
        np.testing.assert_allclose(ours[name], value, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_kernel_matches_onnxruntime(case: Case, tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_model(case.make(rng), tmp_path)
    emulated = Emulated(path, tmp_path)
    atol = 1e-4 if case.name.startswith(("matmul", "layernorm")) else case.atol
    for _ in range(2):  # fresh inputs; poisoned buffers each run
        check(emulated, path, case.feeds(rng), case.rtol, atol)


def test_gather_index_out_of_range_sets_the_status(tmp_path: Path, rng: np.random.Generator) -> None:
    case = next(c for c in CASES if c.name == "gather")
    emulated = Emulated(write_model(case.make(rng), tmp_path), tmp_path)
    ids = rng.integers(0, 50, (2, 9), dtype=np.int64)
    ids[0, 3] = -51
    with pytest.raises(IndexError):
        emulated.run({"ids": ids})


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer", "mobilenet"])
def test_reference_model(name: str, tmp_path: Path, rng: np.random.Generator) -> None:
    model = REFERENCE_MODELS.get(name) or ReferenceModel(name, MOBILENET, {"image": (1, 3, 64, 64)})
    emulated = Emulated(model.path, tmp_path, dict(model.shapes))
    rtol = 1e-4 if name == "mlp" else 1e-3
    check(emulated, model.path, model.random_feeds(rng), rtol, 1e-4)


# ---------------------------------------------------------------- the tensor-core GEMM
# mma.sync is emulated with the PTX fragment layouts and bit-exact conversions (emulate_cuda.h);
# results against the numpy rounding model of mma_precision.py (MODEL_RTOL of max |output|) and
# the exact float64 product (EXACT_RTOL per precision)

@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", MMA_CASES, ids=lambda c: c.name)
def test_emulated_kernel_matches_the_rounding_model(case: MmaCase, precision: str, tmp_path: Path,
                                                    rng: np.random.Generator) -> None:
    path = write_model(case.make(rng), tmp_path)
    emulated = Emulated(path, tmp_path, precision=precision)
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    feeds = case.feeds(rng)
    ours = emulated.run(feeds)["y"]
    model = case.forward(feeds, weights, precision)
    exact = case.forward(feeds, weights, "fp32")
    assert_close_to_max(ours, model, MODEL_RTOL, f"{case.name} {precision} vs the rounding model")
    assert_close_to_max(ours, exact, EXACT_RTOL[precision], f"{case.name} {precision} vs float64")
    # the inputs really were rounded: the model explains the output better than exact math
    assert np.max(np.abs(ours - model)) < np.max(np.abs(ours - exact))


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_emulated_encoder_at_reduced_precision(precision: str, tmp_path: Path,
                                               rng: np.random.Generator) -> None:
    """A 2-layer MiniLM-shaped encoder (hidden 96) with its GEMMs on the emulated tensor cores
    and its activations stored in 16 bits, against onnxruntime in float32 within
    WHOLE_MODEL_RTOL of max |output| (measured here: fp16 ~1.2e-3, bf16 ~8e-3; ~5e-4 and ~4e-3
    while activations were float32)."""
    import sys

    sys.path.insert(0, str(MODELS_DIR))
    from make_encoder import encoder_feeds, make_encoder

    path = write_model(make_encoder(batch=2, seq=40, layers=2, vocab=500, hidden=96, heads=4,
                                    ffn=192, seed=int(rng.integers(1 << 30))), tmp_path)
    emulated = Emulated(path, tmp_path, precision=precision)
    assert any(n.ann.kernel is not None and n.ann.kernel.candidate == "cuda_matmul_mma"
               for n in emulated.graph.nodes)
    storage = {"fp16": DType.F16, "bf16": DType.BF16}[precision]
    assert emulated.graph.activation_storage is storage
    stored = [v for v, t in emulated.graph.types.items() if t.dtype is storage]
    gemms = [n for n in emulated.graph.nodes if n.ann.kernel_name == "cuda_matmul_mma"]
    assert all(n.inputs[0] in stored for n in gemms[1:])  # all but the first read 16-bit A
    feeds = encoder_feeds(rng, 2, 40, 500)
    ours = emulated.run(feeds)
    for name, value in onnxruntime_outputs(path, feeds).items():
        assert_close_to_max(ours[name], value, WHOLE_MODEL_RTOL[precision], f"{name} {precision}")


# ---------------------------------------------------------------- fused attention
# pyc.Attention's kernels (attention_cases.py states the references and tolerances): the
# float32 one on odd shapes, with padding masks, and in the encoder; the tensor-core one at
# fp16 / bf16 (the reduced-precision encoder above runs it too)

def attention_kernels(emulated: Emulated) -> list[str]:
    return [n.ann.kernel_name for n in emulated.graph.nodes]


@pytest.mark.parametrize("batch, s, d, t, e, scale, mask", SHAPES)
def test_emulated_attention_matches_float64(batch: tuple[int, ...], s: int, d: int, t: int, e: int,
                                            scale: float | None, mask: bool,
                                            rng: np.random.Generator, tmp_path: Path) -> None:
    model = attention_model(batch, s, d, t, e, scale, mask)
    emulated = Emulated(write_model(model, tmp_path), tmp_path)
    assert attention_kernels(emulated) == ["cuda_attention_flash"]
    for _ in range(2):  # fresh inputs, poisoned output each run
        feeds = attention_feeds(model, rng)
        got = emulated.run(feeds)["y"]
        np.testing.assert_allclose(got, float64_attention(feeds, scale), rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("rows", [8, 4])
@pytest.mark.parametrize("batch, s, d, t, e, scale, mask", [SHAPES[1], SHAPES[2], SHAPES[5]])
def test_emulated_attention_in_smaller_row_blocks(batch: tuple[int, ...], s: int, d: int, t: int,
                                                  e: int, scale: float | None, mask: bool,
                                                  rows: int, rng: np.random.Generator,
                                                  tmp_path: Path) -> None:
    """A tuning database's `attn_rows` (8: two rows a warp; 4: one), against float64 as the
    default blocks."""
    model = attention_model(batch, s, d, t, e, scale, mask)
    emulated = Emulated(write_model(model, tmp_path), tmp_path, tuning=flash_rows(rows))
    [launch] = [x for x in emulated.plan["launches"] if x["op"] == "pyc.Attention"]
    assert launch["grid"][0] == math.prod(batch) * math.ceil(s / rows)
    feeds = attention_feeds(model, rng)
    got = emulated.run(feeds)["y"]
    np.testing.assert_allclose(got, float64_attention(feeds, scale), rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("s", [7, 33])
def test_emulated_attention_with_a_padding_mask(s: int, rng: np.random.Generator,
                                                tmp_path: Path) -> None:
    """The MiniLM/BERT mask [B, 1, 1, T] (-10000 on the padded tail of the first sequence),
    broadcast over heads and query rows: the padded keys really weigh nothing."""
    model = minilm_attention(2, 3, s, 16)
    emulated = Emulated(write_model(model, tmp_path), tmp_path)
    assert attention_kernels(emulated) == ["cuda_attention_flash"]
    feeds = attention_feeds(model, rng)
    mask = np.zeros((2, 1, 1, s), np.float32)
    mask[0, ..., s // 2:] = -10000
    feeds["mask"] = mask
    got = emulated.run(feeds)["y"]
    scale = 16 ** -0.5
    np.testing.assert_allclose(got, float64_attention(feeds, scale), rtol=1e-4, atol=2e-5)
    kept = {"q": feeds["q"][:1], "kt": feeds["kt"][:1, ..., : s // 2],
            "v": feeds["v"][:1, :, : s // 2], "mask": np.zeros((1, 1, 1, s // 2), np.float32)}
    np.testing.assert_allclose(got[:1], float64_attention(kept, scale), rtol=1e-4, atol=2e-5)


def test_emulated_encoder_takes_the_fused_attention(tmp_path: Path, rng: np.random.Generator) -> None:
    """A 2-layer MiniLM-shaped encoder (hidden 96, 4 heads of 24, sequence 40, padded tails) in
    float32: each layer's attention is one cuda_attention_flash launch, and the whole model
    matches onnxruntime (rtol 1e-3, atol 1e-4, as the other transformers)."""
    import sys

    sys.path.insert(0, str(MODELS_DIR))
    from make_encoder import encoder_feeds, make_encoder

    path = write_model(make_encoder(batch=2, seq=40, layers=2, vocab=500, hidden=96, heads=4,
                                    ffn=192, seed=int(rng.integers(1 << 30))), tmp_path)
    emulated = Emulated(path, tmp_path)
    assert attention_kernels(emulated).count("cuda_attention_flash") == 2
    check(emulated, path, encoder_feeds(rng, 2, 40, 500), 1e-3, 1e-4)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("batch, s, d, t, e, scale, mask", MMA_SHAPES)
def test_emulated_tensor_core_attention(batch: tuple[int, ...], s: int, d: int, t: int, e: int,
                                        scale: float | None, mask: bool, precision: str,
                                        rng: np.random.Generator, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # the cost model prefers the float32 kernel below ATTENTION_MMA_MIN_KEYS keys: these
    # shapes test the tensor-core one
    monkeypatch.setattr("pyc_cli.targets.cuda.kernels.ATTENTION_MMA_MIN_KEYS", 1)
    model = attention_model(batch, s, d, t, e, scale, mask)
    emulated = Emulated(write_model(model, tmp_path), tmp_path, precision=precision)
    assert attention_kernels(emulated) == ["cuda_attention_mma"]
    feeds = attention_feeds(model, rng)
    got = emulated.run(feeds)["y"]
    exact = float64_attention(feeds, scale)
    assert_close_to_max(got, exact, EXACT_RTOL[precision], f"{precision} vs float64")
    if t <= MMA_TILE_KEYS:
        rounded = rounded_attention(feeds, scale, precision)
        assert_close_to_max(got, rounded, ROUNDED_RTOL, f"{precision} vs the rounding model")
        # the inputs really were rounded: the model explains the output better than exact math
        assert np.max(np.abs(got - rounded)) < np.max(np.abs(got - exact))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_emulated_attention_with_infinite_masks(precision: str, rng: np.random.Generator,
                                                tmp_path: Path) -> None:
    """A causal mask of -inf (keys past the row), and rows from 70 on masking the whole first
    64-key tile too: the online softmax starts from a row with no finite score yet and must
    add nothing for it (no NaN from -inf - -inf)."""
    s = 100
    model = attention_model((2,), s, 16, s, 16, 0.25, True)
    emulated = Emulated(write_model(model, tmp_path), tmp_path, precision=precision)
    feeds = attention_feeds(model, rng)
    rows, keys = np.indices((s, s))
    feeds["mask"] = np.where((keys > rows) | ((rows >= 70) & (keys < 64)), -np.inf, 0).astype(np.float32)
    got = emulated.run(feeds)["y"]
    exact = float64_attention(feeds, 0.25)
    assert np.all(np.isfinite(got))
    assert_close_to_max(got, exact, 1e-5 if precision == "fp32" else EXACT_RTOL[precision],
                        f"{precision} vs float64")


# the heads' Transposes folded into pyc.Attention (fuse_attention): the kernels read Q, K, V
# through the strides of the [B, S, H, D] views and write [B, S, H, E]; against onnxruntime
# with the attention tests' tolerances (float32 rtol 1e-4, atol 2e-5; fp16 / bf16 EXACT_RTOL
# of max |output|), and no Transpose left to launch

def _folded_attention(emulated: Emulated) -> str:
    ops = [n.op for n in emulated.graph.nodes]
    assert "Transpose" not in ops
    [node] = [n for n in emulated.graph.nodes if n.op == "pyc.Attention"]
    assert "q_perm" in node.attrs and "y_perm" in node.attrs
    return node.ann.kernel_name  # type: ignore[return-value]


@pytest.mark.parametrize("shape", HEAD_SHAPES, ids=str)
@pytest.mark.parametrize("k_transposed", [True, False])
def test_emulated_attention_reads_the_heads_through_strides(shape: tuple, k_transposed: bool,  # type: ignore[type-arg]
                                                            rng: np.random.Generator,
                                                            tmp_path: Path) -> None:
    model = head_attention_model(*shape, rng, k_transposed=k_transposed)
    path = write_model(model, tmp_path)
    emulated = Emulated(path, tmp_path)
    assert _folded_attention(emulated) == "cuda_attention_flash"
    # no strided copy (the output, a view of the attention's, is copied out as any view is)
    assert [s["op"] for s in emulated.plan["launches"]] == ["pyc.Attention", "pyc.Copy"]
    for _ in range(2):  # fresh inputs, poisoned output each run
        check(emulated, path, head_feeds(model, rng), 1e-4, 2e-5)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("shape", HEAD_MMA_SHAPES, ids=str)
@pytest.mark.parametrize("project", [False, True])
def test_emulated_tensor_core_attention_reads_the_heads_through_strides(
        shape: tuple, project: bool, precision: str, rng: np.random.Generator,  # type: ignore[type-arg]
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`project`: Q, K, V come from GEMMs, stored in 16 bits, read as their bits."""
    monkeypatch.setattr("pyc_cli.targets.cuda.kernels.ATTENTION_MMA_MIN_KEYS", 1)
    model = head_attention_model(*shape, rng, project=project)
    path = write_model(model, tmp_path)
    emulated = Emulated(path, tmp_path, precision=precision)
    assert _folded_attention(emulated) == "cuda_attention_mma"
    [node] = [n for n in emulated.graph.nodes if n.op == "pyc.Attention"]
    storage = {"fp16": DType.F16, "bf16": DType.BF16}[precision]
    assert all((emulated.graph.types[v].dtype is storage) == project for v in node.inputs[:3])
    feeds = head_feeds(model, rng)
    ours = emulated.run(feeds)["y"]
    [want] = onnxruntime_outputs(path, feeds).values()
    assert_close_to_max(ours, want, EXACT_RTOL[precision], f"{precision} vs onnxruntime")


@pytest.mark.parametrize("precision, mma", [("fp32", False), ("fp16", False), ("fp16", True),
                                            ("bf16", True)])
@pytest.mark.parametrize("shape", SELF_SHAPES, ids=str)
def test_emulated_attention_reads_the_parts_of_one_projection(
        shape: tuple, precision: str, mma: bool, rng: np.random.Generator,  # type: ignore[type-arg]
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Q, K, V projected from one input: one GEMM over the concatenated weights (so 2 launches
    but the output copy), the attention reading its three parts; against onnxruntime (float32
    as the whole transformers, rtol 1e-3, atol 1e-4, with the GEMM in front; fp16 / bf16
    EXACT_RTOL of max |output|)."""
    if mma:
        monkeypatch.setattr("pyc_cli.targets.cuda.kernels.ATTENTION_MMA_MIN_KEYS", 1)
    model = head_attention_model(*shape, rng, self_attention=True)
    path = write_model(model, tmp_path)
    emulated = Emulated(path, tmp_path, precision=None if precision == "fp32" else precision)
    assert _folded_attention(emulated) == ("cuda_attention_mma" if mma else "cuda_attention_flash")
    assert [s["op"] for s in emulated.plan["launches"]] == ["MatMul", "pyc.Attention", "pyc.Copy"]
    [node] = [n for n in emulated.graph.nodes if n.op == "pyc.Attention"]
    assert len(set(node.inputs[:3])) == 1 and "kt_select" in node.attrs
    for _ in range(2):
        feeds = head_feeds(model, rng)
        ours = emulated.run(feeds)["y"]
        [want] = onnxruntime_outputs(path, feeds).values()
        if precision == "fp32":
            np.testing.assert_allclose(ours, want, rtol=1e-3, atol=1e-4)
        else:
            assert_close_to_max(ours, want, EXACT_RTOL[precision], f"{precision} vs onnxruntime")
