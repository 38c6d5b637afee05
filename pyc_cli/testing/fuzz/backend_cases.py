"""Fallback spec: a valid (node, input types, input data) example taken from the ONNX backend node
tests shipped with the onnx package, for any registered op that has no spec of its own.

The node keeps its attributes; its first float input is wired to a value of the graph (or a new
graph input) of the same type, so the op sits inside a random graph; integer and boolean inputs
and the op's static (shape-like) inputs become initializers holding the test's data, which keeps
indices and shapes valid. Loading the cases takes ~10 s, so it happens once, on first use.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import onnx

from ...ops import registry
from .builder import FLOATS, GraphBuilder, Reject, Value


@dataclass(frozen=True)
class Example:
    name: str
    node: onnx.NodeProto
    opset: int
    inputs: tuple[np.ndarray | None, ...]  # data per node input ('' inputs are None)


@functools.lru_cache(maxsize=1)
def examples_by_op() -> dict[str, list[Example]]:
    from onnx.backend.test.case import node as node_cases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases()
    found: dict[str, list[Example]] = {}
    for case in cases:
        graph = case.model.graph
        if len(graph.node) != 1 or not case.data_sets or graph.node[0].domain not in ("", "ai.onnx"):
            continue
        node = graph.node[0]
        opset = next((o.version for o in case.model.opset_import if o.domain in ("", "ai.onnx")), 0)
        feeds = dict(zip([i.name for i in graph.input], case.data_sets[0][0]))
        if any(name and name not in feeds for name in node.input):
            continue
        try:
            inputs = tuple(_as_array(feeds[name]) if name else None for name in node.input)
        except ValueError:  # sequence or optional inputs: not tensors
            continue
        found.setdefault(node.op_type, []).append(Example(case.name, node, opset, inputs))
    return found


def _as_array(value: object) -> np.ndarray:
    if isinstance(value, onnx.TensorProto):
        return onnx.numpy_helper.to_array(value)
    if not isinstance(value, np.ndarray):
        raise ValueError("not a tensor")
    return value


def usable(example: Example, opset: int) -> bool:
    """The op exists at `opset` (whether the example's node is valid under that schema version
    is left to shape inference and the checker, which reject it otherwise)."""
    try:
        onnx.defs.get_schema(example.node.op_type, opset)
    except onnx.defs.SchemaError:
        return False
    return True


def spec_backend(b: GraphBuilder, op: str) -> None:
    examples = [e for e in examples_by_op().get(op, []) if usable(e, b.opset)]
    example = b.choice(examples)
    opdef = registry.lookup(op)
    static = set(opdef.static_inputs) if opdef else set()
    operands: list[Value | None] = []
    wired = False
    for position, data in enumerate(example.inputs):
        if data is None:
            operands.append(None)
            continue
        dtype = onnx.helper.np_dtype_to_tensor_dtype(data.dtype)
        if dtype in FLOATS and position not in static and (not wired or b.chance(0.2)):
            same = [v for v in b.values if v.dtype == dtype and v.shape == data.shape]
            operands.append(b.choice(same) if same and b.chance(0.7) else b.new_input(dtype, data.shape))
            wired = True
        else:
            operands.append(b.const(data, "bk"))
    if not example.node.output:
        raise Reject("example has no outputs")
    b.add(op, operands, n_outputs=len(example.node.output), attr_protos=list(example.node.attribute))
