"""GraphBuilder: grows one random ONNX graph node by node, keeping every value's static type.

Specs (specs.py) ask it for operands (`pick`, `new_input`, `const`) and add nodes with `add`,
which infers the node's output types with ONNX's own per-node shape inference; a node whose
types cannot be inferred (or come out symbolic) is dropped, so the graph stays valid as it grows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

F32, F64, F16 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16
I32, I64, BOOL = TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL
# the element types the fuzzer feeds (weights: float32 dominates, every other path is visited)
FUZZ_DTYPES = (F32, F64, F16, I32, I64, BOOL)
DTYPE_WEIGHTS = (0.55, 0.1, 0.09, 0.09, 0.1, 0.07)
FLOATS = (F32, F64, F16)
INTS = (I32, I64)
TYPE_STR = {F32: "tensor(float)", F64: "tensor(double)", F16: "tensor(float16)",
            I32: "tensor(int32)", I64: "tensor(int64)", BOOL: "tensor(bool)"}
MAX_NUMEL = 600  # small tensors keep builds and runs fast
DEFAULT_INT_RANGE = (-8, 8)


class Reject(Exception):
    """A spec could not produce a valid node from the current graph (the generator moves on)."""


@dataclass
class Value:
    name: str
    dtype: int  # ONNX elem type
    shape: tuple[int, ...]
    const: np.ndarray | None = None  # initializer data (compile-time constant)
    is_input: bool = False

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class GraphBuilder:
    rng: np.random.Generator
    opset: int
    zero_size: bool = False  # whether new shapes may hold a 0 dim
    primary: int = F32  # the element type new operands default to
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inputs: list[Value] = field(default_factory=list)
    initializers: list[Value] = field(default_factory=list)
    values: list[Value] = field(default_factory=list)
    ranges: dict[str, list[int]] = field(default_factory=dict)  # int input -> [lo, hi]
    nonzero: set[str] = field(default_factory=set)  # inputs that must hold no zero (divisors)
    counter: int = 0

    # ------------------------------------------------------------ naming and random choices

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def choice(self, items: Sequence):  # noqa: ANN201  (any element type)
        if not items:
            raise Reject("nothing to choose from")
        return items[int(self.rng.integers(len(items)))]

    def dim(self) -> int:
        if self.zero_size and self.chance(0.08):
            return 0
        return int(self.rng.choice([1, 1, 2, 3, 3, 4, 5, 7, 11, 13],
                                   p=[.12, .08, .16, .14, .08, .12, .12, .1, .04, .04]))

    def shape(self, rank: int | None = None) -> tuple[int, ...]:
        if rank is None:
            rank = int(self.rng.choice([0, 1, 2, 3, 4], p=[.08, .17, .3, .25, .2]))
        for _ in range(20):
            shape = tuple(self.dim() for _ in range(rank))
            if math.prod(shape) <= MAX_NUMEL:
                return shape
        return (1,) * rank

    def dtype(self, allowed: Sequence[int] = FUZZ_DTYPES) -> int:
        allowed = [d for d in allowed if d in FUZZ_DTYPES]
        if not allowed:
            raise Reject("no fuzzed dtype allowed")
        if self.primary in allowed and self.chance(0.6):
            return self.primary
        weights = np.array([DTYPE_WEIGHTS[FUZZ_DTYPES.index(d)] for d in allowed])
        return int(self.rng.choice(allowed, p=weights / weights.sum()))

    # ------------------------------------------------------------ operands

    def new_input(self, dtype: int, shape: tuple[int, ...], lo: int | None = None,
                  hi: int | None = None, nonzero: bool = False) -> Value:
        value = Value(self.fresh("in"), dtype, tuple(shape), is_input=True)
        self.inputs.append(value)
        self.values.append(value)
        if dtype not in FLOATS and dtype != BOOL:
            self.ranges[value.name] = [DEFAULT_INT_RANGE[0] if lo is None else lo,
                                       DEFAULT_INT_RANGE[1] if hi is None else hi]
        if nonzero:
            self.nonzero.add(value.name)
        return value

    def const(self, array: np.ndarray, prefix: str = "c", pool: bool = False) -> Value:
        """An initializer; `pool` makes it available as an operand of later nodes."""
        array = np.asarray(array)
        value = Value(self.fresh(prefix), onnx.helper.np_dtype_to_tensor_dtype(array.dtype),
                      tuple(array.shape), const=array)
        self.initializers.append(value)
        if pool:
            self.values.append(value)
        return value

    def random_array(self, dtype: int, shape: tuple[int, ...], lo: int = -4, hi: int = 4,
                     nonzero: bool = False) -> np.ndarray:
        np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
        if dtype == BOOL:
            return self.rng.integers(0, 2, shape).astype(bool)
        if dtype in FLOATS:
            array = self.rng.standard_normal(shape)
            if nonzero:
                array = np.where(np.abs(array) < 0.1, 0.5, array)
            return array.astype(np_dtype)
        array = self.rng.integers(lo, hi + 1, shape)
        if nonzero:
            array = np.where(array == 0, 1, array)
        return array.astype(np_dtype)

    def operand(self, dtype: int, shape: tuple[int, ...], nonzero: bool = False) -> Value:
        """A fresh operand of this type: a graph input or (sometimes) an initializer."""
        if self.chance(0.3):
            return self.const(self.random_array(dtype, shape, nonzero=nonzero), "w", pool=True)
        return self.new_input(dtype, shape, nonzero=nonzero)

    def pick(self, dtypes: Sequence[int], ok: Callable[[Value], bool] = lambda v: True,
             fresh: float = 0.15, rank: int | None = None) -> Value:
        """An existing value (recent ones preferred, so chains form) or a new operand."""
        candidates = [v for v in self.values if v.dtype in dtypes and ok(v)
                      and (rank is None or v.rank == rank)]
        if candidates and not self.chance(fresh):
            weights = np.arange(1, len(candidates) + 1, dtype=float) ** 2
            return candidates[int(self.rng.choice(len(candidates), p=weights / weights.sum()))]
        for _ in range(10):
            value_shape = self.shape(rank)
            dtype = self.dtype(dtypes)
            candidate = Value("", dtype, value_shape)
            if ok(candidate):
                return self.operand(dtype, value_shape)
        raise Reject("no operand satisfies the spec")

    def broadcast_partner(self, base: Value, dtype: int, nonzero: bool = False) -> Value:
        """An operand whose shape broadcasts with `base` (same, suffix, 1-dims, or bigger)."""
        same = [v for v in self.values if v.dtype == dtype and v.shape == base.shape
                and v.name != base.name]
        if same and self.chance(0.35) and not nonzero:
            return self.choice(same)
        shape = list(base.shape)
        kind = self.rng.integers(4)
        if kind == 1 and shape:  # drop leading dims
            shape = shape[int(self.rng.integers(1, len(shape) + 1)):]
        elif kind == 2:  # some dims to 1
            shape = [1 if self.chance(0.5) else d for d in shape]
        elif kind == 3 and len(shape) < 4:  # a bigger operand that `base` broadcasts into
            shape = [d if d != 1 else self.dim() for d in shape]
            if self.chance(0.5):
                shape = [self.dim()] + shape
            if math.prod(shape) > MAX_NUMEL:
                shape = list(base.shape)
        return self.operand(dtype, tuple(shape), nonzero=nonzero)

    # ------------------------------------------------------------ nodes

    def add(self, op: str, inputs: Sequence[Value | None], attrs: dict | None = None,
            n_outputs: int = 1, attr_protos: Sequence[onnx.AttributeProto] = ()) -> list[Value]:
        """Add one node; its outputs' types come from ONNX's shape inference for this opset."""
        outputs = [self.fresh("t") for _ in range(n_outputs)]
        names = [v.name if v is not None else "" for v in inputs]
        while names and names[-1] == "":
            names.pop()
        node = helper.make_node(op, names, outputs, name=self.fresh(f"{op}_"), **(attrs or {}))
        node.attribute.extend(attr_protos)
        types = self.infer(node, [v for v in inputs if v is not None])
        if any(v.numel > 4 * MAX_NUMEL for v in types):
            raise Reject("output too large")
        self.nodes.append(node)
        self.values.extend(types)
        return types

    def infer(self, node: onnx.NodeProto, inputs: list[Value]) -> list[Value]:
        try:
            schema = onnx.defs.get_schema(node.op_type, self.opset)
            known = {v.name: helper.make_tensor_type_proto(v.dtype, list(v.shape)) for v in inputs}
            data = {v.name: numpy_helper.from_array(v.const, v.name) for v in inputs
                    if v.const is not None}
            inferred = shape_inference.infer_node_outputs(
                schema, node, known, data, opset_imports=[helper.make_opsetid("", self.opset)])
        except Exception as exc:  # noqa: BLE001  (any inference failure just rejects the node)
            raise Reject(f"{node.op_type}: {exc}") from None
        values = []
        for name in node.output:
            if name not in inferred:
                raise Reject(f"{node.op_type}: output {name} not inferred")
            tensor = inferred[name].tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            if not tensor.HasField("shape") or any(d < 0 for d in dims):
                raise Reject(f"{node.op_type}: output {name} has no static shape")
            values.append(Value(name, tensor.elem_type, tuple(dims)))
        return values
