"""The CUDA fused attention kernel (cuda_attention_flash, attention.cu.j2) without a GPU: run in
the CPU emulation of CUDA (emulate_cuda.h) against numpy float64 on odd shapes (S, T = 1, 7, 33,
128: one key tile, a partial tile, several tiles; head widths 16 to 128; with and without a
scale and a mask, the mask [S, T] or the MiniLM/BERT [B, 1, 1, T]); where the kernel cannot take
the pattern (heads wider than 128) the build keeps MatMul -> Softmax -> MatMul; the MiniLM-shaped
encoder takes the kernel and matches onnxruntime.

Tolerances: float32 sums of D products and T weighted values against float64, rtol 1e-4,
atol 2e-5 (as the CPU kernel's test); the encoder against onnxruntime rtol 1e-3, atol 1e-4 (as
the other transformers)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import MODELS_DIR, onnxruntime_outputs
from cuda_emulation import CXX
from helpers import decisions, write_model
from mma_precision import EXACT_RTOL, assert_close_to_max, round_to
from onnx import helper
from ops.test_references import attention_feeds, attention_model
from targets.cpu.test_attention_kernel import float64_attention
from test_cuda_emulated import Emulated

from pyc_cli.api import compile_graph
from pyc_cli.targets.cuda import bindings, toolchain
from pyc_cli.targets.cuda.target import kernel_templates

needs_nvrtc = pytest.mark.skipif(not bindings.available(),
                                 reason='the NVRTC wheel is not installed (pip install ".[cuda]")')
pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler (g++ or clang++) to emulate with")

SHAPES = [  # batch, S, D, T, E, scale, mask [S, T]
    ((1,), 1, 16, 1, 16, None, False),
    ((2,), 7, 16, 7, 16, 0.25, True),
    ((1, 3), 33, 32, 33, 32, 0.1767767, True),
    ((2,), 1, 64, 128, 64, 0.125, True),       # one query row, two 64-key tiles
    ((1, 2), 128, 32, 128, 32, 0.1767767, True),  # MiniLM-L6's head shape
    ((1,), 33, 64, 7, 17, None, True),          # a value width that is not a multiple of 32
    ((1,), 7, 128, 33, 128, 0.088, True),       # 128-wide heads: 32-key tiles
]


def kernel_of(emulated: Emulated) -> list[str]:
    return [n.ann.kernel_name for n in emulated.graph.nodes]


@pytest.mark.parametrize("batch, s, d, t, e, scale, mask", SHAPES)
def test_emulated_attention_matches_float64(batch: tuple[int, ...], s: int, d: int, t: int, e: int,
                                            scale: float | None, mask: bool,
                                            rng: np.random.Generator, tmp_path: Path) -> None:
    model = attention_model(batch, s, d, t, e, scale, mask)
    emulated = Emulated(write_model(model, tmp_path), tmp_path)
    assert kernel_of(emulated) == ["cuda_attention_flash"]
    for _ in range(2):  # fresh inputs, poisoned output each run
        feeds = attention_feeds(model, rng)
        got = emulated.run(feeds)["y"]
        np.testing.assert_allclose(got, float64_attention(feeds, scale), rtol=1e-4, atol=2e-5)


def minilm_attention(batch: int, heads: int, s: int, d: int) -> onnx.ModelProto:
    """attention_model's pattern with the exported encoders' mask: [B, 1, 1, T]."""
    model = attention_model((batch, heads), s, d, s, d, d ** -0.5, True)
    mask = model.graph.input[3]
    del mask.type.tensor_type.shape.dim[:]
    for extent in (batch, 1, 1, s):
        mask.type.tensor_type.shape.dim.add().dim_value = extent
    return model


@pytest.mark.parametrize("s", [7, 33])
def test_emulated_attention_with_a_padding_mask(s: int, rng: np.random.Generator,
                                                tmp_path: Path) -> None:
    """Rows of keys masked per batch element (the padded tail of each sequence, -10000 as the
    encoders make it), the mask broadcast over heads and query rows."""
    model = minilm_attention(2, 3, s, 16)
    emulated = Emulated(write_model(model, tmp_path), tmp_path)
    assert kernel_of(emulated) == ["cuda_attention_flash"]
    feeds = attention_feeds(model, rng)
    keep = np.ones((2, 1, 1, s), np.float32)
    keep[0, ..., s // 2:] = 0  # the first sequence half padding
    feeds["mask"] = ((1 - keep) * -10000).astype(np.float32)
    got = emulated.run(feeds)["y"]
    scale = 16 ** -0.5
    np.testing.assert_allclose(got, float64_attention(feeds, scale), rtol=1e-4, atol=2e-5)
    # the padded keys really weigh nothing: the first sequence's outputs are those of its kept keys
    kept = {"q": feeds["q"][:1], "kt": feeds["kt"][:1, ..., : s // 2], "v": feeds["v"][:1, :, : s // 2],
            "mask": np.zeros((1, 1, 1, s // 2), np.float32)}
    np.testing.assert_allclose(got[:1], float64_attention(kept, scale), rtol=1e-4, atol=2e-5)


def test_heads_wider_than_the_kernel_keep_the_unfused_pattern(tmp_path: Path) -> None:
    """D = 160 > ATTENTION_MAX_HEAD: no CUDA attention kernel applies, the decision log says so,
    and the batched MatMuls and the softmax run as before."""
    path = write_model(attention_model((2,), 5, 160, 6, 8, 0.1, True), tmp_path)
    graph, ctx = compile_graph(path, target="cuda")
    assert [n.op for n in graph.nodes] == ["MatMul", "Softmax", "MatMul"]
    assert decisions(ctx, "skip_attention")


def test_emulated_encoder_takes_the_fused_attention(tmp_path: Path, rng: np.random.Generator) -> None:
    """A 2-layer MiniLM-shaped encoder (hidden 96, 4 heads of 24, sequence 40, padded tails) for
    CUDA in float32: each layer's attention is one cuda_attention_flash launch, and the whole
    model matches onnxruntime."""
    sys.path.insert(0, str(MODELS_DIR))
    from make_encoder import encoder_feeds, make_encoder

    path = write_model(make_encoder(batch=2, seq=40, layers=2, vocab=500, hidden=96, heads=4,
                                    ffn=192, seed=int(rng.integers(1 << 30))), tmp_path)
    emulated = Emulated(path, tmp_path)
    assert kernel_of(emulated).count("cuda_attention_flash") == 2
    assert "Softmax" not in [n.op for n in emulated.graph.nodes]
    feeds = encoder_feeds(rng, 2, 40, 500)
    ours = emulated.run(feeds)
    for name, value in onnxruntime_outputs(path, feeds).items():
        np.testing.assert_allclose(ours[name], value, rtol=1e-3, atol=1e-4, err_msg=name)


def test_probabilities_read_elsewhere_keep_the_unfused_pattern(tmp_path: Path) -> None:
    """The probabilities as a second graph output: nothing fuses (the scores would be needed)."""
    model = attention_model((2,), 5, 16, 6, 8, None, False)
    model.graph.output.append(helper.make_tensor_value_info("p", onnx.TensorProto.FLOAT, [2, 5, 6]))
    graph, _ = compile_graph(write_model(model, tmp_path), target="cuda")
    assert "pyc.Attention" not in [n.op for n in graph.nodes]


# ---------------------------------------------------------------- the tensor-core attention
# --precision fp16 / bf16: Q, Kt, V and the probabilities rounded to 16 bits for mma.sync,
# float32 accumulation. Against a numpy model of that rounding where the keys fit one 64-key
# tile (then the kernel's probabilities are relative to the row's final maximum, as the
# model's): within ROUNDED_RTOL of max |output| (float32 sums; a probability whose float32
# value sits at a rounding boundary may round one 16-bit step apart); against float64 within
# the GEMM's EXACT_RTOL, always.
ROUNDED_RTOL = 2e-3
MMA_SHAPES = [  # batch, S, D, T, E, scale, mask [S, T]
    ((2, 64), 70, 16, 9, 16, 0.5, True),       # 4-warp blocks (128 of them), a partial one
    ((2, 3), 7, 16, 33, 32, 0.25, True),
    ((1,), 33, 24, 64, 17, None, True),         # D and E padded to 16s, exactly one key tile
    ((1, 2), 33, 64, 128, 64, 0.125, True),     # two key tiles: the online rescaling
    ((1,), 7, 128, 70, 128, 0.088, True),       # 128-wide heads, a partial second tile
]


def rounded_attention(feeds: dict[str, np.ndarray], scale: float | None,
                      precision: str) -> np.ndarray:
    """The kernel's arithmetic in float64 with its roundings: Q, Kt, V, then the
    probabilities (relative to the row maximum) rounded to `precision` before they weigh V;
    the denominator sums them unrounded."""
    q, kt, v = (round_to(feeds[n], precision) for n in ("q", "kt", "v"))
    scores = q @ kt
    if scale is not None:
        scores = scores * np.float64(np.float32(scale))
    if "mask" in feeds:
        scores = scores + feeds["mask"].astype(np.float64)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    rounded = round_to(weights.astype(np.float32), precision)
    return (rounded @ v) / weights.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("batch, s, d, t, e, scale, mask", MMA_SHAPES)
def test_emulated_tensor_core_attention(batch: tuple[int, ...], s: int, d: int, t: int, e: int,
                                        scale: float | None, mask: bool, precision: str,
                                        rng: np.random.Generator, tmp_path: Path) -> None:
    model = attention_model(batch, s, d, t, e, scale, mask)
    emulated = Emulated(write_model(model, tmp_path), tmp_path, precision=precision)
    assert kernel_of(emulated) == ["cuda_attention_mma"]
    feeds = attention_feeds(model, rng)
    got = emulated.run(feeds)["y"]
    exact = float64_attention(feeds, scale)
    assert_close_to_max(got, exact, EXACT_RTOL[precision], f"{precision} vs float64")
    if t <= 64:
        rounded = rounded_attention(feeds, scale, precision)
        assert_close_to_max(got, rounded, ROUNDED_RTOL, f"{precision} vs the rounding model")
        # the inputs really were rounded: the model explains the output better than exact math
        assert np.max(np.abs(got - rounded)) < np.max(np.abs(got - exact))


@pytest.mark.parametrize("precision, kernel", [("fp32", "cuda_attention_flash"),
                                               ("tf32", "cuda_attention_flash"),
                                               ("fp16", "cuda_attention_mma"),
                                               ("bf16", "cuda_attention_mma")])
def test_each_precision_picks_its_attention_kernel(precision: str, kernel: str,
                                                   tmp_path: Path) -> None:
    """The encoder's attention: tensor cores at fp16 / bf16 (the reduced-precision encoder test
    of test_cuda_emulated.py then runs it), the float32 kernel at fp32 and tf32."""
    sys.path.insert(0, str(MODELS_DIR))
    from make_encoder import make_encoder

    path = write_model(make_encoder(batch=1, seq=24, layers=1, vocab=50, hidden=64, heads=2,
                                    ffn=64), tmp_path)
    graph, _ = compile_graph(path, target="cuda", precision=precision)
    assert [n.ann.kernel_name for n in graph.nodes if n.op == "pyc.Attention"] == [kernel]


class ForcedWarps:
    """A tuning database giving pyc.Attention the tensor-core kernel with `attn_warps`."""

    def __init__(self, warps: int) -> None:
        self.warps = warps

    def lookup(self, signature):  # noqa: ANN001, ANN201
        from pyc_cli.ir.annotations import KernelChoice

        if signature.op == "pyc.Attention":
            return KernelChoice("cuda_attention_mma", {"attn_warps": self.warps})
        return None


def emit(model: onnx.ModelProto, precision: str, tmp_path: Path,
         tuning: ForcedWarps | None = None) -> tuple[str, list[dict]]:  # type: ignore[type-arg]
    from pyc_cli.abi import io_infos
    from pyc_cli.planning.weights import layout_weights
    from pyc_cli.targets.base import ModelInfo

    graph, ctx = compile_graph(write_model(model, tmp_path), target="cuda", precision=precision,
                               tuning=tuning)  # type: ignore[arg-type]
    plan = ctx.artifacts["memory_plan"]
    layout = layout_weights(graph, {}, ctx.target.constant_conversions(graph))  # type: ignore[union-attr]
    info = ModelInfo("test", io_infos(graph, graph.inputs),
                     io_infos(graph, graph.outputs, graph.public_outputs()), plan.arena_bytes,
                     layout.total_bytes, 0, "test")
    sources = ctx.target.emit(graph, plan, layout, info)  # type: ignore[union-attr]
    return sources["model.cu"], json.loads(sources["launches.json"])["launches"]


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_90", "sm_80"])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("warps", [4, 2, 1])
@pytest.mark.parametrize("shape", [MMA_SHAPES[2], MMA_SHAPES[4]], ids=["d24_e17", "d128_e128"])
def test_nvrtc_compiles_the_tensor_core_attention(shape: tuple, warps: int, precision: str,  # type: ignore[type-arg]
                                                  arch: str, tmp_path: Path) -> None:
    source, launches = emit(attention_model(*shape), precision, tmp_path, ForcedWarps(warps))
    assert [step["block"] for step in launches] == [[32 * warps, 1, 1]]
    compiled = toolchain.compile_source(source, arch, kernel_templates(source))
    assert compiled.cubin[:4] == b"\x7fELF"
    assert "warning" not in compiled.log.lower(), compiled.log
    assert "mma.sync.aligned.m16n8k16" in compiled.ptx and "ldmatrix" in compiled.ptx
