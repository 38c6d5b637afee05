"""PyC IR: a typed SSA graph of ONNX-like nodes over static tensors.

Values are named; every value has exactly one definition (a graph input, a constant or one node
output). Nodes are kept in a valid topological order, which is also the execution schedule.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .annotations import Annotations
from .symbolic import EntryStep
from .types import DType, TensorType

AttrValue = int | float | str | list[int] | list[float] | list[str] | np.ndarray


def unique_name(base: str, used: set[str]) -> str:
    """`base`, or `base_1`, `base_2`, ...: the first not in `used`, which then holds it."""
    candidate, index = base, 1
    while candidate in used:
        candidate, index = f"{base}_{index}", index + 1
    used.add(candidate)
    return candidate


@dataclass
class Node:
    """One operation. Absent optional inputs are the empty string, as in ONNX. `attrs` holds the
    op's ONNX attributes only; what passes decide about the node lives in `ann`."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, AttrValue] = field(default_factory=dict)
    ann: Annotations = field(default_factory=Annotations)

    def attr(self, key: str, default: AttrValue | None = None) -> AttrValue | None:
        return self.attrs.get(key, default)

    def int_attr(self, key: str, default: int | None = None) -> int:
        """An integer ONNX attribute (`default` when absent; KeyError when absent without one)."""
        return int(self._number(key, default))

    def float_attr(self, key: str, default: float | None = None) -> float:
        """A float ONNX attribute (`default` when absent; KeyError when absent without one)."""
        return float(self._number(key, default))

    def _number(self, key: str, default: float | None) -> int | float | np.number:
        value = self.attrs.get(key, default)
        if value is None:
            raise KeyError(f"node {self.name!r} has no attribute {key!r}")
        if isinstance(value, (int, float, np.number)):
            return value
        if isinstance(value, np.ndarray) and value.size == 1:
            return value.reshape(()).item()  # type: ignore[no-any-return]
        raise TypeError(f"attribute {key!r} of node {self.name!r} is not a number: {value!r}")

    def present_inputs(self) -> list[str]:
        return [name for name in self.inputs if name]


@dataclass
class Graph:
    name: str
    inputs: list[str]
    outputs: list[str]
    nodes: list[Node]
    types: dict[str, TensorType]
    constants: dict[str, np.ndarray]
    opset: int
    # the ONNX names of the outputs, by position, where a pass had to give an output value an
    # internal name (an input or a repeated value returned as an output gets a copy); empty: same
    output_names: list[str] = field(default_factory=list)
    # a 16-bit storage type of float32 activations (the CUDA target at --precision fp16 / bf16):
    # a value typed this dtype holds a float32 value rounded to it, which the op rules (and the
    # verifier) read as float32; None: every value is what its type says
    activation_storage: DType | None = None
    # the values integer/float graph inputs may hold, as declared (`pyc build --input-values
    # x=0..64`): the bounds of sizes computed at run time from them (issue #15, point 2)
    value_bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    # what the entry point computes and checks before the first kernel, as the shape rules
    # decided it (OpDef.entry_steps, collected by infer_shapes; abi.entry_steps writes it in C)
    entry_steps: list[EntryStep] = field(default_factory=list)

    def public_outputs(self) -> list[str]:
        """The names callers see for the outputs, in order (ONNX names, repeats included)."""
        return list(self.output_names) if self.output_names else list(self.outputs)

    def clone(self) -> Graph:
        return copy.deepcopy(self)

    def producers(self) -> dict[str, Node]:
        return {out: node for node in self.nodes for out in node.outputs if out}

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in node.present_inputs():
                users.setdefault(name, []).append(node)
        return users

    def is_constant(self, name: str) -> bool:
        return name in self.constants

    def is_private_constant(self, name: str) -> bool:
        """A constant no graph output is and exactly one node reads (a kernel may then read
        it through a build-time transform of the weights file)."""
        return name in self.constants and name not in self.outputs \
            and sum(name in n.present_inputs() for n in self.nodes) == 1

    def type_of(self, name: str) -> TensorType:
        return self.types[name]

    def computed_type(self, name: str) -> TensorType | None:
        """The type ops compute `name` in: its type, but float32 for an activation stored in
        16 bits (`activation_storage`, the CUDA target's store_16bit); None if untyped."""
        ttype = self.types.get(name)
        if ttype is None or self.activation_storage is None \
                or ttype.dtype is not self.activation_storage:
            return ttype
        return TensorType(DType.F32, ttype.shape)

    def fresh_name(self, base: str) -> str:
        """A value or node name not yet used; deterministic (counter suffix, no hashing)."""
        taken = set(self.types) | {n.name for n in self.nodes}
        if base not in taken:
            return base
        index = 1
        while f"{base}_{index}" in taken:
            index += 1
        return f"{base}_{index}"

    def add_constant(self, base: str, array: np.ndarray) -> str:
        name = self.fresh_name(base)
        self.constants[name] = array
        self.types[name] = TensorType.of(array)
        return name

    def replace_uses(self, old: str, new: str) -> None:
        """Redirect every use of value `old` (node inputs and graph outputs) to `new`."""
        for node in self.nodes:
            node.inputs = [new if name == old else name for name in node.inputs]
        self.outputs = [new if name == old else name for name in self.outputs]

    def remove_unused_types(self) -> None:
        used = set(self.inputs) | set(self.outputs) | set(self.constants)
        for node in self.nodes:
            used.update(node.present_inputs())
            used.update(node.outputs)
        for name in [n for n in self.types if n not in used]:
            del self.types[name]

    def walk(self, ops: Iterable[str]) -> Iterator[Node]:
        wanted = set(ops)
        return (node for node in self.nodes if node.op in wanted)

    def intermediates(self) -> list[str]:
        """Values produced by nodes that are not graph outputs, in schedule order."""
        outputs = set(self.outputs)
        return [o for node in self.nodes for o in node.outputs if o and o not in outputs]
