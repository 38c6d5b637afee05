"""Einsum, decomposed by canonicalize into Mul (diagonals), ReduceSum, Transpose, Reshape and
MatMul: each operand first takes its repeated labels' diagonals and sums the labels nothing
later needs, then operands are contracted pairwise, left to right, as one batched MatMul
([batch.., left, contracted] @ [batch.., contracted, right]), or a broadcast Mul when no label
is contracted; a final Transpose puts the labels in the output's order. Covers the
matmul-like forms ("bij,bjk->bik", "bhid,bhjd->bhij", "...ij,...jk->...ik", "i,i->"),
transposes, sums and diagonals ("ii->i", "...ii->...i")."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph, Node
from ..ir.types import DType, TensorType
from .registry import KERNEL, InTypes, InValues, OpDef, register, require, typed_node


@dataclass(frozen=True)
class Equation:
    """Operand and output labels; ellipsis dims get the labels '0', '1', ... counted from the
    right end of the broadcast dims, so they line up across operands of different ranks."""

    inputs: tuple[tuple[str, ...], ...]
    output: tuple[str, ...]
    text: str


def _fail(node: Node, why: str) -> PycError:
    return PycError("E008", f"Einsum equation {str(node.attrs.get('equation', ''))!r} is not "
                    f"supported: {why}", where=node.name)


def _terms(node: Node, term: str, rank: int | None, ellipsis: int) -> tuple[str, ...]:
    if term.count("...") > 1 or (term.replace("...", "") and not term.replace("...", "").isalpha()):
        raise _fail(node, f"term {term!r} is not letters with at most one '...'")
    if "..." not in term:
        if rank is not None and len(term) != rank:
            raise PycError("E009", f"Einsum term {term!r} does not match an input of rank {rank}",
                           where=node.name)
        return tuple(term)
    head, tail = term.split("...")
    dims = ellipsis if rank is None else rank - len(head) - len(tail)
    if dims < 0:
        raise PycError("E009", f"Einsum term {term!r} has more labels than its input has dims",
                       where=node.name)
    return (*head, *(str(k) for k in reversed(range(dims))), *tail)


def parse(node: Node, ranks: list[int]) -> Equation:
    text = "".join(str(node.attrs.get("equation", "")).split())
    left, arrow, right = text.partition("->")
    terms = left.split(",")
    if len(terms) != len(ranks):
        raise PycError("E009", f"Einsum equation {text!r} has {len(terms)} operands, the node "
                       f"{len(ranks)}", where=node.name)
    ellipsis = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t),
                   default=0)
    inputs = tuple(_terms(node, t, r, ellipsis) for t, r in zip(terms, ranks))
    if arrow:
        output = _terms(node, right, None, ellipsis)
    else:  # implicit output: broadcast dims, then the labels used once, in alphabetical order
        used = [label for labels in inputs for label in labels]
        output = tuple(str(k) for k in reversed(range(ellipsis))) + tuple(
            sorted(label for label in set(used) if label.isalpha() and used.count(label) == 1))
    if len(set(output)) != len(output):
        raise PycError("E009", f"Einsum output {right!r} repeats a label", where=node.name)
    every = {label for labels in inputs for label in labels}
    if set(output) - every:
        raise PycError("E009", f"Einsum output labels {sorted(set(output) - every)} appear in no "
                       "input", where=node.name)
    return Equation(inputs, output, text)


def label_sizes(node: Node, eq: Equation, shapes: list[tuple[int, ...]]) -> dict[str, int]:
    """Each label's size; a broadcast ('...') label may be 1 in some operands."""
    sizes: dict[str, int] = {}
    for labels, shape in zip(eq.inputs, shapes):
        for label, size in zip(labels, shape):
            known = sizes.get(label, size)
            if known != size and not (label.isdigit() and 1 in (known, size)):
                raise PycError("E009", f"Einsum label {label!r} has sizes {known} and {size}",
                               where=node.name)
            sizes[label] = max(known, size) if label.isdigit() else size
    return sizes


@register
class Einsum(OpDef):
    name = "Einsum"
    since = 12
    category = KERNEL  # never lowered: canonicalize always decomposes it
    dtypes = (DType.F32, DType.F64)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        inputs = [require(types, i, node) for i in range(len(node.inputs))]
        eq = parse(node, [t.rank for t in inputs])
        sizes = label_sizes(node, eq, [t.shape for t in inputs])
        return [TensorType(inputs[0].dtype, tuple(sizes[label] for label in eq.output))]

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        arrays = [np.asarray(x) for x in inputs]
        text = "".join(str(node.attrs.get("equation", "")).split())
        # (np.asarray, not ascontiguousarray: that one turns a scalar result into shape [1])
        return [np.asarray(np.einsum(text, *arrays), order="C").astype(arrays[0].dtype)]

    def flops(self, node: Node, graph: Graph) -> int:
        return 0

    def decompose(self, node: Node, graph: Graph, values: InValues) -> list[Node] | None:
        return _Decomposer(node, graph).run()


class _Decomposer:
    def __init__(self, node: Node, graph: Graph) -> None:
        self.node, self.graph = node, graph
        shapes = [graph.types[name].shape for name in node.inputs]
        self.eq = parse(node, [len(s) for s in shapes])
        self.sizes = label_sizes(node, self.eq, shapes)
        self.dtype = graph.types[node.inputs[0]].dtype
        self.nodes: list[Node] = []

    def emit(self, op: str, inputs: list[str], attrs: dict | None = None) -> str:
        base = f"{self.node.name}_{len(self.nodes)}_{op.lower()}"
        self.nodes.append(typed_node(self.graph, op, inputs, base, attrs or {}))
        return self.nodes[-1].outputs[0]

    def shape(self, value: str) -> tuple[int, ...]:
        return self.graph.types[value].shape

    def reshape(self, value: str, dims: list[int]) -> str:
        if list(self.shape(value)) == dims:
            return value
        target = self.graph.add_constant(f"{self.node.name}_shape", np.array(dims, np.int64))
        return self.emit("Reshape", [value, target], {"allowzero": 1})  # exact: 0 is a 0-size dim

    def transpose(self, value: str, labels: list[str], order: list[str]) -> str:
        perm = [labels.index(label) for label in order]
        return value if perm == sorted(perm) else self.emit("Transpose", [value], {"perm": perm})

    def reduce(self, value: str, labels: list[str], keep: set[str]) -> tuple[str, list[str]]:
        """Sum the labels not in `keep` (also the diagonal's duplicates, taken first)."""
        while (dup := next((lb for lb in labels if labels.count(lb) > 1), None)) is not None:
            first = labels.index(dup)
            second = labels.index(dup, first + 1)
            n = self.shape(value)[first]
            if self.shape(value)[second] != n:
                raise PycError("E009", f"Einsum diagonal label {dup!r} has two sizes",
                               where=self.node.name)
            value, labels = self.diagonal(value, labels, first, second, n)
        axes = [i for i, label in enumerate(labels) if label not in keep]
        if axes:
            value = self.emit("ReduceSum", [value], {"axes": axes, "keepdims": 0})
            labels = [label for label in labels if label in keep]
        return value, labels

    def diagonal(self, value: str, labels: list[str], first: int, second: int, n: int
                 ) -> tuple[str, list[str]]:
        """The diagonal of axes `first` and `second`, moved last: a strided Slice of the two
        axes flattened (step n + 1). A mask multiply and sum would turn a NaN or inf off the
        diagonal into NaN on it (0 * inf), which onnxruntime does not (fuzz seed 2714916276)."""
        rest = [i for i in range(len(labels)) if i not in (first, second)]
        perm = rest + [first, second]
        if perm != sorted(perm):
            value = self.emit("Transpose", [value], {"perm": perm})
        dims = [self.shape(value)[i] for i in range(len(rest))]
        value = self.reshape(value, [*dims, n * n])
        const = self.graph.add_constant
        name = self.node.name
        value = self.emit("Slice", [value, const(f"{name}_starts", np.array([0], np.int64)),
                                    const(f"{name}_ends", np.array([n * n], np.int64)),
                                    const(f"{name}_axes", np.array([-1], np.int64)),
                                    const(f"{name}_steps", np.array([n + 1], np.int64))])
        return value, [labels[i] for i in rest] + [labels[first]]

    def contract(self, a: str, la: list[str], b: str, lb: list[str], keep: set[str]
                 ) -> tuple[str, list[str]]:
        batch = [x for x in la if x in lb and x in keep]
        summed = [x for x in la if x in lb and x not in keep]
        left = [x for x in la if x not in lb]
        right = [x for x in lb if x not in la]
        shape_a, shape_b = dict(zip(la, self.shape(a))), dict(zip(lb, self.shape(b)))
        if any(shape_a[x] != shape_b[x] for x in summed):
            raise _fail(self.node, f"summed labels {summed} broadcast between operands")
        if not summed:  # nothing to contract: an elementwise (outer) product
            a = self.reshape(self.transpose(a, la, batch + left), [shape_a[x] for x in batch + left]
                             + [1] * len(right))
            b = self.reshape(self.transpose(b, lb, batch + right), [shape_b[x] for x in batch]
                             + [1] * len(left) + [shape_b[x] for x in right])
            return self.emit("Mul", [a, b]), batch + left + right
        a = self.transpose(a, la, batch + left + summed)
        b = self.transpose(b, lb, batch + summed + right)
        k = math.prod(shape_a[x] for x in summed)
        a = self.reshape(a, [shape_a[x] for x in batch]
                         + [math.prod(shape_a[x] for x in left), k])
        b = self.reshape(b, [shape_b[x] for x in batch]
                         + [k, math.prod(shape_b[x] for x in right)])
        product = self.emit("MatMul", [a, b])
        dims = list(self.shape(product)[:len(batch)])
        out = self.reshape(product, dims + [shape_a[x] for x in left] + [shape_b[x] for x in right])
        return out, batch + left + right

    def run(self) -> list[Node]:
        node, eq = self.node, self.eq
        output = list(eq.output)
        value, labels = "", []
        for index, (name, own) in enumerate(zip(node.inputs, eq.inputs)):
            later = set(output).union(*(set(t) for t in eq.inputs[index + 1:]))
            current, current_labels = self.reduce(name, list(own), later | set(labels))
            if index == 0:
                value, labels = current, current_labels
            else:
                value, labels = self.contract(value, labels, current, current_labels, later)
        value = self.transpose(value, labels, output)
        out_shape = list(self.graph.types[node.outputs[0]].shape)
        if list(self.shape(value)) != out_shape:  # broadcast dims of size 1 everywhere they occur
            value = self.reshape(value, out_shape)
        if not self.nodes or self.nodes[-1].outputs[0] != value:
            target = self.graph.add_constant(f"{node.name}_shape", np.array(out_shape, np.int64))
            self.emit("Reshape", [value, target], {"allowzero": 1})
        last = self.nodes[-1]
        self.graph.types.pop(last.outputs[0], None)
        last.outputs[0] = node.outputs[0]
        return self.nodes
