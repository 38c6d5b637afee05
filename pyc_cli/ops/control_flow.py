"""If: inlined where its condition is a compile-time constant, else a run-time branch.

The importer replaces an If whose condition is a compile-time constant (exporters compute it
from input shapes: Shape -> Gather -> Equal) with the nodes of the branch it selects
(frontend/onnx_import.py). An If whose condition is known only at run time is imported as both
branches' nodes, inlined, and a `pyc.If` node selecting their outputs by the condition; the
CPU target runs each node only where the branch that needs it is taken (ir/guards.py). An `If`
op left in the graph (neither form applies) is refused with a reason-coded error naming it.
"""

from __future__ import annotations

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.symbolic import computed_dim
from ..ir.types import MODEL_DTYPES, DType, TensorType
from .registry import KERNEL, InTypes, InValues, OpDef, register, require


@register
class If(OpDef):
    name = "If"
    since = 1
    category = KERNEL  # never lowered: no If reaches the passes (the importer replaces it)
    dtypes = (DType.BOOL,)  # the condition's type; the branches may produce any tensor type
    static_inputs = (0,)  # inlined where the condition is known (a run-time one: pyc.If)
    lowering = ("inlined at import (the branch a constant condition selects; with a run-time "
                "condition both branches and a pyc.If, which runs one)")

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        raise not_constant_error(node)

    def flops(self, node: Node, graph: Graph) -> int:
        return 0


def not_constant_error(node: Node) -> PycError:
    cond = node.inputs[0] if node.inputs else ""
    return PycError("E008", f"If {node.name!r}: its condition {cond!r} is not a compile-time "
                    "constant (data-dependent control flow)", where=f"node {node.name!r}",
                    hint="fix the input shapes with --input-shape so the condition folds, or "
                    "export the model with the branch already chosen")


@register
class RunTimeIf(OpDef):
    """`pyc.If(cond, then_0..then_{n-1}, else_0..else_{n-1}) -> out_0..out_{n-1}`: output i is
    then_i where the run-time scalar `cond` is true, else else_i. Both branches' nodes are in
    the graph before it (the importer inlines them); which of them run is decided at run time
    by the condition (ir/guards.py), so a branch not taken costs nothing but its arena slots.
    Both branches give each output one dtype and rank (or shapes differing by leading 1-axes);
    an axis whose size differs between them is a dim computed at run time (the taken one)."""

    name = "If"
    domain = "pyc"
    category = KERNEL
    dtypes = (DType.BOOL,)  # the condition's type; the branches may produce any tensor type
    lowering = "both branches compiled; the condition picks the one that runs (run time)"

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        cond = require(types, 0, node)
        if cond.numel != 1:
            raise PycError("E008", f"If {node.name!r}: its condition {node.inputs[0]!r} has "
                           f"{cond.numel} elements, not one", where=f"node {node.name!r}")
        count = branch_outputs(node)
        result = []
        for index in range(count):
            then_type = require(types, 1 + index, node)
            else_type = require(types, 1 + count + index, node)
            joined = joined_type(then_type, else_type) or \
                branch_sized_type(node, index, then_type, else_type)
            if joined is None:
                raise differing_types_error(node, index, then_type, else_type)
            result.append(joined)
        return result

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        count = branch_outputs(node)
        take = bool(np.asarray(inputs[0]).reshape(-1)[0])
        first = 1 if take else 1 + count
        return [np.asarray(value) for value in inputs[first:first + count]]

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        return {"count": branch_outputs(node)}

    def flops(self, node: Node, graph: Graph) -> int:
        return 0


@register
class Unreachable(OpDef):
    """`pyc.Unreachable(like_0..like_{n-1}) -> out_0..out_{n-1}`: stands for a branch of a
    run-time If that cannot be compiled for the model's input shapes (an op's rule refuses
    them there: Silero VAD's 8 kHz branch with a 16 kHz chunk, which onnxruntime refuses at run
    time too). Each output has the type of its `like` input (the other branch's output), so
    the If types; reaching it at run time stops the run with PYC_STATUS_BRANCH_NOT_COMPILED
    (PYC-E053 naming the If, the branch and why). It reads nothing: the `like` inputs only type
    it (frontend/branch_traps.py places it)."""

    name = "Unreachable"
    domain = "pyc"
    category = KERNEL
    dtypes = MODEL_DTYPES
    lowering = "a branch that could not be compiled: taking it stops the run (PYC-E053)"

    def dtype_values(self, node: Node) -> list[str]:
        return []  # any types: those of the branch it stands for

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        return [require(types, index, node) for index in range(len(node.outputs))]

    def flops(self, node: Node, graph: Graph) -> int:
        return 0


def joined_type(then_type: TensorType, else_type: TensorType) -> TensorType | None:
    """The type of a pyc.If output: the branches' type where they agree; where they differ only
    by leading axes of size 1 (a scalar against `[1]`: the same bytes), the longer one, which
    the importer accepts only where no reader can tell (`padded_outputs`); else None."""
    if then_type == else_type:
        return then_type
    if then_type.dtype != else_type.dtype:
        return None
    short, long = sorted((then_type, else_type), key=lambda t: len(t.shape))
    extra = len(long.shape) - len(short.shape)
    if long.shape[extra:] != short.shape or any(d != 1 for d in long.shape[:extra]):
        return None
    return long


def branch_sized_type(node: Node, index: int, then_type: TensorType,
                      else_type: TensorType) -> TensorType | None:
    """Branches of one rank and dtype whose sizes differ: each differing axis of output
    `index` is a dim the pyc.If computes at run time (the taken branch's size; bounded by the
    larger upper bound), shared by nothing else; None for another rank or dtype. The computed
    dim's "axis" is `index * 100 + axis` (one name per output and axis)."""
    if then_type.dtype != else_type.dtype or len(then_type.shape) != len(else_type.shape):
        return None
    shape = tuple(t if t == e else computed_dim(node.name, index * 100 + axis, max(int(t), int(e)))
                  for axis, (t, e) in enumerate(zip(then_type.shape, else_type.shape)))
    return TensorType(then_type.dtype, shape)


def padded_outputs(node: Node, types: dict[str, TensorType]) -> list[int]:
    """The outputs of a pyc.If whose branches differ in rank (by leading 1-axes: joined_type)."""
    count = branch_outputs(node)
    return [i for i in range(count) if node.outputs[i] and len(types[node.inputs[1 + i]].shape)
            != len(types[node.inputs[1 + count + i]].shape)]


def differing_types_error(node: Node, index: int, then_type: TensorType,
                          else_type: TensorType, why: str = "") -> PycError:
    return PycError(
        "E008", f"If {node.name!r}: output {index} ({node.outputs[index]!r}) is {then_type} in "
        f"the then branch and {else_type} in the else branch{why}; a condition computed at run "
        "time needs both branches to give the same type", where=f"node {node.name!r}",
        hint="fix the input shapes or values so the condition folds at compile time")


def branch_outputs(node: Node) -> int:
    """How many outputs a pyc.If selects (its inputs: the condition, then n, then n)."""
    count = len(node.outputs)
    if len(node.inputs) != 1 + 2 * count:
        raise PycError("E008", f"If {node.name!r} has {len(node.inputs)} inputs, not "
                       f"1 + 2 x {count} outputs", where=f"node {node.name!r}")
    return count
