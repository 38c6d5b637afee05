"""TMA tensor maps of a CUDA artifact (launches.json's `tensor_maps`, written by
targets/cuda/target.py for the TMA Hopper GEMM): checked with the rest of the launch plan, then
encoded at load by cuTensorMapEncodeTiled over the device addresses the model's buffers got,
and copied into one device allocation, 128 bytes each; a kernel argument ["tensormap", i] is
the address of map i there (the kernel acquires it through the tensormap proxy).

Each entry: {"address": [space, value] (an input or output by position, or a weights / arena
byte offset), "dtype": "fp16" | "bf16" | "fp32", "dims": innermost first (elements),
"strides": bytes of dims 1.., "box": elements per dim, "swizzle": 128}; out-of-bounds boxes
read zeros."""

from __future__ import annotations

from typing import Any

import numpy as np

MAP_BYTES = 128  # sizeof(CUtensorMap)
MAX_MAPS = 4096
ELEMENT_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}
ADDRESS_SPACES = ("input", "output", "weights", "arena")
MAX_RANK = 5
MAX_BOX = 256
SWIZZLE_BYTES = 128  # the only swizzle written: a box's inner extent is at most 128 bytes


def _ints(value: Any, count: int, low: int, high: int) -> bool:
    return (isinstance(value, list) and len(value) == count
            and all(type(v) is int and low <= v <= high for v in value))


def map_problem(entry: Any, buffer_bytes: dict[str, list[int] | int]) -> str:
    """Why a tensor_maps entry is malformed ("" when it is not): its shape within TMA's rules
    (rank 2-5, 16-byte strides, boxes of at most 256 and 128 bytes inner) and every element it
    can address inside its buffer (`buffer_bytes`: per space, a size or per-position sizes)."""
    if not isinstance(entry, dict) or entry.get("dtype") not in ELEMENT_BYTES:
        return "a tensor map has no valid dtype"
    dims = entry.get("dims")
    if not isinstance(dims, list):
        return "a tensor map has invalid dims"
    rank = len(dims)
    size = ELEMENT_BYTES[entry["dtype"]]
    if not (2 <= rank <= MAX_RANK and _ints(dims, rank, 1, 2**32)):
        return "a tensor map has invalid dims"
    if not _ints(entry.get("strides"), rank - 1, 16, 2**40 - 16) or any(s % 16 for s in entry["strides"]):
        return "a tensor map has invalid strides (multiples of 16 bytes)"
    box = entry.get("box")
    if not isinstance(box, list) or not _ints(box, rank, 1, MAX_BOX) \
            or box[0] * size > SWIZZLE_BYTES or entry.get("swizzle") != 128:
        return "a tensor map has an invalid box or swizzle"
    address = entry.get("address")
    if not (isinstance(address, list) and len(address) == 2 and address[0] in ADDRESS_SPACES
            and type(address[1]) is int and address[1] >= 0):
        return "a tensor map has an invalid address"
    space, value = address
    sizes = buffer_bytes[space]
    if isinstance(sizes, list):  # inputs / outputs: by position, from their start
        if value >= len(sizes):
            return "a tensor map names a missing input or output"
        start, limit = 0, sizes[value]
    else:
        start, limit = value, sizes
    if start % 16:
        return "a tensor map's address is not 16-byte aligned"
    extent = dims[0] * size + sum((d - 1) * s for d, s in zip(dims[1:], entry["strides"]))
    if start + extent > limit:
        return f"a tensor map reaches past its {space} buffer"
    return ""


def encode(driver: Any, entry: dict[str, Any], address: int) -> np.ndarray:
    """One map's 128 bytes (16 uint64), encoded by the driver over `address` (PYC-E038 where
    the driver refuses it)."""
    cu = driver.cu
    types = {"fp16": cu.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
             "bf16": cu.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
             "fp32": cu.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT32}
    rank = len(entry["dims"])
    tensor_map = driver("cuTensorMapEncodeTiled", types[entry["dtype"]], rank, address,
                        [cu.cuuint64_t(d) for d in entry["dims"]],
                        [cu.cuuint64_t(s) for s in entry["strides"]],
                        [cu.cuuint32_t(b) for b in entry["box"]],
                        [cu.cuuint32_t(1) for _ in range(rank)],
                        cu.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE,
                        cu.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B,
                        cu.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        cu.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
    words = np.array([int(w) for w in tensor_map.opaque], np.uint64)
    assert words.nbytes == MAP_BYTES, words.nbytes
    return words
