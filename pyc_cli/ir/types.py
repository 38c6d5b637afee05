"""Tensor element types and static tensor types."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import ml_dtypes
import numpy as np
from onnx import TensorProto

from ..errors import PycError

# the user address space of x86-64 and AArch64 (47 bits with 4-level page tables): no buffer can
# be larger, and every int64_t element index and byte offset kernels compute stays far below 2^63
MAX_BUFFER_BYTES = 1 << 47


class DType(enum.Enum):
    """Element types PyC knows; the value is the short name used in IR text."""

    F32 = "f32"
    F64 = "f64"
    F16 = "f16"
    I8 = "i8"
    I16 = "i16"
    I32 = "i32"
    I64 = "i64"
    U8 = "u8"
    U16 = "u16"
    U32 = "u32"
    U64 = "u64"
    BOOL = "bool"
    # bfloat16: a model's own tensors (issue #14: movement ops and Cast take it, every other op
    # computes it in float32 between casts), and the CUDA target's 16-bit storage of float32
    # activations at --precision bf16
    BF16 = "bf16"

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(_NUMPY[self])

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    @property
    def c_type(self) -> str:
        return _C_TYPES[self]

    @property
    def is_float(self) -> bool:
        return self in (DType.F32, DType.F64, DType.F16, DType.BF16)

    @classmethod
    def from_numpy(cls, dtype: np.dtype) -> DType:
        for member, name in _NUMPY.items():
            if np.dtype(name) == np.dtype(dtype):
                return member
        raise KeyError(str(dtype))

    @classmethod
    def from_onnx(cls, elem_type: int) -> DType:
        return _FROM_ONNX[elem_type]

    def to_onnx(self) -> int:
        return next(k for k, v in _FROM_ONNX.items() if v is self)


_NUMPY = {
    DType.F32: "float32", DType.F64: "float64", DType.F16: "float16", DType.I8: "int8",
    DType.I16: "int16", DType.I32: "int32", DType.I64: "int64", DType.U8: "uint8",
    DType.U16: "uint16", DType.U32: "uint32", DType.U64: "uint64", DType.BOOL: "bool",
    DType.BF16: ml_dtypes.bfloat16,
}
_C_TYPES = {
    DType.F32: "float", DType.F64: "double", DType.F16: "pyc_f16", DType.I8: "int8_t",
    DType.I16: "int16_t", DType.I32: "int32_t", DType.I64: "int64_t", DType.U8: "uint8_t",
    DType.U16: "uint16_t", DType.U32: "uint32_t", DType.U64: "uint64_t", DType.BOOL: "uint8_t",
    DType.BF16: "pyc_bf16",
}
# the element types a model's values may have
MODEL_DTYPES: tuple[DType, ...] = tuple(DType)
# 16-bit storage of float32 activations (Graph.activation_storage)
HALF_STORAGE = (DType.F16, DType.BF16)
_FROM_ONNX = {
    TensorProto.FLOAT: DType.F32, TensorProto.DOUBLE: DType.F64, TensorProto.FLOAT16: DType.F16,
    TensorProto.INT8: DType.I8, TensorProto.INT16: DType.I16, TensorProto.INT32: DType.I32,
    TensorProto.INT64: DType.I64, TensorProto.UINT8: DType.U8, TensorProto.BOOL: DType.BOOL,
    TensorProto.UINT16: DType.U16, TensorProto.UINT32: DType.U32, TensorProto.UINT64: DType.U64,
    TensorProto.BFLOAT16: DType.BF16,
}


def is_float_numpy(dtype: np.dtype | type) -> bool:
    """Whether a numpy dtype is a floating type, ml_dtypes' bfloat16 included (numpy does not
    count it: np.issubdtype(bfloat16, np.floating) is False)."""
    return np.issubdtype(dtype, np.floating) or np.dtype(dtype) == np.dtype(ml_dtypes.bfloat16)


@dataclass(frozen=True)
class TensorType:
    """A fully static tensor type: element type plus concrete shape."""

    dtype: DType
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """The bytes a buffer of this type takes; with symbolic dims (issue #15), at their upper
        bounds, a plain int: what every buffer and arena slot is sized for."""
        return int(self.numel * self.dtype.itemsize)

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return f"{self.dtype.value}[{','.join(str(d) for d in self.shape)}]"

    @classmethod
    def of(cls, array: np.ndarray) -> TensorType:
        return cls(DType.from_numpy(array.dtype), tuple(int(d) for d in array.shape))


def check_addressable(what: str, nbytes: int, where: str = "") -> None:
    """PYC-E012 when a buffer of `nbytes` cannot exist on the target (sizes are exact Python
    integers here, so nothing has overflowed yet)."""
    if nbytes > MAX_BUFFER_BYTES:
        raise PycError("E012", f"{what} needs {nbytes} bytes ({nbytes / 2**40:.4g} TiB); the cpu "
                       f"target addresses at most {MAX_BUFFER_BYTES} bytes (2^47) per buffer",
                       where=where, hint="use smaller shapes (--input-shape) or split the model")


INT32_MAX = 2**31 - 1


def check_int32_index(what: str, size: int, where: str = "") -> None:
    """PYC-E012 when indices into a `size`-long axis do not fit the int32_t tables a kernel
    emits (resize source indices, conv column bounds)."""
    if size > INT32_MAX:
        raise PycError("E012", f"{what} is {size} long; this kernel indexes it with int32_t "
                       f"tables (at most {INT32_MAX})", where=where, hint="use smaller shapes")
