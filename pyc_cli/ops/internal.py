"""PyC-internal ops produced by passes: fused elementwise loops and explicit copies."""

from __future__ import annotations

import numpy as np

from ..errors import PycError
from ..ir.ewprogram import Instr, is_literal, literal_parts, tensor_operand
from ..ir.graph import Graph, Node
from ..ir.symbolic import Dim, has_dims
from ..ir.types import MODEL_DTYPES, DType, TensorType
from .registry import (
    KERNEL,
    InTypes,
    InValues,
    OpDef,
    broadcast_shapes,
    get,
    ints_attr,
    register,
    require,
)

ALL_DTYPES = MODEL_DTYPES


def _with_symbols(node: Node, types: InTypes) -> tuple[int, ...]:
    """The output shape the fuse pass recorded (ints: a symbolic dim's upper bound), with the
    operands' symbolic dims (issue #15) where their broadcast has the same upper bounds."""
    shape = tuple(ints_attr(node, "shape"))
    present = [t.shape for t in types if t is not None]
    if not any(has_dims(s) for s in present):
        return shape
    try:
        operands = broadcast_shapes(*present, where=node.name)
    except PycError:
        return shape  # symbolic dims broadcast as checked at entry (ops/elementwise.py)
    if len(operands) < len(shape):
        return shape
    tail = operands[len(operands) - len(shape):]
    return tuple(o if isinstance(o, Dim) and int(o) == d else d for o, d in zip(tail, shape))


@register
class FusedElementwise(OpDef):
    """One loop over the output computing a scalar program per element (see ir/ewprogram.py)."""

    name = "Elementwise"
    domain = "pyc"
    category = KERNEL
    dtypes = ALL_DTYPES

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        return [TensorType(node.ann.program[-1].dtype, _with_symbols(node, types))]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """Runs the program one instruction at a time, each by the numpy reference of the op
        it names (its ONNX attributes rebuilt from the instruction's), on operands broadcast
        to the output shape."""
        shape = tuple(ints_attr(node, "shape"))
        return [np.broadcast_to(run_program(node.ann.program, inputs), shape).copy()]

    def flops(self, node: Node, graph: Graph) -> int:
        count = len(node.ann.program)
        return count * graph.types[node.outputs[0]].numel


def run_program(program: list[Instr], inputs: list[np.ndarray | None],
                acc: np.ndarray | None = None) -> np.ndarray:
    """A scalar program run one instruction at a time, each by the numpy reference of the op it
    names, on whole arrays (operands broadcast as numpy does); `acc` is what a fused epilogue
    applies to (a kernel's accumulator)."""
    env: dict[str, np.ndarray] = {} if acc is None else {"acc": acc}

    def operand(arg: str) -> np.ndarray:
        if is_literal(arg):
            dtype, number = literal_parts(arg)
            return np.asarray(number, dtype.numpy)
        index = tensor_operand(arg)
        return np.asarray(inputs[index]) if index is not None else env[arg]  # type: ignore[index]

    for instr in program:
        names, attrs = _onnx_form(instr)
        step = Node(instr.op, instr.dst, names, [instr.dst], attrs)
        values = [operand(a) for a in instr.args]
        slots = [values[int(n[3:])] if n else None for n in names]
        (result,) = get(instr.op).evaluate(step, slots)
        env[instr.dst] = np.asarray(result).astype(instr.dtype.numpy, copy=False)
    return env[program[-1].dst]


def _onnx_form(instr: Instr) -> tuple[list[str], dict[str, object]]:
    """The input slots (`arg<K>` for the instruction's K-th operand, "" for an absent optional
    input) and ONNX attributes of the op an instruction runs: the inverse of the ops'
    `scalar_attrs`, which fusion stored."""
    names = [f"arg{k}" for k in range(len(instr.args))]
    attrs: dict[str, object] = dict(instr.attrs)
    if instr.op == "Cast":
        attrs = {"to": instr.dtype.to_onnx()}
    elif instr.op == "Clip":  # bounds read per element sit at min_arg / max_arg
        slots = ["arg0", "", ""]
        for slot, key in ((1, "min_arg"), (2, "max_arg")):
            position = int(attrs.pop(key, -1))
            if position >= 0:
                slots[slot] = f"arg{position}"
        names = slots
    elif instr.op == "IsInf":
        attrs = {"detect_negative": attrs.get("negative", 1), "detect_positive": attrs.get("positive", 1)}
    elif instr.op == "BitShift":
        attrs = {"direction": "LEFT" if attrs.get("left") else "RIGHT"}
    return names, attrs


@register
class Copy(OpDef):
    """Materialize a value into its own buffer (e.g. a graph output that is a view or an input)."""

    name = "Copy"
    domain = "pyc"
    category = KERNEL
    dtypes = ALL_DTYPES

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        source = require(types, 0, node)
        shape = tuple(ints_attr(node, "shape")) if "shape" in node.attrs else source.shape
        return [TensorType(source.dtype, shape)]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        value = np.array(inputs[0])
        return [value.reshape(ints_attr(node, "shape")) if "shape" in node.attrs else value]

    def flops(self, node: Node, graph: Graph) -> int:
        return 0


@register
class DimValues(OpDef):
    """A small integer tensor computed from the run-time values of symbolic dims (issue #15):
    what a Shape -> Gather -> ... chain computes when a compute op reads it as data (e.g. a
    Mul by the sequence length). `values` holds the elements (ints and Dims), `shape` and
    `dtype` the tensor's type. Written by passes/bind_shapes.py, never by an exporter."""

    name = "DimValues"
    domain = "pyc"
    category = KERNEL
    dtypes = (DType.I32, DType.I64)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        return [TensorType(DType(str(node.attrs["dtype"])), tuple(ints_attr(node, "shape")))]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        """An object array of Dims (a symbolic value, never folded into a constant), or, at
        an instance of the dims (every element a number), the typed numbers."""
        elements = list(node.attrs["values"])  # type: ignore[arg-type]
        shape = tuple(ints_attr(node, "shape"))
        if has_dims(elements):
            return [np.array(elements, dtype=object).reshape(shape)]
        return [np.array(elements, dtype=DType(str(node.attrs["dtype"])).numpy).reshape(shape)]

    def flops(self, node: Node, graph: Graph) -> int:
        return 0
