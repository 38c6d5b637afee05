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

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import MODELS_DIR, onnxruntime_outputs
from cuda_emulation import CXX
from helpers import decisions, write_model
from onnx import helper
from ops.test_references import attention_feeds, attention_model
from targets.cpu.test_attention_kernel import float64_attention
from test_cuda_emulated import Emulated

from pyc_cli.api import compile_graph

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
