"""A numpy model of the tensor-core GEMM's rounding (--precision tf32 / fp16 / bf16), shared by
the emulated and the GPU tests: each GEMM input is rounded to the precision's type as the
kernel's conversions do (float16 / bfloat16 to nearest even, TF32 to nearest with ties away
from zero), products and sums then exact in float64. The kernel sums in float32, so it agrees
with this model to float32 accumulation error (MODEL_RTOL of the largest |output|), and with the
exact float64 product only to the precision's own error (EXACT_RTOL, likewise relative to the
largest |output|: fp16 rtol ~2e-2, tf32 ~5e-3 as issue #14 states them)."""

from __future__ import annotations

import numpy as np

from pyc_cli.planning.weights import from_bfloat16_bits, to_bfloat16_bits

PRECISIONS = ("tf32", "fp16", "bf16")
# |kernel - rounding model| <= MODEL_RTOL * max|model| (float32 sums of a few hundred terms)
MODEL_RTOL = 1e-4
# |kernel - exact float64| <= EXACT_RTOL[p] * max|exact| for one GEMM of random normal inputs;
# a model of many GEMMs (the encoder) gets WHOLE_MODEL_RTOL[p]
EXACT_RTOL = {"fp32": 1e-5, "tf32": 5e-3, "fp16": 2e-2, "bf16": 5e-2}
# (a 2-layer encoder measured on the emulation: tf32 and fp16 ~5e-4, bf16 ~4e-3)
WHOLE_MODEL_RTOL = {"fp32": 1e-3, "tf32": 5e-3, "fp16": 5e-3, "bf16": 3e-2}


def model_rtol(k: int) -> float:
    """MODEL_RTOL for a GEMM of depth k on real tensor cores: their float32 accumulation
    truncates and aligns a step's products to the largest one (Fasi et al. 2021, "Numerical
    behavior of NVIDIA tensor cores"), an error that grows with the number of mma steps; a
    wrong fragment or tile index still errs by O(1)."""
    return MODEL_RTOL * max(1.0, k / 256)


def to_tf32(x: np.ndarray) -> np.ndarray:
    """float32 -> TF32 (10-bit mantissa, to nearest, ties away from zero), as float32."""
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32)
    finite = (bits & 0x7F800000) != 0x7F800000
    rounded = ((bits.astype(np.uint64) + 0x1000) & 0xFFFFE000).astype(np.uint32)
    return np.where(finite, rounded, bits).view(np.float32)


def round_to(x: np.ndarray, precision: str) -> np.ndarray:
    """What the tensor cores read of float32 `x` at `precision` (as float64)."""
    x = np.asarray(x, np.float32)
    if precision == "fp32":
        return x.astype(np.float64)
    if precision == "tf32":
        return to_tf32(x).astype(np.float64)
    if precision == "fp16":
        return x.astype(np.float16).astype(np.float64)
    if precision == "bf16":
        return from_bfloat16_bits(to_bfloat16_bits(x)).astype(np.float64)
    raise ValueError(precision)


def matmul(a: np.ndarray, b: np.ndarray, precision: str) -> np.ndarray:
    """The model of the kernel's A B: rounded inputs, exact float64 arithmetic."""
    return np.matmul(round_to(a, precision), round_to(b, precision))


def assert_close_to_max(actual: np.ndarray, expected: np.ndarray, rtol: float, what: str) -> None:
    """|actual - expected| <= rtol * max|expected| everywhere (and no NaN)."""
    scale = max(float(np.max(np.abs(expected))), 1e-30)
    error = float(np.max(np.abs(np.asarray(actual, np.float64) - expected)))
    assert np.all(np.isfinite(actual)), f"{what}: non-finite output"
    assert error <= rtol * scale, f"{what}: max error {error:.3g} > {rtol} x max|expected| {scale:.3g}"
