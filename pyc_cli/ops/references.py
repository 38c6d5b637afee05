"""numpy references of the sliding-window and row-wise ops (Conv, ConvTranspose, the pools,
Softmax-like ops, InstanceNormalization), written for clarity and ONNX semantics.

They take the geometry (strides, dilations, begin pads, output sizes) that the op's shape rule
computed, so a reference and a kernel can disagree only in arithmetic. Sums accumulate in
float64 and results are cast back to the input's element type, as folding stores them.
"""

from __future__ import annotations

import string

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


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


def max_pool(x: np.ndarray, kernel: list[int], strides: list[int], dilations: list[int],
             begins: list[int], out: list[int], column_major: bool
             ) -> tuple[np.ndarray, np.ndarray]:
    """The maximum of each window's input taps (pads never win; a window of pads only gives
    the lowest finite value, as onnxruntime's does) and the flat input index of the first
    maximum: (n*C + c) * prod(spatial) + the spatial offset, row-major or, with
    storage_order=1, column-major."""
    rank = len(kernel)
    spatial = x.shape[2:]
    mask = inside_mask(spatial, kernel, strides, dilations, begins, out, [0] * rank, list(spatial))
    lowest = np.finfo(x.dtype).min if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    cols = window_view(x, kernel, strides, dilations, begins, out, 0)
    cols = np.where(mask, cols, -np.inf if x.dtype.kind == "f" else lowest)
    flat = cols.reshape(*cols.shape[:2 + rank], -1)
    best = flat.argmax(axis=-1)
    values = np.take_along_axis(flat, best[..., None], axis=-1)[..., 0]
    values = np.where(mask.reshape(*out, -1).any(axis=-1), values, lowest).astype(x.dtype)
    taps = np.unravel_index(best, kernel)
    coords = [np.arange(out[d]).reshape([-1 if a == d else 1 for a in range(rank)]) * strides[d]
              - begins[d] + taps[d] * dilations[d] for d in range(rank)]
    coords = [np.clip(c, 0, size - 1) for c, size in zip(coords, spatial)]
    offset = np.ravel_multi_index(coords, spatial, order="F" if column_major else "C")
    plane = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[0], x.shape[1], *([1] * rank))
    return values, (plane * int(np.prod(spatial)) + offset).astype(np.int64)


def average_pool(x: np.ndarray, kernel: list[int], strides: list[int], dilations: list[int],
                 begins: list[int], out: list[int], ends: list[int],
                 count_include_pad: bool) -> np.ndarray:
    """The sum of each window's input taps over the taps counted: those inside the input, or
    with count_include_pad those inside the explicitly padded input (never a ceil_mode tail)."""
    rank = len(kernel)
    spatial = list(x.shape[2:])
    inside = inside_mask(tuple(spatial), kernel, strides, dilations, begins, out, [0] * rank, spatial)
    counted = inside_mask(tuple(spatial), kernel, strides, dilations, begins, out,
                          [-b for b in begins], [s + e for s, e in zip(spatial, ends)]) \
        if count_include_pad else inside
    cols = window_view(x.astype(np.float64), kernel, strides, dilations, begins, out, 0.0)
    axes = tuple(range(-rank, 0))
    total = np.where(inside, cols, 0.0).sum(axis=axes)
    return (total / counted.sum(axis=axes)).astype(x.dtype)


def rowwise(x: np.ndarray, geometry: tuple[int, int, int], kind: str) -> np.ndarray:
    """Softmax, LogSoftmax or Hardmax over the middle axis of x viewed as (outer, row, inner)."""
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
    axes (population variance)."""
    axes = tuple(range(2, x.ndim))
    channel = (-1,) + (1,) * (x.ndim - 2)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    variance = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x64 - mean) / np.sqrt(variance + epsilon) * scale.astype(np.float64).reshape(channel) \
        + bias.astype(np.float64).reshape(channel)
    return y.astype(x.dtype)
