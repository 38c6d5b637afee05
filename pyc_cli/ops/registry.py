"""The op registry: the single source of truth for which ONNX ops PyC supports.

Each op is one small `OpDef` subclass registered with `@register`. It owns:
- `infer`: the static shape/dtype rule (constant input values are given where known),
- `evaluate`: a numpy reference, used by constant folding and as an oracle in tests,
- its lowering: either a scalar snippet (`category = ELEMENTWISE`, fused into loops), a view
  (`category = VIEW`, no code), or a kernel (`category = KERNEL`): each target declares its
  own kernel candidates for the op (pyc_cli/targets/<name>/kernels.py); the op gives the
  numbers they need (`kernel_params`),
- `flops`: a cost estimate used by kernel selection and reports.
The coverage table is generated from this registry; nothing lists ops a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import PycError
from ..ir.graph import AttrValue, Graph, Node
from ..ir.symbolic import Dim, EntryStep
from ..ir.types import DType, TensorType
from .intervals import Interval

ELEMENTWISE = "elementwise"
VIEW = "view"
KERNEL = "kernel"
SHAPE_ONLY = "shape_only"  # always folds to a constant once shapes are static (e.g. Shape)

InTypes = list[TensorType | None]
InValues = list[np.ndarray | None]
# the intervals of operands computed at run time (ops/intervals.py; None: unbounded)
InRanges = list[Interval | None]
# a size computed at run time from input values that nothing bounds
VALUES_HINT = ("the size depends on values computed at run time from graph inputs: declare the "
               "values those inputs may hold (pyc build --input-values NAME=LO..HI) so PyC can "
               "bound it")


@dataclass(frozen=True)
class Scalar:
    """A typed number in kernel params (also inside their lists and dicts); the target prints
    it as a literal of its own language (e.g. -INFINITY in C)."""

    dtype: DType
    value: float | int


class OpDef:
    """`since`/`until`: the ONNX schema versions of the op PyC implements (a model's opset picks
    one schema version per op; the importer rejects the others with PYC-E010). `dtypes`: element
    types accepted for the values `dtype_values` names (PYC-E008 otherwise). `static_inputs`:
    input positions that must be compile-time constants (shape-like operands)."""

    name: ClassVar[str] = ""
    domain: ClassVar[str] = ""
    since: ClassVar[int] = 1
    until: ClassVar[int] = 28
    category: ClassVar[str] = KERNEL
    dtypes: ClassVar[tuple[DType, ...]] = (DType.F32,)
    static_inputs: ClassVar[tuple[int, ...]] = ()
    # how an op that is neither lowered nor decomposed is compiled (the coverage table says it)
    lowering: ClassVar[str] = ""

    def dtype_values(self, node: Node) -> list[str]:
        """The values whose element type must be one of `dtypes` (by default the first input)."""
        return node.present_inputs()[:1]

    @property
    def computes_f16_in_f32(self) -> bool:
        """A kernel with a float32 path but no float16 one runs float16 values between casts
        (canonicalize inserts them), as onnxruntime's CPU provider does."""
        return self.category == KERNEL and DType.F32 in self.dtypes and DType.F16 not in self.dtypes

    def computes_bf16_in_f32(self, node: Node | None = None) -> bool:
        """bfloat16 values are computed in float32 between casts (canonicalize inserts them) by
        every op with a float32 path that does not take bfloat16 itself (`takes_bf16`):
        elementwise ops too, so each op's result is rounded to bfloat16 as the model stores it.
        Only Cast and the ops that move elements list BF16 (onnxruntime's CPU provider has no
        bfloat16 arithmetic kernel either)."""
        return self.category in (KERNEL, ELEMENTWISE) and DType.F32 in self.dtypes and \
            not self.takes_bf16(node)

    def takes_bf16(self, node: Node | None = None) -> bool:
        """Whether the op's kernels take bfloat16 values themselves (of this `node`: a Scatter
        reducing into its data computes, so it takes them only without a reduction)."""
        return DType.BF16 in self.dtypes

    def accepts(self, dtype: DType) -> bool:
        """Whether the op takes values of `dtype`: a declared type, or float16 / bfloat16 via
        float32."""
        return dtype in self.dtypes or (dtype is DType.F16 and self.computes_f16_in_f32) or \
            (dtype is DType.BF16 and self.category in (KERNEL, ELEMENTWISE) and DType.F32 in self.dtypes)

    def infer(self, node: Node, types: InTypes, values: InValues) -> list[TensorType]:
        raise NotImplementedError

    def evaluate(self, node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
        raise NotImplementedError

    def decompose(self, node: Node, graph: Graph, values: InValues) -> list[Node] | None:
        """Typed nodes of simpler ops that compute this one (canonicalize substitutes them; the
        last ones define the node's outputs), or None when the op lowers on its own. `values`
        holds the inputs known at compile time."""
        return None

    def kernel_params(self, node: Node, graph: Graph) -> dict[str, object]:
        """Op-specific numbers a kernel template needs (shapes, strides, attributes)."""
        return {}

    def flops(self, node: Node, graph: Graph) -> int:
        return sum(graph.types[o].numel for o in node.outputs if o)

    def entry_steps(self, node: Node, graph: Graph) -> list[EntryStep]:
        """The sizes the entry point must compute and the shape assumptions it must check
        before any kernel runs for this node's types to hold (issue #15, point 2: a shape
        operand computed from input values); none for most ops."""
        return []


REGISTRY: dict[str, OpDef] = {}


def register(cls: type[OpDef]) -> type[OpDef]:
    key = qualified(cls.domain, cls.name)
    if key in REGISTRY:
        raise ValueError(f"op {key} registered twice")
    REGISTRY[key] = cls()
    return cls


def qualified(domain: str, name: str) -> str:
    return name if domain in ("", "ai.onnx") else f"{domain}.{name}"


def lookup(op: str) -> OpDef | None:
    return REGISTRY.get(op)


def get(op: str) -> OpDef:
    opdef = lookup(op)
    if opdef is None:
        raise PycError("E007", f"operator {op} is not supported", hint="see docs/op_coverage.md")
    return opdef


def all_ops() -> dict[str, OpDef]:
    return dict(sorted(REGISTRY.items()))


# ---------------------------------------------------------------- helpers shared by op units


def typed_node(graph: Graph, op: str, inputs: list[str], base: str,
               attrs: dict[str, AttrValue] | None = None, output: str | None = None) -> Node:
    """Create a node with a fresh name and a typed fresh output (not yet inserted)."""
    name = graph.fresh_name(base)
    out = output or graph.fresh_name(f"{base}_out")
    node = Node(op, name, inputs, [out], dict(attrs or {}))
    in_types = [graph.types.get(i) if i else None for i in inputs]
    in_values = [graph.constants.get(i) if i else None for i in inputs]
    graph.types[out] = get(op).infer(node, in_types, in_values)[0]
    return node



# never materialize a computed constant this large when it would grow the data (e.g. a 32 GiB
# Expand): fold_constants does not fold it, and known_values does not evaluate it
GROWTH_LIMIT_BYTES = 16 << 20

def broadcast_shapes(*shapes: tuple[int, ...], where: str = "") -> tuple[int, ...]:
    """numpy broadcasting in Python integers (numpy's intp would overflow on huge shapes)."""
    rank = max((len(s) for s in shapes), default=0)
    result = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0} - {1}
        if len(dims) > 1:
            raise PycError("E009", f"shapes {[list(s) for s in shapes]} do not broadcast",
                           where=where)
        result.append(as_dim(dims.pop()) if dims else 1)
    return tuple(result)


def as_dim(value: int) -> int:
    """A plain int from numpy's, a symbolic dim (issue #15) as it is: int() would keep its upper
    bound only (the instance check would then refuse the node, see ops/propagate.py)."""
    return value if isinstance(value, Dim) else int(value)


def require(types: InTypes, index: int, node: Node) -> TensorType:
    found = types[index] if index < len(types) else None
    if found is None:
        raise PycError("E009", f"input {index} of {node.op} has no known type", where=node.name)
    return found


def require_value(values: InValues, index: int, node: Node, what: str) -> np.ndarray:
    found = values[index] if index < len(values) else None
    if found is None:
        raise PycError(
            "E008", f"{node.op} needs a constant {what} (input {index}) to have a static shape",
            where=f"node {node.name!r}",
            hint="fix the input shapes with --input-shape so shape computations fold; where the "
                 "operand is a graph input, bound its values with --input-values NAME=LO..HI "
                 "(docs/dynamic_shapes.md)",
        )
    return found


def normalize_axis(axis: int, rank: int, node: Node) -> int:
    # a rank-0 tensor has no axis at all (ONNX: axis in [-r, r-1]; kernels index shape[axis])
    if not -rank <= axis < rank:
        raise PycError("E009", f"axis {axis} out of range for rank {rank}", where=node.name)
    return axis + rank if axis < 0 else axis


def fused_inputs(node: Node) -> tuple[list[str], list[str], list[str]]:
    """A node's inputs split into (its own, a fused epilogue's operands, a fused prologue's
    operands); fusion appends epilogue operands, then the prologue's at the very end."""
    end = len(node.inputs) - node.ann.prologue_inputs
    first = end if node.ann.epilogue_first_input is None else node.ann.epilogue_first_input
    return node.inputs[:first], node.inputs[first:end], node.inputs[end:]


def own_inputs(node: Node) -> list[str]:
    """A node's inputs without the operands fused epilogues and prologues appended."""
    return fused_inputs(node)[0]


def ints_attr(node: Node, key: str, default: list[int] | None = None) -> list[int]:
    value = node.attrs.get(key, default)
    return [as_dim(v) for v in value] if value is not None else []  # type: ignore[union-attr, arg-type]


def shape_operand(node: Node, values: InValues, index: int, key: str, what: str) -> np.ndarray:
    """A shape-deciding operand: input `index` where the node has it, else the attribute `key`
    that passes/bind_shapes.py moved a symbolic value into (issue #15: ints and Dims), as an
    object array; PYC-E008 where neither is known."""
    if (len(node.inputs) <= index or not node.inputs[index]) and key in node.attrs:
        return np.array(node.attrs[key], dtype=object).reshape(-1)
    return require_value(values, index, node, what)
