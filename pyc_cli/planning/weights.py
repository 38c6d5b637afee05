"""The weights file: every constant a kernel reads, 64-byte aligned, in name order.

A target's kernel may read a matrix constant in packed panels (the packed GEMM's weights,
`Target.constant_panels`): the file then holds the constant as panels of `width` columns,
[..., ceil(N/width), K, width], zero-padded past N, and the manifest records the width so the
constant can be read back (`read_constant`).

A kernel may also read a float32 matrix constant converted to a 16-bit float type (the CUDA
target's tensor-core GEMM at --precision fp16/bf16, `Target.constant_conversions`): the file
then holds it as float16 or bfloat16 (round to nearest even), its rows padded with zeros to
`columns` (a multiple of 8: 16-byte rows), and the manifest records both.

A kernel may also read a constant through a build-time transform (`Target.constant_transforms`,
TRANSFORMS: the CPU Winograd convolution's U = G g G^T, planning/winograd.py): the file then
holds the transformed array, and the manifest records the transform's name; reading it back
inverts the transform (up to the stored form's rounding).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..ir.graph import Graph
from . import winograd

WEIGHT_ALIGNMENT = 64


@dataclass(frozen=True)
class WeightsLayout:
    offsets: dict[str, int]
    total_bytes: int
    packed: dict[str, int] = field(default_factory=dict)  # constant -> panel width
    converted: dict[str, Conversion] = field(default_factory=dict)  # constant -> 16-bit form
    transformed: dict[str, str] = field(default_factory=dict)  # constant -> TRANSFORMS name

    def to_json(self) -> dict[str, object]:
        record: dict[str, object] = {
            "alignment": WEIGHT_ALIGNMENT, "total_bytes": self.total_bytes,
            "offsets": dict(sorted(self.offsets.items())), "packed": dict(sorted(self.packed.items()))}
        if self.converted:  # only reduced-precision builds have any
            record["converted"] = {k: c.to_json() for k, c in sorted(self.converted.items())}
        if self.transformed:  # only builds with a kernel reading a transformed constant
            record["transformed"] = dict(sorted(self.transformed.items()))
        return record


@dataclass(frozen=True)
class Transform:
    """A build-time transform of a constant: the stored array, the stored shape from the
    constant's, and the constant back from the stored array."""

    forward: Callable[[np.ndarray], np.ndarray]
    shape: Callable[[tuple[int, ...]], tuple[int, ...]]
    inverse: Callable[[np.ndarray, tuple[int, ...]], np.ndarray]

    def accepts(self, shape: tuple[int, ...]) -> bool:
        try:
            self.shape(shape)
        except (IndexError, ValueError):
            return False
        return True


def _winograd_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) != 4 or tuple(shape[2:]) != (3, 3):
        raise ValueError(f"{shape} is not [Cout, Cin, 3, 3]")
    return winograd.stored_shape(shape)


# a conv weight [OC, C, KH, KW] read as the packed GEMM's B [C*KH*KW, OC] in panels of `width`
# output channels (the CPU pixel-major conv, targets/cpu/kernels.py): the transform's name
# carries the width
CONV_PANELS = "conv_panels"
CONV_PANEL_WIDTHS = (8, 16, 32)


def conv_panels_name(width: int) -> str:
    return f"{CONV_PANELS}{width}"


def _conv_matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 3:
        raise ValueError(f"{shape} is not a conv weight [OC, C, kernel...]")
    return math.prod(shape[1:]), shape[0]


def _conv_panels(width: int) -> Transform:
    def forward(array: np.ndarray) -> np.ndarray:
        return pack_panels(np.asarray(array).reshape(array.shape[0], -1).T, width)

    def shape(weight: tuple[int, ...]) -> tuple[int, ...]:
        k, n = _conv_matrix_shape(weight)
        return (-(-n // width), k, width)

    def inverse(stored: np.ndarray, weight: tuple[int, ...]) -> np.ndarray:
        matrix = unpack_panels(stored.reshape(-1), _conv_matrix_shape(weight), width)
        return np.ascontiguousarray(matrix.T).reshape(weight)
    return Transform(forward, shape, inverse)


# a conv weight [OC, C, KH, KW] read by the blocked conv (the CPU target's conv2d_blocked.c.j2)
# as [OC/NR][C/BL][KH][KW][BL][NR]: panels of NR output channels, input channels in blocks of
# BL; both names' numbers in the transform's name
CONV_BLOCKED = "conv_blocked"
CONV_BLOCKS = tuple((bl, nr) for bl in (4, 8, 16) for nr in (bl, 2 * bl))


def conv_blocked_name(block: int, width: int) -> str:
    return f"{CONV_BLOCKED}{block}x{width}"


def _conv_blocked(block: int, width: int) -> Transform:
    def shape(weight: tuple[int, ...]) -> tuple[int, ...]:
        if len(weight) != 4 or weight[0] % width or weight[1] % block:
            raise ValueError(f"{weight} is no [OC, C, KH, KW] in panels of {width} and "
                             f"blocks of {block}")
        oc, c, kh, kw = weight
        return (oc // width, c // block, kh, kw, block, width)

    def forward(array: np.ndarray) -> np.ndarray:
        oc, c, kh, kw = array.shape
        split = np.asarray(array).reshape(oc // width, width, c // block, block, kh, kw)
        return np.ascontiguousarray(split.transpose(0, 2, 4, 5, 3, 1))

    def inverse(stored: np.ndarray, weight: tuple[int, ...]) -> np.ndarray:
        blocks = stored.reshape(shape(weight)).transpose(0, 5, 1, 4, 2, 3)
        return np.ascontiguousarray(blocks).reshape(weight)
    return Transform(forward, shape, inverse)


TRANSFORMS = {winograd.NAME: Transform(winograd.transform_weights, _winograd_shape,
                                       winograd.untransform_weights),
              **{conv_panels_name(w): _conv_panels(w) for w in CONV_PANEL_WIDTHS},
              **{conv_blocked_name(b, w): _conv_blocked(b, w) for b, w in CONV_BLOCKS}}


@dataclass(frozen=True)
class Conversion:
    """A float32 matrix constant stored as `dtype` (float16 or bfloat16), rows padded to
    `columns` with zeros. `flat`: the constant is first read as a matrix of its first dim's
    rows (a conv weight [OC, C, KH, KW] as [OC, C * KH * KW]: the tensor-core conv's A)."""

    dtype: str
    columns: int
    flat: bool = False

    def to_json(self) -> dict[str, object]:
        record: dict[str, object] = {"dtype": self.dtype, "columns": self.columns}
        if self.flat:  # only conv weights have it
            record["flat"] = True
        return record

    def matrix_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape the conversion pads the last dim of."""
        return (shape[0], math.prod(shape[1:])) if self.flat else tuple(shape)


HALF_TYPES = ("float16", "bfloat16")


def to_bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounded to nearest even as the GPU's
    cvt.rn.bf16 does; NaN stays a quiet NaN."""
    bits = np.ascontiguousarray(array, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(array), np.uint16(0x7FC0), rounded)


def from_bfloat16_bits(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def convert_matrix(array: np.ndarray, conversion: Conversion) -> np.ndarray:
    """The stored form: [..., K, N] float32 -> [..., K, columns] 16-bit values (uint16 bits for
    bfloat16), zero past N."""
    if conversion.dtype not in HALF_TYPES:
        raise ValueError(f"unknown conversion {conversion.dtype!r}")
    array = np.asarray(array).reshape(conversion.matrix_shape(array.shape))
    *lead, k, n = array.shape
    padded = np.zeros((*lead, k, conversion.columns), np.float32)
    padded[..., :n] = array
    if conversion.dtype == "float16":
        with np.errstate(over="ignore"):  # beyond float16's range is infinity, as on the GPU
            return padded.astype(np.float16)
    return to_bfloat16_bits(padded)


def unconvert_matrix(flat: np.ndarray, shape: tuple[int, ...], conversion: Conversion) -> np.ndarray:
    """The inverse of convert_matrix (float32 again, as rounded)."""
    *lead, k, n = conversion.matrix_shape(shape)
    stored = flat.reshape(*lead, k, conversion.columns)[..., :n]
    if conversion.dtype == "float16":
        return np.ascontiguousarray(stored.view(np.float16).astype(np.float32)).reshape(shape)
    return np.ascontiguousarray(from_bfloat16_bits(stored.view(np.uint16))).reshape(shape)


def converted_nbytes(shape: tuple[int, ...], conversion: Conversion) -> int:
    *lead, k, _ = conversion.matrix_shape(shape)
    return int(np.prod(lead, dtype=np.int64)) * k * conversion.columns * 2


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


def transformed_nbytes(shape: tuple[int, ...], itemsize: int, transform: str) -> int:
    return int(np.prod(TRANSFORMS[transform].shape(tuple(shape)), dtype=np.int64)) * itemsize


def stored_nbytes(array: np.ndarray, width: int | None,
                  conversion: Conversion | None = None, transform: str | None = None) -> int:
    if transform is not None:
        return transformed_nbytes(array.shape, array.itemsize, transform)
    if conversion is not None:
        return converted_nbytes(array.shape, conversion)
    return array.nbytes if width is None else packed_numel(array.shape, width) * array.itemsize


def layout_weights(graph: Graph, packed: Mapping[str, int] | None = None,
                   converted: Mapping[str, Conversion] | None = None,
                   transformed: Mapping[str, str] | None = None) -> WeightsLayout:
    """Offsets of every constant a kernel reads; `packed` names those stored as panels (and
    their width), `converted` those stored in a 16-bit float type, `transformed` those stored
    through a build-time transform (TRANSFORMS)."""
    used = sorted({name for node in graph.nodes for name in node.present_inputs()
                   if name in graph.constants})
    packed = {name: width for name, width in (packed or {}).items() if name in used}
    converted = {name: c for name, c in (converted or {}).items() if name in used}
    transformed = {name: t for name, t in (transformed or {}).items() if name in used}
    clash = (set(packed) & set(converted)) | (set(transformed) & (set(packed) | set(converted)))
    if clash:
        raise RuntimeError(f"{sorted(clash)} stored in two forms")
    offsets, cursor = {}, 0
    for name in used:
        offsets[name] = cursor
        size = stored_nbytes(graph.constants[name], packed.get(name), converted.get(name),
                             transformed.get(name))
        cursor += -(-max(size, 1) // WEIGHT_ALIGNMENT) * WEIGHT_ALIGNMENT
    return WeightsLayout(offsets, cursor, packed, converted, transformed)


def weights_bytes(graph: Graph, layout: WeightsLayout) -> bytes:
    blob = bytearray(layout.total_bytes)
    for name, offset in layout.offsets.items():
        array = graph.constants[name]
        width, conversion = layout.packed.get(name), layout.converted.get(name)
        transform = layout.transformed.get(name)
        if transform is not None:
            data = TRANSFORMS[transform].forward(array).tobytes()
        elif conversion is not None:
            data = np.ascontiguousarray(convert_matrix(array, conversion)).tobytes()
        else:
            data = np.ascontiguousarray(array if width is None else pack_panels(array, width)).tobytes()
        blob[offset:offset + len(data)] = data
    return bytes(blob)


def read_constant(blob: bytes, offset: int, dtype: np.dtype, shape: tuple[int, ...],
                  width: int | None, conversion: Conversion | None = None,
                  transform: str | None = None) -> np.ndarray:
    """A constant read back from the weights file as it was laid out (a converted one as
    float32 again, with the conversion's rounding; a transformed one through the inverse)."""
    if transform is not None:
        stored = TRANSFORMS[transform].shape(tuple(shape))
        flat = np.frombuffer(blob, dtype, int(np.prod(stored, dtype=np.int64)), offset)
        return TRANSFORMS[transform].inverse(flat.reshape(stored), tuple(shape))
    if conversion is not None:
        flat = np.frombuffer(blob, np.uint16, converted_nbytes(shape, conversion) // 2, offset)
        return unconvert_matrix(flat, shape, conversion)
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
