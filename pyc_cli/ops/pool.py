"""MaxPool / AveragePool (1-D, 2-D and 3-D; ceil_mode, count_include_pad, dilations, MaxPool's
Indices output); the global pools are rewritten to reductions by canonicalize."""

from __future__ import annotations

import ml_dtypes
import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from . import references
from .conv import window_geometry
from .reduce import start_value
from .registry import (
    KERNEL,
    InTypes,
    InValues,
    OpDef,
    Scalar,
    ints_attr,
    register,
    require,
)


class Pool(OpDef):
    category = KERNEL
    dtypes = (DType.F32, DType.F64)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        if x.rank not in (3, 4, 5):
            raise PycError("E008", f"{node.op} of rank {x.rank} is not supported (1-D to 3-D are)",
                           where=node.name)
        kernel = tuple(ints_attr(node, "kernel_shape"))
        out = window_geometry(node, x.shape[2:], kernel)[3]
        result = [TensorType(x.dtype, (x.shape[0], x.shape[1], *out))]
        if len(node.outputs) > 1 and node.outputs[1]:
            result.append(TensorType(DType.I64, result[0].shape))
        return result

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        x = graph.types[node.inputs[0]]
        kernel = ints_attr(node, "kernel_shape")
        strides, dilations, begins, out, ends = window_geometry(node, x.shape[2:], tuple(kernel))
        lift = 5 - x.rank  # 1-D and 2-D pools run as 3-D with unit leading dims

        def dims(values: list[int], fill: int) -> list[int]:
            return [fill] * lift + list(values)

        (D, H, W), (OD, OH, OW) = dims(list(x.shape[2:]), 1), dims(out, 1)
        column_major = node.int_attr("storage_order", 0)
        return {
            "N": x.shape[0], "C": x.shape[1], "D": D, "H": H, "W": W, "OD": OD, "OH": OH, "OW": OW,
            **dict(zip(("KD", "KH", "KW"), dims(kernel, 1))),
            **dict(zip(("SD", "SH", "SW"), dims(strides, 1))),
            **dict(zip(("DD", "DH", "DW"), dims(dilations, 1))),
            **dict(zip(("PD", "PH", "PW"), dims(begins, 0))),
            **dict(zip(("PD_end", "PH_end", "PW_end"), dims(ends, 0))),
            "is_max": node.op == "MaxPool",
            **self.max_rule(node, x, kernel, strides, dilations, begins, ends),
            "has_indices": len(node.outputs) > 1 and bool(node.outputs[1]),
            "column_major": bool(column_major),
            "count_include_pad": node.int_attr("count_include_pad", 0),
        }

    @references.f16_via_f32
    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        kernel = ints_attr(node, "kernel_shape")
        strides, dilations, begins, out, ends = window_geometry(node, x.shape[2:], tuple(kernel))
        if node.op == "AveragePool":
            include = bool(node.int_attr("count_include_pad", 0))
            return [references.average_pool(x, kernel, strides, dilations, begins, out, ends,
                                            include)]
        column_major = bool(node.int_attr("storage_order", 0))
        rule = self.max_rule(node, TensorType.of(x), kernel, strides, dilations, begins, ends)
        values, indices = references.max_pool(x, kernel, strides, dilations, begins, out,
                                              column_major, str(rule["rule"]),
                                              bool(rule["column_from_first_row"]))
        return [values, indices][:len(node.outputs)]

    @staticmethod
    def max_rule(node: Node, x: TensorType, kernel: list[int], strides: list[int],
                 dilations: list[int], begins: list[int], ends: list[int]) -> dict[str, object]:
        """Which of onnxruntime's MaxPool implementations decides where NaN wins (the CPU
        pool template describes each), and the lowest value its maximum starts from (the finite
        lowest: an all -inf window gives -FLT_MAX there). float32 without Indices and with unit
        dilations: MLAS (global; vectorized for strides <= 2 along W and kernels <= 32 whose
        padded width fits its 2045-float buffer; else generic); otherwise (Indices, float64,
        integers, dilations) its own scan: the first element, then strictly greater ones."""
        spatial = list(x.shape[2:])
        has_indices = len(node.outputs) > 1 and bool(node.outputs[1])
        if has_indices or x.dtype is not DType.F32 or any(d != 1 for d in dilations):
            rule = "first_strict"
        elif kernel == spatial and all(s == 1 for s in strides) and not any(begins + ends):
            rule = "mlas_global"
        elif (len(spatial) >= 2 and strides[-1] <= 2 and all(k <= 32 for k in kernel)
              and begins[-1] + ends[-1] + spatial[-1] <= 2045):
            rule = "mlas_vector"
        else:
            rule = "lowest_std"
        # ml_dtypes.finfo: np.finfo knows bfloat16 only with some ml_dtypes versions
        lowest = (float(ml_dtypes.finfo(x.dtype.numpy).min) if x.dtype.is_float
                  else start_value("lowest", x.dtype))
        return {"rule": rule, "column_from_first_row": len(spatial) == 2,
                "lowest": Scalar(x.dtype, lowest)}


@register
class MaxPool(Pool):
    name = "MaxPool"
    dtypes = (DType.F32, DType.F64, DType.I8, DType.U8)


@register
class AveragePool(Pool):
    name = "AveragePool"


class GlobalPool(OpDef):
    category = KERNEL
    dtypes = (DType.F32, DType.F64)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        x = require(types, 0, node)
        if x.rank < 3:
            raise PycError("E009", f"{node.op} needs an input of rank 3 or more (N, C, spatial), "
                           f"got {list(x.shape)}", where=node.name)
        return [TensorType(x.dtype, x.shape[:2] + (1,) * (x.rank - 2))]


@register
class GlobalAveragePool(GlobalPool):
    name = "GlobalAveragePool"

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        return [x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)]


@register
class GlobalMaxPool(GlobalPool):
    name = "GlobalMaxPool"

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        x = np.asarray(inputs[0])
        return [x.max(axis=tuple(range(2, x.ndim)), keepdims=True)]
