"""IR verifier, run after every pass: SSA, topological order, no dangling uses, consistent types.

The IR knows no op; the caller hands in the op rules (the op registry's `lookup`), so that types
are checked against each op's own shape rule without the IR importing the ops above it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

import numpy as np

from ..errors import PycError
from .graph import Graph, Node
from .symbolic import NUMBERS_HINT, has_dims
from .types import TensorType


class OpRule(Protocol):
    """What the verifier asks of an op: its category ("view" for ops whose output is the input's
    bytes) and its shape/type rule."""

    category: str

    def infer(self, node: Node, types: list[TensorType | None],
              values: list[np.ndarray | None]) -> list[TensorType]: ...


OpRules = Callable[[str], OpRule | None]  # op name -> its rule, None when unregistered
KernelNames = Callable[[str], Collection[str]]  # op name -> the build target's candidate names


def verify(graph: Graph, rules: OpRules, after: str = "import", check_types: bool = True,
           kernels: KernelNames | None = None) -> None:
    """`kernels` (the build target's candidates per op) checks recorded kernel choices too."""
    problems = list(_structural_problems(graph, rules, kernels))
    if not problems and check_types:
        problems += list(_type_problems(graph, rules))
    if problems:
        shown = "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        if _symbolic_inputs(graph):
            # a pass lost symbolic dims (issue #15): a limit of this compiler, not a user mistake
            raise PycError("E051", f"a pass does not keep symbolic dims yet ({after}: {shown})",
                           hint=NUMBERS_HINT)
        raise PycError("E090", f"IR verification failed after {after}: {shown}",
                       hint="this is a compiler bug; rerun with --debug and report it")


def _symbolic_inputs(graph: Graph) -> bool:
    return any(has_dims(graph.types[name].shape) for name in graph.inputs if name in graph.types)


def _structural_problems(graph: Graph, rules: OpRules, kernels: KernelNames | None):  # noqa: ANN202
    defined: set[str] = set()
    for name in list(graph.inputs) + list(graph.constants):
        if name in defined:
            yield f"value {name!r} defined twice"
        defined.add(name)
        if name not in graph.types:
            yield f"value {name!r} has no type"
    node_names: set[str] = set()
    for node in graph.nodes:
        if node.name in node_names:
            yield f"node name {node.name!r} used twice"
        node_names.add(node.name)
        rule = rules(node.op)
        if rule is None:
            yield f"node {node.name!r} has unregistered op {node.op}"
        else:
            yield from _annotation_problems(node, rule, kernels)
        for name in node.present_inputs():
            if name not in defined:
                yield f"node {node.name!r} uses {name!r} before any definition"
        for name in node.outputs:
            if not name:
                continue
            if name in defined:
                yield f"value {name!r} defined twice (SSA violated at node {node.name!r})"
            if name not in graph.types:
                yield f"value {name!r} has no type"
            defined.add(name)
    for name in graph.outputs:
        if name not in defined:
            yield f"graph output {name!r} is never defined"


def _type_problems(graph: Graph, rules: OpRules):  # noqa: ANN202
    for name, array in graph.constants.items():
        ttype = graph.types[name]
        if tuple(array.shape) != ttype.shape or array.dtype != ttype.dtype.numpy:
            yield f"constant {name!r} is {array.dtype}{list(array.shape)} but typed {ttype}"
    for node in graph.nodes:
        opdef = rules(node.op)
        if opdef is None:
            continue  # reported by the structural check
        # a value stored in 16 bits is a float32 value to the op's rule
        in_types = [graph.computed_type(n) if n else None for n in node.inputs]
        in_values = [graph.constants.get(n) if n else None for n in node.inputs]
        try:
            expected = opdef.infer(node, in_types, in_values)
        except PycError as exc:
            # ops whose shape depends on a non-constant value are checked by infer_shapes only
            if exc.code == "E008":
                continue
            yield f"node {node.name!r}: {exc.what}"
            continue
        for name, ttype in zip(node.outputs, expected):
            if name and graph.types[name] != ttype and graph.computed_type(name) != ttype:
                yield f"node {node.name!r} output {name!r} typed {graph.types[name]}, rule says {ttype}"


def _annotation_problems(node: Node, rule: OpRule, kernels: KernelNames | None):  # noqa: ANN202
    """Cheap sanity of what passes recorded: a known kernel, operand positions in range."""
    ann, count = node.ann, len(node.inputs)
    if ann.kernel is not None and kernels is not None:
        names = kernels(node.op)
        alias = {"view": rule.category == "view",
                 "in_place": len(ann.inplace_inputs) == count}.get(ann.kernel.candidate)
        if not alias and ann.kernel.candidate not in names:
            yield f"node {node.name!r}: kernel {ann.kernel.candidate!r} is no {node.op} candidate"
    if node.op == "pyc.Elementwise" and not ann.program:
        yield f"node {node.name!r}: an elementwise node without a program"
    if ann.prologue_inputs > count or (ann.prologue and not ann.prologue_inputs):
        yield f"node {node.name!r}: prologue operands do not match its inputs"
    first = ann.epilogue_first_input
    if first is not None and not 0 <= first <= count - ann.prologue_inputs:
        yield f"node {node.name!r}: epilogue operands start at {first}, past its inputs"
    if ann.inplace_operand is not None and not 0 <= ann.inplace_operand < count:
        yield f"node {node.name!r}: in-place operand {ann.inplace_operand} is not an input"
    if any(not 0 <= k < count for k in ann.inplace_inputs):
        yield f"node {node.name!r}: in-place inputs {ann.inplace_inputs} out of range"
    if any(not 0 <= k < count for k in ann.norm_inputs) or \
            bool(ann.norm_from) != bool(ann.norm_inputs):
        yield f"node {node.name!r}: fused normalization inputs {ann.norm_inputs} do not match"
