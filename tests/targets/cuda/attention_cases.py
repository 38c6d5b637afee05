"""Shapes and numpy models for the CUDA fused attention kernels (pyc.Attention), shared by the
emulated tests (test_cuda_emulated.py), the build / NVRTC tests (test_cuda_attention.py) and the
GPU tests (test_cuda_gpu.py).

float32 (cuda_attention_flash): against numpy float64, rtol 1e-4, atol 2e-5 (float32 sums of D
products and T weighted values, as the CPU kernel's test).
fp16 / bf16 (cuda_attention_mma): Q, Kt, V and the probabilities rounded to 16 bits for
mma.sync, float32 accumulation. Against `rounded_attention`, a numpy model of those roundings,
where the keys fit one 64-key tile (the kernel's probabilities are then relative to the row's
final maximum, as the model's) within ROUNDED_RTOL of max |output| (float32 sums; a probability
whose float32 value sits at a rounding boundary may round one 16-bit step apart); against
float64 within the GEMM's EXACT_RTOL (mma_precision.py), always."""

from __future__ import annotations

import numpy as np
import onnx
from mma_precision import round_to
from ops.test_references import attention_model
from targets.cpu.test_attention_kernel import attention_weights, float64_attention

__all__ = ["float64_attention"]  # the float32 reference, shared with the CPU kernel's test

ROUNDED_RTOL = 2e-3
MMA_TILE_KEYS = 64  # keys per tile of the tensor-core kernel (kernel_context._attention_mma)

SHAPES = [  # batch, S, D, T, E, scale, mask [S, T]: the float32 kernel, emulated
    ((1,), 1, 16, 1, 16, None, False),
    ((2,), 7, 16, 7, 16, 0.25, True),
    ((1, 3), 33, 32, 33, 32, 0.1767767, True),
    ((2,), 1, 64, 128, 64, 0.125, True),          # one query row, two 64-key tiles
    ((1, 2), 128, 32, 128, 32, 0.1767767, True),  # MiniLM-L6's head shape
    ((1,), 33, 64, 7, 17, None, True),            # a value width that is not a multiple of 32
    ((1,), 7, 128, 33, 128, 0.088, True),         # 128-wide heads: 32-key tiles
]
MMA_SHAPES = [  # the tensor-core kernel, emulated
    ((2, 64), 70, 16, 9, 16, 0.5, True),        # 4-warp blocks (128 of them), a partial one
    ((64,), 40, 16, 20, 16, 0.5, True),         # 2-warp blocks (128), a partial one
    ((2, 3), 7, 16, 33, 32, 0.25, True),
    ((1,), 33, 24, 64, 17, None, True),         # D and E padded to 16s, exactly one key tile
    ((1, 2), 33, 64, 128, 64, 0.125, True),     # two key tiles: the online rescaling
    ((1,), 7, 128, 70, 128, 0.088, True),       # 128-wide heads, a partial second tile
]
GPU_SHAPES = [  # on the GPU, at every precision: sizes the emulation cannot afford too
    ((1,), 1, 16, 1, 16, None, False),
    ((2, 3), 33, 32, 33, 32, 0.1767767, True),
    ((1, 12), 128, 32, 128, 32, 0.1767767, True),   # MiniLM-L6 at sequence 128
    ((1,), 33, 24, 64, 17, None, True),
    ((2, 12), 512, 64, 512, 64, 0.125, True),       # BERT-base heads at sequence 512
    ((1, 4), 1000, 128, 1000, 128, 0.088, True),    # 128-wide heads, partial tiles
]


def rounded_attention(feeds: dict[str, np.ndarray], scale: float | None,
                      precision: str) -> np.ndarray:
    """The tensor-core kernel's arithmetic in float64 with its roundings: Q, Kt, V, then the
    probabilities (relative to the row maximum) rounded to `precision` before they weigh V;
    the denominator sums them unrounded."""
    q, kt, v = (round_to(feeds[n], precision) for n in ("q", "kt", "v"))
    weights = attention_weights(q, kt, feeds, scale)
    rounded = round_to(weights.astype(np.float32), precision)
    return (rounded @ v) / weights.sum(axis=-1, keepdims=True)


def minilm_attention(batch: int, heads: int, s: int, d: int) -> onnx.ModelProto:
    """attention_model's pattern with the exported encoders' mask: [B, 1, 1, T]."""
    model = attention_model((batch, heads), s, d, s, d, d ** -0.5, True)
    mask = model.graph.input[3]
    del mask.type.tensor_type.shape.dim[:]
    for extent in (batch, 1, 1, s):
        mask.type.tensor_type.shape.dim.add().dim_value = extent
    return model
