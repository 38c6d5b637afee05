"""The weights file: every constant a kernel reads, 64-byte aligned, in name order. A target
may give a constant's byte image in the layout its kernel reads (packed GEMM panels,
`Target.constant_images`): the file then holds that image in the constant's place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..ir.graph import Graph

WEIGHT_ALIGNMENT = 64


@dataclass(frozen=True)
class WeightsLayout:
    offsets: dict[str, int]
    total_bytes: int

    def to_json(self) -> dict[str, object]:
        return {"alignment": WEIGHT_ALIGNMENT, "total_bytes": self.total_bytes,
                "offsets": dict(sorted(self.offsets.items()))}


def layout_weights(graph: Graph, images: Mapping[str, bytes] | None = None) -> WeightsLayout:
    used = sorted({name for node in graph.nodes for name in node.present_inputs()
                   if name in graph.constants})
    images = images or {}
    offsets, cursor = {}, 0
    for name in used:
        offsets[name] = cursor
        size = len(images[name]) if name in images else graph.constants[name].nbytes
        cursor += -(-max(size, 1) // WEIGHT_ALIGNMENT) * WEIGHT_ALIGNMENT
    return WeightsLayout(offsets, cursor)


def weights_bytes(graph: Graph, layout: WeightsLayout,
                  images: Mapping[str, bytes] | None = None) -> bytes:
    blob = bytearray(layout.total_bytes)
    for name, offset in layout.offsets.items():
        data = images[name] if images and name in images \
            else np.ascontiguousarray(graph.constants[name]).tobytes()
        blob[offset:offset + len(data)] = data
    return bytes(blob)


def weights_checksum(data: bytes) -> int:
    """Position-weighted sum of little-endian u32 words mod 2^64; the C runtime recomputes it
    when loading, so a C-only user also detects a corrupt or mismatched weights file."""
    words = np.frombuffer(data, dtype="<u4").astype(np.uint64)
    weights = np.arange(1, words.size + 1, dtype=np.uint64)
    return int(np.sum(words * weights, dtype=np.uint64))

