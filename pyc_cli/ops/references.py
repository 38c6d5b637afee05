"""numpy references of the sliding-window and row-wise ops (Conv, ConvTranspose, the pools,
Softmax-like ops, InstanceNormalization), written for clarity and ONNX semantics.

They take the geometry (strides, dilations, begin pads, output sizes) that the op's shape rule
computed, so a reference and a kernel can disagree only in arithmetic. Sums accumulate in
float64 and results are cast back to the input's element type, as folding stores them. The
pools and InstanceNormalization instead follow the kernels' arithmetic (the element type, their
order, onnxruntime's rules for where NaN wins), so that a folded constant holding NaN, inf or
huge values equals run time (tests/ops/test_special_values.py, folded variant).
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable

import ml_dtypes
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_HALVES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


def f16_via_f32(evaluate: Callable) -> Callable:
    """For an `evaluate` of an op whose kernels have no float16 path: float16 values run
    through the float32 kernel between casts (canonicalize inserts them), so the reference
    computes in float32 too and rounds the results to float16 (bfloat16 values alike)."""

    @functools.wraps(evaluate)
    def wrapper(self, node, inputs, *args):  # noqa: ANN001, ANN202
        halves = [np.asarray(v).dtype for v in inputs
                  if v is not None and np.asarray(v).dtype in _HALVES]
        if not halves:
            return evaluate(self, node, inputs, *args)
        wide = [v if v is None or np.asarray(v).dtype not in _HALVES else np.asarray(v, np.float32)
                for v in inputs]
        return [r.astype(halves[0]) if r.dtype == np.float32 else r
                for r in evaluate(self, node, wide, *args)]

    return wrapper


def window_view(x: np.ndarray, kernel: list[int], strides: list[int], dilations: list[int],
                begins: list[int], out: list[int], pad_value: float) -> np.ndarray:
    """Every window of x (N, C, *spatial) as an (N, C, *out, *kernel) array: x padded with
    `pad_value` by `begins` before and by what the last window needs after (ceil_mode windows
    may run past the explicit end pads; unused input tails are cut)."""
    rank = len(kernel)
    extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    needed = [(o - 1) * s + e for o, s, e in zip(out, strides, extents)]  # padded length used
    pads = [(0, 0), (0, 0)] + [(b, max(0, n - b - size))
                               for b, n, size in zip(begins, needed, x.shape[2:])]
    padded = np.pad(x, pads, constant_values=pad_value)
    padded = padded[(slice(None), slice(None), *(slice(0, n) for n in needed))]
    view = sliding_window_view(padded, extents, axis=tuple(range(2, 2 + rank)))
    starts = tuple(slice(None, None, s) for s in strides)
    taps = tuple(slice(None, None, d) for d in dilations)
    return view[(slice(None), slice(None), *starts, *taps)]


def inside_mask(spatial: tuple[int, ...], kernel: list[int], strides: list[int],
                dilations: list[int], begins: list[int], out: list[int],
                low: list[int], high: list[int]) -> np.ndarray:
    """(*out, *kernel) booleans: whether each window tap's input coordinate lies in
    [low, high) on every axis."""
    rank = len(kernel)
    mask = np.ones(tuple(out) + tuple(kernel), bool)
    for d in range(rank):
        coord = (np.arange(out[d])[:, None] * strides[d] - begins[d]
                 + np.arange(kernel[d])[None, :] * dilations[d])
        ok = (coord >= low[d]) & (coord < high[d])
        shape = [1] * (2 * rank)
        shape[d], shape[rank + d] = out[d], kernel[d]
        mask &= ok.reshape(shape)
    return mask


def conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, group: int,
         strides: list[int], dilations: list[int], begins: list[int], out: list[int]) -> np.ndarray:
    """y[n, m, o] = bias[m] + sum over the group's channels c and taps k of
    x[n, c, o*stride - pad + k*dilation] * w[m, c, k] (zero padding)."""
    rank = x.ndim - 2
    kernel = list(w.shape[2:])
    cols = window_view(x.astype(np.float64), kernel, strides, dilations, begins, out, 0.0)
    n, channels = x.shape[:2]
    cols = cols.reshape(n, group, channels // group, *cols.shape[2:])
    weights = w.astype(np.float64).reshape(group, w.shape[0] // group, *w.shape[1:])
    o, k = string.ascii_lowercase[:rank], string.ascii_lowercase[rank:2 * rank]
    y = np.einsum(f"NGC{o}{k},GMC{k}->NGM{o}", cols, weights, optimize=True)
    y = y.reshape(n, w.shape[0], *out)
    if bias is not None:
        y = y + bias.astype(np.float64).reshape(-1, *([1] * rank))
    return y.astype(x.dtype)


def conv_transpose(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, group: int,
                   strides: list[int], dilations: list[int], begins: list[int],
                   out: list[int], output_padding: list[int]) -> np.ndarray:
    """Every input pixel i times every kernel tap k lands on output pixel
    i*stride - pad + k*dilation: scatter-add each tap's products into the full (unpadded)
    output, then cut the requested window (zeros where it runs past the full output)."""
    rank = x.ndim - 2
    spatial, kernel = x.shape[2:], w.shape[2:]
    n, channels = x.shape[:2]
    per_group = w.shape[1]
    full = [s * (i - 1) + d * (k - 1) + 1 + p for s, i, d, k, p in
            zip(strides, spatial, dilations, kernel, output_padding)]
    xs = x.astype(np.float64).reshape(n, group, channels // group, *spatial)
    ws = w.astype(np.float64).reshape(group, channels // group, per_group, *kernel)
    acc = np.zeros((n, group, per_group, *full))
    i = string.ascii_lowercase[:rank]
    for tap in np.ndindex(*kernel):
        contribution = np.einsum(f"NGC{i},GCM->NGM{i}", xs, ws[(Ellipsis, *tap)])
        target = tuple(slice(k * d, k * d + s * (size - 1) + 1, s)
                       for k, d, s, size in zip(tap, dilations, strides, spatial))
        acc[(slice(None), slice(None), slice(None), *target)] += contribution
    y = np.zeros((n, group, per_group, *out))
    kept = tuple(slice(0, max(0, min(o, f - b))) for o, f, b in zip(out, full, begins))
    source = tuple(slice(b, b + max(0, min(o, f - b))) for o, f, b in zip(out, full, begins))
    y[(slice(None), slice(None), slice(None), *kept)] = acc[(slice(None),) * 3 + source]
    y = y.reshape(n, group * per_group, *out)
    if bias is not None:
        y = y + bias.astype(np.float64).reshape(-1, *([1] * rank))
    return y.astype(x.dtype)


def _taps(x: np.ndarray, kernel: list[int], strides: list[int], dilations: list[int],
          begins: list[int], out: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, *out, taps) window values and (*out, taps) inside-the-input flags, the taps of
    each window in row-major kernel order (the order the kernels scan them)."""
    rank = len(kernel)
    spatial = x.shape[2:]
    mask = inside_mask(spatial, kernel, strides, dilations, begins, out, [0] * rank, list(spatial))
    cols = window_view(x, kernel, strides, dilations, begins, out, 0)
    taps = int(np.prod(kernel))  # (not -1: a zero-size input leaves nothing to infer it from)
    return cols.reshape(*cols.shape[:2 + rank], taps), mask.reshape(*out, taps)


def _gt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a > b ? a : b (SSE maxps: a NaN b wins)."""
    return np.where(a > b, a, b)


def _ge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a < b ? b : a (std::max: a NaN b loses)."""
    return np.where(a < b, b, a)


def max_pool(x: np.ndarray, kernel: list[int], strides: list[int], dilations: list[int],
             begins: list[int], out: list[int], column_major: bool, rule: str,
             column_from_first_row: bool) -> tuple[np.ndarray, np.ndarray]:
    """The maximum of each window's input taps (pads never count) and the flat input index
    of the first maximum: (n*C + c) * prod(spatial) + the spatial offset, row-major or, with
    storage_order=1, column-major. Where NaN wins follows `rule` (Pool.max_rule: which of
    onnxruntime's implementations the CPU kernel matches); a window
    of pads only gives the lowest finite value, as there."""
    rank = len(kernel)
    spatial = x.shape[2:]
    lowest = np.finfo(x.dtype).min if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    cols, mask = _taps(x, kernel, strides, dilations, begins, out)
    best = np.full(cols.shape[:-1], lowest, x.dtype)
    first = np.zeros(cols.shape[:-1], np.int64)
    if rule == "mlas_global":
        best = _global_max(x.reshape(*x.shape[:2], -1), lowest).reshape(best.shape)
    elif rule == "mlas_vector":
        best = _column_max(cols, mask, kernel, strides, begins, out, spatial[-1], lowest,
                           column_from_first_row)
    elif rule == "lowest_std":
        for tap in range(cols.shape[-1]):
            best = np.where(mask[..., tap], _ge(best, cols[..., tap]), best)
    else:  # first_strict: the first tap inside, then strictly greater ones
        seen = np.zeros(best.shape, bool)
        for tap in range(cols.shape[-1]):
            take = mask[..., tap] & (~seen | (cols[..., tap] > best))
            best = np.where(take, cols[..., tap], best)
            first = np.where(take, tap, first)
            seen = seen | mask[..., tap]
    taps = np.unravel_index(first, kernel)
    coords = [np.arange(out[d]).reshape([-1 if a == d else 1 for a in range(rank)]) * strides[d]
              - begins[d] + taps[d] * dilations[d] for d in range(rank)]
    coords = [np.clip(c, 0, size - 1) for c, size in zip(coords, spatial)]
    offset = np.ravel_multi_index(coords, spatial, order="F" if column_major else "C")
    offset = np.where(mask.any(axis=-1), offset, 0)  # an empty window reports its plane's start
    plane = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[0], x.shape[1], *([1] * rank))
    return best.astype(x.dtype), (plane * int(np.prod(spatial)) + offset).astype(np.int64)


def _global_max(flat: np.ndarray, lowest: float) -> np.ndarray:
    """MLAS's global max: four lanes (element i in lane i % 4) reduced with gt, combined as
    gt(gt(l0, l2), gt(l1, l3)), then the last size % 4 elements with ge."""
    size = flat.shape[-1]
    lanes = np.full(flat.shape[:-1] + (4,), lowest, flat.dtype)
    for row in range(size // 4):
        lanes = _gt(lanes, flat[..., 4 * row:4 * row + 4])
    best = _gt(_gt(lanes[..., 0], lanes[..., 2]), _gt(lanes[..., 1], lanes[..., 3]))
    for i in range(size // 4 * 4, size):
        best = _ge(best, flat[..., i])
    return best


def _column_max(cols: np.ndarray, mask: np.ndarray, kernel: list[int], strides: list[int],
                begins: list[int], out: list[int], width: int, lowest: float,
                from_first_row: bool) -> np.ndarray:
    """MLAS's vectorized max (unit dilations): each window column (a kernel position along W)
    is reduced over its rows first (from its first row in 2-D, from the lowest value in 3-D;
    gt in the columns of the first width - width % 4, ge in the rest), then the columns left
    to right with gt; columns in the padding hold the lowest value."""
    rank = len(kernel)
    taps = np.arange(int(np.prod(kernel))).reshape(kernel)
    ow = np.arange(out[-1]).reshape([1] * (rank - 1) + [-1])
    best = np.full(cols.shape[:-1], lowest, cols.dtype)
    for kw in range(kernel[-1]):
        iw = ow * strides[-1] - begins[-1] + kw
        vector = iw < width // 4 * 4
        column = np.full(cols.shape[:-1], lowest, cols.dtype)
        started = np.full(cols.shape[:-1], not from_first_row)
        for tap in taps[..., kw].reshape(-1):
            value, inside = cols[..., tap], mask[..., tap]
            reduced = np.where(vector, _gt(column, value), _ge(column, value))
            column = np.where(inside, np.where(started, reduced, value), column)
            started = started | inside
        best = column if kw == 0 else _gt(best, column)
    return best


def average_pool(x: np.ndarray, kernel: list[int], strides: list[int], dilations: list[int],
                 begins: list[int], out: list[int], ends: list[int],
                 count_include_pad: bool) -> np.ndarray:
    """The sum of each window's input taps over the taps counted: those inside the input, or
    with count_include_pad those inside the explicitly padded input (never a ceil_mode tail).
    The sum runs in the element type in the kernels' (and onnxruntime's) order, so a folded
    window of huge values overflows as it does at run time."""
    spatial = list(x.shape[2:])
    cols, inside = _taps(x, kernel, strides, dilations, begins, out)
    counted = inside_mask(tuple(spatial), kernel, strides, dilations, begins, out,
                          [-b for b in begins], [s + e for s, e in zip(spatial, ends)]
                          ).reshape(inside.shape) if count_include_pad else inside
    total = np.zeros(cols.shape[:-1], x.dtype)
    for tap in range(cols.shape[-1]):
        total = np.where(inside[..., tap], total + cols[..., tap], total)
    return (total / counted.sum(axis=-1).astype(x.dtype)).astype(x.dtype)


def rowwise(x: np.ndarray, geometry: tuple[int, int, int], kind: str) -> np.ndarray:
    """Softmax, LogSoftmax or Hardmax over the middle axis of x viewed as (outer, row, inner)."""
    if x.size == 0:  # no rows (or empty ones): nothing to normalize
        return x.copy()
    rows = x.astype(np.float64).reshape(geometry)
    if kind == "Hardmax":  # 1 at the first maximum of each row
        y = np.zeros_like(rows)
        np.put_along_axis(y, rows.argmax(axis=1)[:, None, :], 1.0, axis=1)
    else:
        shifted = rows - rows.max(axis=1, keepdims=True)
        log_total = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        y = shifted - log_total if kind == "LogSoftmax" else np.exp(shifted - log_total)
    return y.reshape(x.shape).astype(x.dtype)


def instance_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, epsilon: float) -> np.ndarray:
    """Per (n, c): (x - mean) / sqrt(variance + epsilon) * scale[c] + bias[c] over the spatial
    axes (population variance), as the kernel computes it: two passes of running sums in the
    element type (np.cumsum adds in order), so huge or infinite values overflow as at run time."""
    rows = x.reshape(x.shape[0] * x.shape[1], int(np.prod(x.shape[2:])))
    count = x.dtype.type(rows.shape[1])
    mean = np.cumsum(rows, axis=1, dtype=x.dtype)[:, -1:] / count
    centered = rows - mean
    variance = np.cumsum(centered * centered, axis=1, dtype=x.dtype)[:, -1:] / count
    channel = np.arange(rows.shape[0]) % x.shape[1]
    factor = scale.astype(x.dtype)[channel, None] / np.sqrt(variance + x.dtype.type(epsilon))
    y = centered * factor + bias.astype(x.dtype)[channel, None]
    return y.reshape(x.shape).astype(x.dtype)
