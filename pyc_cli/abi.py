"""The target-neutral ABI of a compiled model: how its inputs and outputs are described to
callers (names, element types, shapes, sizes), whichever target compiled it.

The element-type codes are defined here once; the C runtime's `pyc_dtype` enum
(runtime_c/pyc_runtime.h) must use the same numbers (tests/test_abi.py reads the header), and
the loader checks a library's reported I/O against them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir.graph import Graph
from .ir.types import DType

DTYPE_CODES: dict[DType, int] = {
    DType.F32: 1, DType.F64: 2, DType.F16: 3, DType.I8: 4, DType.I16: 5, DType.I32: 6,
    DType.I64: 7, DType.U8: 8, DType.BOOL: 9, DType.U16: 10, DType.U32: 11, DType.U64: 12,
}


@dataclass(frozen=True)
class IoInfo:
    """One input or output as the ABI publishes it."""

    name: str
    dtype: str
    dtype_code: int
    shape: list[int]
    nbytes: int


def io_infos(graph: Graph, values: list[str], names: list[str] | None = None) -> list[IoInfo]:
    """The ABI description of `values`, published under `names` (default: the value names)."""
    return [IoInfo(name, graph.types[v].dtype.value, DTYPE_CODES[graph.types[v].dtype],
                   list(graph.types[v].shape), graph.types[v].nbytes)
            for v, name in zip(values, names or values)]


def dtype_code(dtype: DType) -> int:
    """The ABI code of `dtype` (0 for a type no compiled model reports)."""
    return DTYPE_CODES.get(dtype, 0)
