"""Error metrics of one value against the reference, and the tolerances that judge them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir.types import is_float_numpy

# (rtol, atol) per floating dtype; float16 and bfloat16 allow about two ulps. Integers and bools
# are exact.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-4, 1e-5),
    "float64": (1e-7, 1e-9),
    "float16": (2e-3, 1e-3),
    "bfloat16": (1.6e-2, 8e-3),
}


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float

    @classmethod
    def for_dtype(cls, dtype: np.dtype, rtol: float | None = None,
                  atol: float | None = None) -> Tolerance:
        """The default for `dtype`, with --rtol/--atol overriding it for floating types."""
        dtype = np.dtype(dtype)
        if not is_float_numpy(dtype):
            return cls(0.0, 0.0)
        default_rtol, default_atol = DEFAULT_TOLERANCES.get(dtype.name, DEFAULT_TOLERANCES["float32"])
        return cls(default_rtol if rtol is None else rtol, default_atol if atol is None else atol)


@dataclass(frozen=True)
class ValueComparison:
    """How far one value is from the reference. `max_rel_error` divides by max(|reference|, atol)
    (atol 1 for exact types) so elements near zero report no meaningless ratios; `passed` is
    numpy.allclose's rule (|actual - reference| <= atol + rtol * |reference| for every element;
    NaN only where the reference has NaN)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    tolerance: Tolerance
    mismatches: int
    worst_index: tuple[int, ...] | None
    passed: bool
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "max_abs_error": _finite_or_text(self.max_abs_error),
                "max_rel_error": _finite_or_text(self.max_rel_error),
                "rtol": self.tolerance.rtol, "atol": self.tolerance.atol,
                "mismatches": self.mismatches,
                "worst_index": None if self.worst_index is None else list(self.worst_index),
                "passed": self.passed, "note": self.note}


def _finite_or_text(value: float) -> float | str:
    """JSON has no NaN/inf: such errors are written as strings."""
    return value if np.isfinite(value) else str(value)


def compare_value(name: str, actual: np.ndarray, reference: np.ndarray,
                  rtol: float | None = None, atol: float | None = None) -> ValueComparison:
    """Element-wise comparison of `actual` (PyC) with `reference` (onnxruntime)."""
    tolerance = Tolerance.for_dtype(reference.dtype, rtol, atol)
    shape = tuple(reference.shape)
    if tuple(actual.shape) != shape:
        return ValueComparison(name, str(reference.dtype), shape, float("inf"), float("inf"), tolerance,
                           int(reference.size), None, False,
                           f"shape {list(actual.shape)} differs from the reference's {list(shape)}")
    if actual.size == 0:
        return ValueComparison(name, str(reference.dtype), shape, 0.0, 0.0, tolerance, 0, None, True)
    a = actual.astype(np.float64)
    b = reference.astype(np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))  # equal infinities and NaN positions agree
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(same, 0.0, np.abs(a - b))
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only: worst possible
        bad = diff > tolerance.atol + tolerance.rtol * np.abs(np.nan_to_num(b, nan=0.0))
        relative = diff / np.maximum(np.abs(np.nan_to_num(b, nan=0.0)), tolerance.atol or 1.0)
    worst = np.unravel_index(int(np.argmax(diff)), shape) if diff.max() > 0 else None
    return ValueComparison(name, str(reference.dtype), shape, float(diff.max()), float(relative.max()),
                       tolerance, int(bad.sum()), None if worst is None else tuple(int(i) for i in worst),
                       not bool(bad.any()))
