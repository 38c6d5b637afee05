"""The weights file: every constant a kernel reads, 64-byte aligned, in name order.

A target's kernel may read a matrix constant in packed panels (the packed GEMM's weights,
`Target.constant_panels`): the file then holds the constant as panels of `width` columns,
[..., ceil(N/width), K, width], zero-padded past N, and the manifest records the width so the
constant can be read back (`read_constant`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..ir.graph import Graph

WEIGHT_ALIGNMENT = 64


@dataclass(frozen=True)
class WeightsLayout:
    offsets: dict[str, int]
    total_bytes: int
    packed: dict[str, int] = field(default_factory=dict)  # constant -> panel width

    def to_json(self) -> dict[str, object]:
        return {"alignment": WEIGHT_ALIGNMENT, "total_bytes": self.total_bytes,
                "offsets": dict(sorted(self.offsets.items())),
                "packed": dict(sorted(self.packed.items()))}


def pack_panels(matrix: np.ndarray, width: int) -> np.ndarray:
    """[..., K, N] -> [..., ceil(N/width), K, width], zero-padded past N (a 1-D [K] vector,
    numpy's B of a matrix-vector product, is one column)."""
    array = np.asarray(matrix)
    if array.ndim == 1:
        array = array[:, None]
    *lead, k, n = array.shape
    panels = -(-n // width)
    padded = np.zeros((*lead, k, panels * width), array.dtype)
    padded[..., :n] = array
    return np.ascontiguousarray(padded.reshape(*lead, k, panels, width).swapaxes(-3, -2))


def packed_numel(shape: tuple[int, ...], width: int) -> int:
    """Elements of a constant of `shape` stored as panels of `width` columns."""
    matrix = tuple(shape) + (1,) if len(shape) == 1 else tuple(shape)
    *lead, k, n = matrix
    return int(np.prod(lead, dtype=np.int64)) * k * -(-n // width) * width


def unpack_panels(flat: np.ndarray, shape: tuple[int, ...], width: int) -> np.ndarray:
    """The inverse of pack_panels: panels back to a constant of `shape`."""
    matrix = tuple(shape) + (1,) if len(shape) == 1 else tuple(shape)
    *lead, k, n = matrix
    panels = -(-n // width)
    array = flat.reshape(*lead, panels, k, width).swapaxes(-3, -2).reshape(*lead, k, panels * width)
    return np.ascontiguousarray(array[..., :n]).reshape(shape)


def stored_nbytes(array: np.ndarray, width: int | None) -> int:
    return array.nbytes if width is None else packed_numel(array.shape, width) * array.itemsize


def layout_weights(graph: Graph, packed: Mapping[str, int] | None = None) -> WeightsLayout:
    """Offsets of every constant a kernel reads; `packed` names those stored as panels (and
    their width)."""
    used = sorted({name for node in graph.nodes for name in node.present_inputs()
                   if name in graph.constants})
    packed = {name: width for name, width in (packed or {}).items() if name in used}
    offsets, cursor = {}, 0
    for name in used:
        offsets[name] = cursor
        size = stored_nbytes(graph.constants[name], packed.get(name))
        cursor += -(-max(size, 1) // WEIGHT_ALIGNMENT) * WEIGHT_ALIGNMENT
    return WeightsLayout(offsets, cursor, packed)


def weights_bytes(graph: Graph, layout: WeightsLayout) -> bytes:
    blob = bytearray(layout.total_bytes)
    for name, offset in layout.offsets.items():
        array = graph.constants[name]
        width = layout.packed.get(name)
        data = np.ascontiguousarray(array if width is None else pack_panels(array, width)).tobytes()
        blob[offset:offset + len(data)] = data
    return bytes(blob)


def read_constant(blob: bytes, offset: int, dtype: np.dtype, shape: tuple[int, ...],
                  width: int | None) -> np.ndarray:
    """A constant read back from the weights file as it was laid out."""
    if width is None:
        return np.frombuffer(blob, dtype, int(np.prod(shape, dtype=np.int64)), offset).reshape(shape)
    flat = np.frombuffer(blob, dtype, packed_numel(shape, width), offset)
    return unpack_panels(flat, shape, width)


def weights_checksum(data: bytes) -> int:
    """Position-weighted sum of little-endian u32 words mod 2^64; the C runtime recomputes it
    when loading, so a C-only user also detects a corrupt or mismatched weights file."""
    words = np.frombuffer(data, dtype="<u4").astype(np.uint64)
    weights = np.arange(1, words.size + 1, dtype=np.uint64)
    return int(np.sum(words * weights, dtype=np.uint64))
