"""Fuzz specs: how to pick inputs and attributes for one op, given the graph grown so far.

`spec_for(op)` answers for every registered op: an explicit spec below, a generic one derived
from the registry and the ONNX schema for elementwise ops (one element type per schema type
variable, broadcasting partners, optional scalar operands), or None — then the generator falls
back to a node taken from the ONNX backend node tests (backend_cases.py).
A spec adds its node(s) with `b.add` and raises `Reject` when the graph offers nothing valid.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from ...ir.types import DType
from ...ops import registry
from ...ops.registry import ELEMENTWISE
from .builder import (
    BOOL,
    F16,
    F32,
    F64,
    FLOATS,
    FUZZ_DTYPES,
    I32,
    I64,
    INTS,
    TYPE_STR,
    GraphBuilder,
    Value,
)

Spec = Callable[[GraphBuilder, str], None]
NUMERIC = (F32, F64, F16, I32, I64)


def accepted(op: str, candidates: tuple[int, ...] = FUZZ_DTYPES) -> list[int]:
    """The fuzzed element types the registry says `op` accepts."""
    opdef = registry.lookup(op)
    if opdef is None:
        return []
    return [d for d in candidates if opdef.accepts(DType.from_onnx(d))]


def schema_types(op: str, opset: int, var: str) -> list[int]:
    schema = onnx.defs.get_schema(op, opset)
    for constraint in schema.type_constraints:
        if constraint.type_param_str == var:
            allowed = set(constraint.allowed_type_strs)
            return [d for d in FUZZ_DTYPES if TYPE_STR[d] in allowed]
    return [d for d in FUZZ_DTYPES if TYPE_STR[d] == var]


# ---------------------------------------------------------------- generic elementwise

_RANDOM_ATTRS = {"alpha": (0.05, 2.0), "beta": (0.0, 1.0), "gamma": (0.5, 2.0),
                 "lambd": (0.0, 1.5), "bias": (-0.5, 0.5)}
_DIVISORS = {"Div", "Mod"}


def generic_elementwise(b: GraphBuilder, op: str) -> None:
    """Inputs by schema: a dtype per type variable (the first input's type must be one the
    registry accepts), the first operand from the pool, the others broadcasting with it."""
    schema = onnx.defs.get_schema(op, b.opset)
    chosen: dict[str, int] = {}
    operands: list[Value | None] = []
    first: Value | None = None
    params = list(schema.inputs)
    variadic = params and params[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic
    count = len(params) + (int(b.rng.integers(0, 3)) if variadic else 0)
    for index in range(count):
        param = params[min(index, len(params) - 1)]
        optional = param.option == onnx.defs.OpSchema.FormalParameterOption.Optional
        if optional and not b.chance(0.4):
            operands.append(None)
            continue
        var = param.type_str
        if var not in chosen:
            allowed = schema_types(op, b.opset, var)
            if first is None:
                allowed = [d for d in allowed if d in accepted(op)]
            chosen[var] = b.dtype(allowed)
        dtype = chosen[var]
        if first is None:
            first = b.pick([dtype], lambda v: v.numel > 0 or b.zero_size)
            operands.append(first)
        elif optional:
            operands.append(b.const(b.random_array(dtype, ()), "s"))
        else:
            operands.append(b.broadcast_partner(first, dtype, nonzero=op in _DIVISORS and index == 1))
    attrs = {}
    opdef = registry.lookup(op)
    for key in getattr(opdef, "defaults", {}):
        if key in _RANDOM_ATTRS and b.chance(0.5):
            lo, hi = _RANDOM_ATTRS[key]
            attrs[key] = float(np.round(b.rng.uniform(lo, hi), 3))
    b.add(op, operands, attrs)


# ---------------------------------------------------------------- elementwise with extras


def spec_mod(b: GraphBuilder, op: str) -> None:
    dtype = b.dtype(accepted(op, NUMERIC))
    x = b.pick([dtype])
    y = b.broadcast_partner(x, dtype, nonzero=True)
    b.add(op, [x, y], {"fmod": 1 if dtype in FLOATS or b.chance(0.3) else 0})


def spec_bitshift(b: GraphBuilder, op: str) -> None:
    """BitShift takes unsigned types only: its own uint8/uint32 operands, shifts below the width."""
    dtype = b.choice([onnx.TensorProto.UINT8, onnx.TensorProto.UINT32])
    bits = 8 if dtype == onnx.TensorProto.UINT8 else 32
    x = b.new_input(dtype, b.shape(), lo=0, hi=200)
    shift = b.new_input(dtype, x.shape[int(b.rng.integers(0, x.rank + 1)):], lo=0, hi=bits - 1)
    b.add(op, [x, shift], {"direction": b.choice(["LEFT", "RIGHT"])})


def spec_prelu(b: GraphBuilder, op: str) -> None:
    dtype = b.dtype(accepted(op, NUMERIC))
    x = b.pick([dtype], lambda v: v.rank >= 1)
    slope_shape = tuple(d if b.chance(0.5) else 1 for d in x.shape[int(b.rng.integers(0, x.rank + 1)):])
    b.add(op, [x, b.operand(dtype, slope_shape)])


def spec_cast(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op))
    to = b.choice(accepted(op))
    if op == "Cast":
        b.add(op, [x], {"to": int(to)})
    else:
        b.add(op, [x, b.pick([to])])


def spec_clip(b: GraphBuilder, op: str) -> None:
    dtype = b.dtype(accepted(op, NUMERIC))
    x = b.pick([dtype])
    lo = b.const(np.array(-abs(b.rng.standard_normal()) * 2).astype(x_np(dtype))) if b.chance(0.7) else None
    hi = b.const(np.array(abs(b.rng.standard_normal()) * 2).astype(x_np(dtype))) if b.chance(0.7) else None
    b.add(op, [x, lo, hi])


def x_np(dtype: int) -> np.dtype:
    return onnx.helper.tensor_dtype_to_np_dtype(dtype)


def spec_expand(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op), lambda v: v.rank <= 3)
    shape = [d if d != 1 or not b.chance(0.6) else b.dim() for d in x.shape]
    if b.chance(0.4):
        shape = [b.dim()] + shape
    b.add(op, [x, b.const(np.array(shape, np.int64), "shape")])


def spec_where(b: GraphBuilder, op: str) -> None:
    dtype = b.dtype(accepted(op))
    x = b.pick([dtype])
    cond = b.broadcast_partner(x, BOOL)
    y = b.broadcast_partner(x, dtype)
    b.add(op, [cond, x, y])


# ---------------------------------------------------------------- views and movement


def spec_reshape(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op), lambda v: v.numel > 0)
    dims = _factor(b, x.numel)
    if dims and b.chance(0.3):
        dims[int(b.rng.integers(len(dims)))] = -1
    b.add(op, [x, b.const(np.array(dims, np.int64), "shape")])


def _factor(b: GraphBuilder, n: int) -> list[int]:
    """A random shape with `n` elements (rank 0..4)."""
    dims: list[int] = []
    rest = n
    for p in (2, 3, 5, 7, 11, 13):
        while rest % p == 0 and len(dims) < 4 and b.chance(0.5):
            dims.append(p)
            rest //= p
    if rest != 1 or not dims:
        dims.append(rest)
    order = b.rng.permutation(len(dims))
    dims = [dims[i] for i in order]
    if b.chance(0.3) and len(dims) < 4:
        dims.insert(int(b.rng.integers(len(dims) + 1)), 1)
    if n == 1 and b.chance(0.4):
        return []
    return dims


def spec_flatten(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op), lambda v: v.rank >= 1)
    b.add(op, [x], {"axis": int(b.rng.integers(-x.rank, x.rank + 1))})


def spec_transpose(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op), lambda v: v.rank >= 2)
    attrs = {"perm": [int(i) for i in b.rng.permutation(x.rank)]} if b.chance(0.85) else {}
    b.add(op, [x], attrs)


def spec_squeeze(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op), lambda v: 1 in v.shape)
    ones = [i for i, d in enumerate(x.shape) if d == 1]
    axes = [i - x.rank if b.chance(0.3) else i for i in ones if b.chance(0.7)] or [ones[0]]
    b.add(op, [x, b.const(np.array(axes, np.int64), "axes")])


def spec_unsqueeze(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op), lambda v: v.rank <= 3)
    rank = x.rank + int(b.rng.integers(1, 3))
    axes = sorted(b.rng.choice(rank, size=rank - x.rank, replace=False).tolist())
    axes = [a - rank if b.chance(0.3) else a for a in axes]
    b.add(op, [x, b.const(np.array(axes, np.int64), "axes")])


def spec_slice(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op), lambda v: v.rank >= 1)
    axes = sorted(b.rng.choice(x.rank, size=int(b.rng.integers(1, x.rank + 1)), replace=False).tolist())
    starts, ends, steps = [], [], []
    for axis in axes:
        n = x.shape[axis]
        step = int(b.choice([1, 1, 1, 2, -1, 3]))
        start = int(b.rng.integers(-n - 1, n + 2)) if n else 0
        end = int(b.rng.integers(-n - 1, n + 2)) if n else 0
        if b.chance(0.15):
            end = 2**62 if step > 0 else -(2**62)
        starts.append(start)
        ends.append(end)
        steps.append(step)
    axes = [a - x.rank if b.chance(0.3) else a for a in axes]
    const = [b.const(np.array(v, np.int64), "s") for v in (starts, ends, axes, steps)]
    if b.chance(0.3) and all(s == 1 for s in steps):
        const = const[:3]
    b.add(op, [x, *const])


def spec_concat(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op), lambda v: v.rank >= 1)
    axis = int(b.rng.integers(x.rank))
    parts = [x]
    for _ in range(int(b.rng.integers(1, 4))):
        shape = list(x.shape)
        shape[axis] = int(b.choice([0, 1, 2, 3, 5])) if b.zero_size else int(b.choice([1, 2, 3, 5]))
        same = [v for v in b.values if v.dtype == x.dtype and v.rank == x.rank and all(
            v.shape[i] == x.shape[i] for i in range(x.rank) if i != axis)]
        parts.append(b.choice(same) if same and b.chance(0.5) else b.operand(x.dtype, tuple(shape)))
    b.add(op, parts, {"axis": axis - x.rank if b.chance(0.3) else axis})


def spec_split(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op), lambda v: v.rank >= 1 and max(v.shape) >= 2)
    axis = int(b.choice([i for i, d in enumerate(x.shape) if d >= 2]))
    n = x.shape[axis]
    pieces = int(b.rng.integers(2, min(n, 4) + 1))
    if b.chance(0.5) and b.opset >= 18:
        b.add(op, [x], {"axis": axis, "num_outputs": pieces}, n_outputs=pieces)
        return
    cuts = sorted(b.rng.choice(np.arange(1, n), size=pieces - 1, replace=False).tolist())
    sizes = np.diff([0, *cuts, n]).astype(np.int64)
    b.add(op, [x, b.const(sizes, "split")], {"axis": axis}, n_outputs=pieces)


def spec_gather(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op), lambda v: v.rank >= 1 and v.numel > 0)
    axis = int(b.rng.integers(x.rank))
    n = x.shape[axis]
    shape = b.shape(int(b.rng.integers(0, 3)))
    dtype = b.choice([I32, I64])
    if b.chance(0.5):
        idx = b.const(b.rng.integers(-n, n, shape).astype(x_np(dtype)), "idx")
    else:
        idx = b.new_input(dtype, shape, lo=-n, hi=n - 1)
    b.add(op, [x, idx], {"axis": axis - x.rank if b.chance(0.3) else axis})


def spec_gather_elements(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op), lambda v: v.rank >= 1 and v.numel > 0)
    axis = int(b.rng.integers(x.rank))
    n = x.shape[axis]
    shape = tuple(d if i == axis or b.chance(0.7) else max(1, d - 1) for i, d in enumerate(x.shape))
    shape = tuple(int(b.rng.integers(1, 4)) if i == axis else d for i, d in enumerate(shape))
    idx = b.new_input(b.choice([I32, I64]), shape, lo=-n, hi=n - 1)
    b.add(op, [x, idx], {"axis": axis})


def spec_tile(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op), lambda v: v.rank >= 1 and v.numel <= 60)
    reps = [int(b.choice([1, 1, 2, 3])) for _ in x.shape]
    if b.zero_size and b.chance(0.2):
        reps[0] = 0
    b.add(op, [x, b.const(np.array(reps, np.int64), "reps")])


def spec_pad(b: GraphBuilder, op: str) -> None:
    mode = b.choice(["constant", "constant", "reflect", "edge"])
    ok = (lambda v: v.rank >= 1 and min(v.shape) >= 2) if mode == "reflect" else (lambda v: v.rank >= 1)
    x = b.pick(accepted(op), ok)
    pads = []
    for _ in range(2):
        for d in x.shape:
            top = d - 1 if mode == "reflect" else 3
            pads.append(int(b.rng.integers(-1 if mode == "constant" and d > 1 else 0, min(top, 3) + 1)))
    inputs = [x, b.const(np.array(pads, np.int64), "pads")]
    if mode == "constant" and b.chance(0.5):
        inputs.append(b.const(b.random_array(x.dtype, ()), "pv"))
    b.add(op, inputs, {"mode": mode})


def spec_depth_space(b: GraphBuilder, op: str) -> None:
    block = int(b.choice([2, 3]))
    if op == "DepthToSpace":
        shape = (int(b.choice([1, 2])), block * block * int(b.choice([1, 2, 3])), b.dim() or 1, b.dim() or 1)
        attrs = {"blocksize": block, "mode": b.choice(["DCR", "CRD"])}
    else:
        shape = (int(b.choice([1, 2])), int(b.choice([1, 2, 3])), block * int(b.choice([1, 2])),
                 block * int(b.choice([1, 2, 3])))
        attrs = {"blocksize": block}
    dtype = b.dtype(accepted(op))
    x = b.pick([dtype], lambda v: v.shape == shape, fresh=0.0) if any(
        v.shape == shape and v.dtype == dtype for v in b.values) else b.operand(dtype, shape)
    b.add(op, [x], attrs)


def spec_trilu(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op), lambda v: v.rank >= 2)
    k = b.const(np.array(int(b.rng.integers(-3, 4)), np.int64), "k") if b.chance(0.6) else None
    b.add(op, [x, k], {"upper": int(b.chance(0.5))})


# ---------------------------------------------------------------- compute kernels


def spec_matmul(b: GraphBuilder, op: str) -> None:
    dtype = b.dtype(accepted(op, FLOATS))
    a = b.pick([dtype], lambda v: v.rank >= 1 and v.numel > 0)
    k = a.shape[-1]
    n = b.dim() or 1
    if a.rank == 1 or b.chance(0.6):
        w_shape: tuple[int, ...] = (k, n) if b.chance(0.85) else (k,)
    else:
        w_shape = (*a.shape[:-2], k, n)
    w = b.operand(dtype, w_shape)
    (y,) = b.add(op, [a, w])
    _epilogue(b, y)


def spec_gemm(b: GraphBuilder, op: str) -> None:
    dtype = b.dtype(accepted(op, FLOATS))
    ta, tb = int(b.chance(0.3)), int(b.chance(0.4))
    a = b.pick([dtype], rank=2)
    m, k = (a.shape[1], a.shape[0]) if ta else a.shape
    n = b.dim() or 1
    w = b.operand(dtype, (n, k) if tb else (k, n))
    inputs = [a, w]
    if b.chance(0.7):
        inputs.append(b.operand(dtype, b.choice([(n,), (1, n), (m, n), ()])))
    attrs = {"transA": ta, "transB": tb}
    if b.chance(0.3):
        attrs.update(alpha=0.5, beta=2.0)
    (y,) = b.add(op, inputs, attrs)
    _epilogue(b, y)


def _epilogue(b: GraphBuilder, y: Value) -> None:
    """Bias + activation + residual after a MatMul/Conv: the chains fusion turns into epilogues."""
    if b.chance(0.5):
        (y,) = b.add("Add", [y, b.operand(y.dtype, y.shape[-1:] if y.rank else ())])
    if b.chance(0.5):
        (y,) = b.add(b.choice(["Relu", "Sigmoid", "Tanh", "LeakyRelu"]), [y])
    if b.chance(0.3):
        b.add("Add", [y, b.operand(y.dtype, y.shape)] if b.chance(0.5) else [b.operand(y.dtype, y.shape), y])


def _image(b: GraphBuilder, dtype: int, channels: int | None = None, rank: int = 4) -> Value:
    def ok(v: Value) -> bool:
        return v.rank == rank and v.numel > 0 and min(v.shape[2:], default=1) >= 3 and (
            channels is None or v.shape[1] == channels)
    found = [v for v in b.values if v.dtype == dtype and ok(v)]
    if found and b.chance(0.7):
        return b.choice(found)
    spatial = tuple(int(b.choice([3, 4, 5, 7, 8])) for _ in range(rank - 2))
    shape = (int(b.choice([1, 1, 2])), channels or int(b.choice([1, 2, 3, 4])), *spatial)
    return b.new_input(dtype, shape)


def spec_conv(b: GraphBuilder, op: str) -> None:
    dtype = b.dtype(accepted(op, FLOATS))
    x = _image(b, dtype, rank=int(b.choice([3, 4, 4, 4, 5])))
    c = x.shape[1]
    group = int(b.choice([g for g in (1, 1, 1, c, 2) if c % g == 0]))
    m = group * int(b.choice([1, 2, 3]))
    spatial = x.rank - 2
    kernel = [int(b.choice([1, 2, 3])) for _ in range(spatial)]
    attrs = {"kernel_shape": kernel, "group": group}
    if b.chance(0.4):
        attrs["strides"] = [int(b.choice([1, 2])) for _ in range(spatial)]
    if b.chance(0.3):
        attrs["dilations"] = [int(b.choice([1, 2])) for _ in range(spatial)]
    if b.chance(0.3):
        attrs["auto_pad"] = b.choice(["SAME_UPPER", "SAME_LOWER", "VALID"])
    elif b.chance(0.5):
        attrs["pads"] = [int(b.choice([0, 1])) for _ in range(2 * spatial)]
    w = b.const(b.random_array(dtype, (m, c // group, *kernel)) * 0.5, "w")
    inputs = [x, w] + ([b.const(b.random_array(dtype, (m,)), "b")] if b.chance(0.6) else [])
    (y,) = b.add(op, inputs, attrs)
    _epilogue(b, y) if b.chance(0.3) else _conv_tail(b, y)


def _conv_tail(b: GraphBuilder, y: Value) -> None:
    if b.chance(0.4):
        (y,) = b.add("Relu", [y])
    if b.chance(0.3):
        b.add("Add", [y, b.pick([y.dtype], lambda v: v.shape == y.shape)])


def spec_batchnorm(b: GraphBuilder, op: str) -> None:
    dtype = b.dtype(accepted(op, FLOATS))
    x = b.pick([dtype], lambda v: v.rank >= 2 and v.numel > 0)
    c = x.shape[1]
    params = [b.const(b.random_array(dtype, (c,)), "bn") for _ in range(3)]
    var = b.const((np.abs(b.random_array(dtype, (c,))) + 0.5).astype(x_np(dtype)), "var")
    (y,) = b.add(op, [x, *params, var], {"epsilon": 1e-5})
    if b.chance(0.6):
        b.add("Relu", [y])


def spec_pool(b: GraphBuilder, op: str) -> None:
    dtype = b.dtype(accepted(op, FLOATS))
    x = _image(b, dtype, rank=int(b.choice([3, 4, 4, 5])))
    if op.startswith("Global"):
        b.add(op, [x])
        return
    spatial = x.rank - 2
    attrs: dict = {"kernel_shape": [int(b.choice([1, 2, 3])) for _ in range(spatial)]}
    if b.chance(0.5):
        attrs["strides"] = [int(b.choice([1, 2])) for _ in range(spatial)]
    if b.chance(0.4):
        attrs["pads"] = [min(int(b.choice([0, 1])), k - 1) for k in attrs["kernel_shape"] * 2]
    if b.chance(0.2):
        attrs["ceil_mode"] = 1
    if op == "AveragePool" and b.chance(0.4):
        attrs["count_include_pad"] = 1
    b.add(op, [x], attrs)


def spec_softmax(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op, FLOATS), lambda v: v.rank >= 1)
    b.add(op, [x], {"axis": int(b.rng.integers(-x.rank, x.rank))})


def spec_layernorm(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op, FLOATS), lambda v: v.rank >= 1 and v.numel > 0)
    axis = int(b.rng.integers(-x.rank, x.rank))
    norm_shape = x.shape[axis:]
    inputs = [x, b.const(b.random_array(x.dtype, norm_shape), "g")]
    if b.chance(0.6):
        inputs.append(b.const(b.random_array(x.dtype, norm_shape), "beta"))
    b.add(op, inputs, {"axis": axis, "epsilon": 1e-5})


def spec_instancenorm(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op, FLOATS), lambda v: v.rank >= 3 and v.numel > 0)
    c = x.shape[1]
    b.add(op, [x, b.const(b.random_array(x.dtype, (c,)), "g"), b.const(b.random_array(x.dtype, (c,)), "b")])


def spec_reduce(b: GraphBuilder, op: str) -> None:
    dtypes = accepted(op, NUMERIC if op not in ("ReduceMax", "ReduceMin") else FUZZ_DTYPES)
    x = b.pick(dtypes, lambda v: v.rank >= 1)
    axes = sorted(b.rng.choice(x.rank, size=int(b.rng.integers(1, x.rank + 1)), replace=False).tolist())
    axes = [a - x.rank if b.chance(0.3) else a for a in axes]
    attrs = {"keepdims": int(b.chance(0.5))}
    inputs: list[Value | None] = [x]
    if b.chance(0.15):
        attrs["noop_with_empty_axes"] = int(b.chance(0.5))
    else:
        inputs.append(b.const(np.array(axes, np.int64), "axes"))
    if op in ("ReduceLogSum",) and x.dtype in FLOATS:
        (x,) = b.add("Abs", [x])
        inputs[0] = x
    b.add(op, inputs, attrs)


def spec_argmax(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op, NUMERIC), lambda v: v.rank >= 1 and v.numel > 0)
    b.add(op, [x], {"axis": int(b.rng.integers(-x.rank, x.rank)), "keepdims": int(b.chance(0.5)),
                    "select_last_index": int(b.chance(0.3))})


def spec_cumsum(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op, NUMERIC), lambda v: v.rank >= 1)
    axis = b.const(np.array(int(b.rng.integers(-x.rank, x.rank)), b.choice([np.int32, np.int64])), "ax")
    b.add(op, [x, axis], {"exclusive": int(b.chance(0.3)), "reverse": int(b.chance(0.3))})


def spec_topk(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op, FLOATS), lambda v: v.rank >= 1 and v.numel > 0)
    axis = int(b.rng.integers(-x.rank, x.rank))
    k = int(b.rng.integers(0 if b.zero_size else 1, x.shape[axis] + 1))
    b.add(op, [x, b.const(np.array([k], np.int64), "k")],
          {"axis": axis, "largest": int(b.chance(0.7)), "sorted": 1}, n_outputs=2)


def spec_shape(b: GraphBuilder, op: str) -> None:
    x = b.pick(FUZZ_DTYPES)
    attrs = {}
    if op == "Shape" and b.chance(0.3) and x.rank:
        attrs = {"start": int(b.rng.integers(-x.rank, x.rank))}
    (s,) = b.add(op, [x], attrs)
    if op == "Shape" and b.chance(0.5) and s.shape[0] > 0:
        fill = onnx.numpy_helper.from_array(b.random_array(b.dtype(FUZZ_DTYPES), (1,)), "value")
        b.add("ConstantOfShape", [s], {"value": fill})


def spec_constant_of_shape(b: GraphBuilder, op: str) -> None:
    shape = b.shape()
    fill = onnx.numpy_helper.from_array(b.random_array(b.dtype(FUZZ_DTYPES), (1,)), "value")
    b.add(op, [b.const(np.array(shape, np.int64), "shape")], {"value": fill} if b.chance(0.8) else {})


def spec_constant(b: GraphBuilder, op: str) -> None:
    array = b.random_array(b.dtype(FUZZ_DTYPES), b.shape())
    b.add(op, [], {"value": onnx.numpy_helper.from_array(array, "value")})


def spec_range(b: GraphBuilder, op: str) -> None:
    dtype = b.dtype(accepted(op, (F32, F64, I32, I64)))
    start, delta = int(b.rng.integers(-5, 5)), int(b.choice([1, 2, -1, 3]))
    limit = start + delta * int(b.rng.integers(0 if b.zero_size else 1, 9))
    npd = x_np(dtype)
    b.add(op, [b.const(np.array(start, npd)), b.const(np.array(limit, npd)), b.const(np.array(delta, npd))])


def spec_eyelike(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op, NUMERIC), rank=2)
    attrs = {"k": int(b.rng.integers(-2, 3))}
    if b.chance(0.4):
        attrs["dtype"] = int(b.dtype(accepted(op, NUMERIC)))
    b.add(op, [x], attrs)


def spec_size(b: GraphBuilder, op: str) -> None:
    b.add(op, [b.pick(FUZZ_DTYPES)])


def spec_hardmax(b: GraphBuilder, op: str) -> None:
    spec_softmax(b, op)


def spec_onehot(b: GraphBuilder, op: str) -> None:
    depth = int(b.rng.integers(1, 6))
    idx = b.new_input(b.choice([I32, I64]), b.shape(int(b.rng.integers(0, 3))), lo=-depth, hi=depth - 1)
    dtype = b.dtype(accepted(op, NUMERIC))
    values = b.const(b.random_array(dtype, (2,)), "ov")
    b.add(op, [idx, b.const(np.array(depth, np.int64), "depth"), values],
          {"axis": int(b.rng.integers(-idx.rank - 1, idx.rank + 1))})


def spec_dropout(b: GraphBuilder, op: str) -> None:
    x = b.pick(accepted(op, FLOATS))
    b.add(op, [x], n_outputs=1)


def spec_lrn(b: GraphBuilder, op: str) -> None:
    x = _image(b, b.dtype(accepted(op, FLOATS)))
    b.add(op, [x], {"size": int(b.choice([1, 3, 5])), "alpha": 1e-3, "beta": 0.75, "bias": 1.0})


EXPLICIT: dict[str, Spec] = {
    "Mod": spec_mod, "BitShift": spec_bitshift, "PRelu": spec_prelu, "Cast": spec_cast,
    "CastLike": spec_cast, "Clip": spec_clip, "Expand": spec_expand, "Where": spec_where,
    "Reshape": spec_reshape, "Flatten": spec_flatten, "Transpose": spec_transpose,
    "Squeeze": spec_squeeze, "Unsqueeze": spec_unsqueeze, "Slice": spec_slice,
    "Concat": spec_concat, "Split": spec_split, "Gather": spec_gather,
    "GatherElements": spec_gather_elements, "Tile": spec_tile, "Pad": spec_pad,
    "DepthToSpace": spec_depth_space, "SpaceToDepth": spec_depth_space, "Trilu": spec_trilu,
    "MatMul": spec_matmul, "Gemm": spec_gemm, "Conv": spec_conv,
    "BatchNormalization": spec_batchnorm, "MaxPool": spec_pool, "AveragePool": spec_pool,
    "GlobalAveragePool": spec_pool, "GlobalMaxPool": spec_pool, "Softmax": spec_softmax,
    "LogSoftmax": spec_softmax, "Hardmax": spec_hardmax, "LayerNormalization": spec_layernorm,
    "InstanceNormalization": spec_instancenorm, "ArgMax": spec_argmax, "ArgMin": spec_argmax,
    "CumSum": spec_cumsum, "CumProd": spec_cumsum, "TopK": spec_topk, "Shape": spec_shape,
    "ConstantOfShape": spec_constant_of_shape, "Constant": spec_constant, "Range": spec_range,
    "EyeLike": spec_eyelike, "Size": spec_size, "OneHot": spec_onehot, "Dropout": spec_dropout,
    "LRN": spec_lrn,
}
EXPLICIT.update({op: spec_reduce for op in (
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")})


def spec_for(op: str) -> Spec | None:
    """The spec that generates `op`: explicit, generic elementwise, or None (backend fallback)."""
    if op in EXPLICIT:
        return EXPLICIT[op]
    opdef = registry.lookup(op)
    if opdef is not None and opdef.category == ELEMENTWISE and not opdef.static_inputs:
        return generic_elementwise
    return None


# ops whose output sizes depend on input values (issue #15, point 2): the generator's graphs
# have static shapes (ONNX's inference gives them none); checked against onnxruntime by
# tests/ops/test_references.py::test_nonzero_reference and tests/dynamic/test_data_dependent.py
DATA_DEPENDENT = frozenset({"NonZero"})


def fuzzable_ops() -> list[str]:
    """Registered ONNX ops (PyC-internal `pyc.*` ops are not ONNX and are never generated), but
    those whose output sizes depend on values (DATA_DEPENDENT)."""
    return [op for op, opdef in registry.all_ops().items()
            if not opdef.domain and op not in DATA_DEPENDENT]


__all__ = ["BOOL", "F16", "F32", "F64", "I32", "I64", "INTS", "EXPLICIT", "spec_for", "fuzzable_ops"]


# ---------------------------------------------------------------- motifs: chains fusion and the
# memory planner act on (several nodes on the newest value, so the chain is unbroken)

_EW_UNARY = ("Relu", "Sigmoid", "Tanh", "Exp", "Neg", "Abs", "LeakyRelu", "Softplus", "Erf", "Sqrt")
_EW_BINARY = ("Add", "Mul", "Sub", "Div", "Max", "Min")


def _newest(b: GraphBuilder, dtypes: tuple[int, ...], ok: Callable[[Value], bool] = lambda v: True) -> Value:
    found = [v for v in b.values if v.dtype in dtypes and ok(v)]
    return found[-1] if found and b.chance(0.8) else b.pick(list(dtypes), ok)


def motif_elementwise_chain(b: GraphBuilder, op: str) -> None:
    y = _newest(b, FLOATS)
    for _ in range(int(b.rng.integers(2, 6))):
        if b.chance(0.5):
            (y,) = b.add(b.choice(_EW_UNARY), [y])
        else:
            other = b.broadcast_partner(y, y.dtype)
            (y,) = b.add(b.choice(_EW_BINARY), [y, other] if b.chance(0.5) else [other, y])


def motif_views(b: GraphBuilder, op: str) -> None:
    """Reshape/Transpose/Squeeze/Unsqueeze/Slice views, then a Concat or an elementwise op."""
    y = _newest(b, FUZZ_DTYPES, lambda v: v.rank >= 1 and v.numel > 0)
    for _ in range(int(b.rng.integers(2, 5))):
        view = b.choice([spec_reshape, spec_transpose, spec_unsqueeze, spec_slice, spec_flatten])
        before = len(b.values)
        b.values.append(y)  # make `y` the newest value so the view applies to it
        try:
            view(b, {spec_reshape: "Reshape", spec_transpose: "Transpose", spec_unsqueeze: "Unsqueeze",
                     spec_slice: "Slice", spec_flatten: "Flatten"}[view])
        finally:
            b.values.pop(before)
        y = b.values[-1]
    if y.rank >= 1 and b.chance(0.5):
        spec_concat(b, "Concat")
    elif y.dtype in FLOATS:
        b.add("Relu", [y])


def motif_conv_block(b: GraphBuilder, op: str) -> None:
    """BatchNorm + ReLU prologue, Conv, bias, activation, residual Add (pre-activation block)."""
    dtype = b.dtype(accepted("Conv", FLOATS))
    x = _image(b, dtype)
    c = x.shape[1]
    y = x
    if b.chance(0.6):
        params = [b.const(b.random_array(dtype, (c,)), "bn") for _ in range(3)]
        var = b.const((np.abs(b.random_array(dtype, (c,))) + 0.5).astype(x_np(dtype)), "var")
        (y,) = b.add("BatchNormalization", [y, *params, var])
        (y,) = b.add("Relu", [y])
    w = b.const(b.random_array(dtype, (c, c, 3, 3)) * 0.3, "w")
    (y,) = b.add("Conv", [y, w, b.const(b.random_array(dtype, (c,)), "b")], {"pads": [1, 1, 1, 1]})
    if b.chance(0.5):
        (y,) = b.add(b.choice(["Relu", "Sigmoid", "Tanh"]), [y])
    b.add("Add", [y, x] if b.chance(0.5) else [x, y])


MOTIFS: dict[str, Spec] = {"motif:elementwise_chain": motif_elementwise_chain,
                           "motif:views": motif_views, "motif:conv_block": motif_conv_block}
