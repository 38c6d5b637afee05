"""Type propagation by the op rules: every value's static type from the graph inputs, one pass
over the nodes. The importer types a fresh graph with it, the infer_shapes pass re-derives types
after rewrites, and canonicalize sees through not-yet-folded constants with `known_values`.

It evaluates small constant subgraphs on the fly (Shape -> Gather -> Concat chains) so that ops
whose output shape depends on an input value (Reshape, Expand, Slice, ...) get static shapes;
rewriting those subgraphs into constants is fold_constants' job, not this one's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ..errors import PycError, RunTimeCheckedError
from ..ir.graph import AttrValue, Graph, Node
from ..ir.symbolic import (
    NUMBERS_HINT,
    Dim,
    DimBounds,
    DimLike,
    SymbolicError,
    computed_dims,
    exact_div,
    floor_div,
    has_dims,
    less,
    smax,
    smin,
    stretched_at_run_time,
    value_dim,
)
from ..ir.types import DType, TensorType, check_addressable
from . import registry
from .intervals import Interval, input_intervals
from .intervals import propagate as propagate_interval
from .registry import GROWTH_LIMIT_BYTES, SHAPE_ONLY

# values evaluated during inference are shape-sized; larger constant work waits for folding
_EVAL_LIMIT = 1 << 16


def propagate_types(graph: Graph) -> dict[str, TensorType]:
    types = _propagate(graph, _EVAL_LIMIT)[0]
    check_symbolic(graph, types)
    return types


def check_symbolic(graph: Graph, types: Mapping[str, TensorType]) -> None:
    """Where graph inputs have symbolic dims (issue #15), the symbolic types must be what the op
    rules give for concrete shapes. At a few points of the dims' box (every dim at its lowest,
    at its highest, and at distinct inner values), the inputs' shapes are instantiated and
    propagated as plain ints; a value whose shape there is not its symbolic shape evaluated at
    that point means a rule lost the dims (it computed with their upper bounds, which is what a
    Dim's int value is): PYC-E051 names the first node that did."""
    bounds: dict[str, DimBounds] = {}
    for name in graph.inputs:
        for dim in types[name].shape:
            if isinstance(dim, Dim):
                bounds.update(dim.dims())
    # a computed dim (point 2) is not a function of the inputs' dims: both sides take its
    # lowest value, the symbolic type and the concrete rules' output (the same computed dim)
    computed = {name: b.lo for name, b in computed_dims(t.shape for t in types.values()).items()}
    for point in _sample_points(bounds) or ([{}] if computed else []):
        concrete = {name: TensorType(types[name].dtype, _instance(types[name].shape, point))
                    for name in graph.inputs}
        at = ", ".join(f"{k}={v}" for k, v in sorted(point.items())) or "run-time sizes at 0"
        refused: list[PycError] = []  # a broadcast the entry point refuses at this point
        try:
            instance = _propagate(graph, _EVAL_LIMIT, concrete, point,
                                  lambda exc: exc.code == "E009" and _broadcast_checked_at_entry(
                                      graph, types, exc.where), refused)[0]
        except RunTimeCheckedError:
            continue  # a shape a kernel refuses at run time: no run there to type
        except PycError as exc:  # a shape inside the bounds that the model does not accept
            raise PycError(exc.code, f"at {at}: {exc.what}", where=exc.where,
                           hint="the dims' bounds include shapes the model cannot take there; "
                           "narrow them (--input-shape NAME=dim:LO..HI)") from exc
        # where sizes do not broadcast (the run is refused at entry, E041), the values before
        # that node are still checked: a rule upstream that computed with an upper bound (a
        # number that then broadcasts against the dim) is caught there
        env = {**computed, **point}
        for node in graph.nodes:
            for out in node.outputs:
                if refused and out not in instance:
                    continue
                want = _instance(types[out].shape, env) if out else None
                if out and not _agrees(types[out].shape, instance[out].shape, env):
                    raise PycError("E051", f"{node.op} does not keep symbolic dims: its output "
                                   f"{out!r} is {types[out]} symbolically, which at {at} is "
                                   f"{list(want or ())}, but the op's rule gives "
                                   f"{list(_instance(instance[out].shape, env))}",
                                   where=f"node {node.name!r}", hint=NUMBERS_HINT)


def _broadcast_checked_at_entry(graph: Graph, types: Mapping[str, TensorType],
                                where: str | None) -> bool:
    """Whether node `where` broadcasts an operand whose symbolic dim may be 1 or the output's
    at run time (ops/elementwise.py `broadcast_at_entry`): the entry point checks each such
    dim, so a point of the box where the sizes do not broadcast is never run."""
    node = next((n for n in graph.nodes if n.name == where), None)
    if node is None or not node.outputs or node.outputs[0] not in types:
        return False
    out = types[node.outputs[0]].shape
    shapes = [types[v].shape for v in node.inputs if v in types]
    if node.op == "MatMul" and len(shapes) == 2:  # its batch dims (a vector has none)
        mats = [shape[:-2] if len(shape) > 1 else () for shape in shapes]
        batch = out[:len(out) - sum(len(shape) > 1 for shape in shapes)]
        return any(stretched_at_run_time(m, batch) for m in mats)
    opdef = registry.lookup(node.op)
    if opdef is None or opdef.category != registry.ELEMENTWISE:
        return False
    target = node.attrs.get("shape") if node.op == "Expand" else None
    if isinstance(target, list):  # a target bound into the attribute (passes/bind_shapes.py)
        shapes.append(tuple(int(d) if not isinstance(d, Dim) else d for d in target))
    return any(stretched_at_run_time(shape, out) for shape in shapes)


def _agrees(symbolic: tuple[int, ...], concrete: tuple[int, ...], env: Mapping[str, int]) -> bool:
    """Whether an instance's shape is the symbolic shape at `env`. A dim computed at run time
    (point 2) stands for any value in its bounds: where the instance knows that value (the
    operand deciding it is known at this point), it only has to lie within them."""
    if len(symbolic) != len(concrete):
        return False
    # a dim computed at run time that only one side reads (an entry dim of a broadcast against
    # the value dim it may take) stands at its lowest value, as the others do
    env = {**{name: b.lo for name, b in computed_dims([tuple(symbolic), tuple(concrete)]).items()},
           **env}
    for want, got in zip(symbolic, concrete):
        if isinstance(want, Dim) and computed_dims([(want,)]) and not (
                isinstance(got, Dim) and computed_dims([(got,)])):
            lo, hi = want.bounds()
            if not lo <= _instance((got,), env)[0] <= hi:
                return False
        elif _instance((want,), env) != _instance((got,), env):
            return False
    return True


def _sample_points(bounds: Mapping[str, DimBounds]) -> list[dict[str, int]]:
    """Every dim at its lowest; at its highest; and each at its own inner value (different
    dims at different fractions of their ranges, so a rule that swaps two is caught)."""
    if not bounds:
        return []
    names = sorted(bounds)
    inner = {n: bounds[n].lo + (bounds[n].hi - bounds[n].lo) * (i + 1) // (len(names) + 1)
             for i, n in enumerate(names)}
    return [{n: bounds[n].lo for n in names}, {n: bounds[n].hi for n in names}, inner]


def _instance(shape: tuple[int, ...], point: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(d.evaluate(point) if isinstance(d, Dim) else int(d) for d in shape)


def instantiate(node: Node, point: Mapping[str, int]) -> Node:
    """The node with every symbolic attribute element evaluated at `point` (the node itself
    where it has none)."""
    attrs = {key: _evaluate_attr(value, point) for key, value in node.attrs.items()}
    if all(attrs[key] is node.attrs[key] for key in attrs):
        return node
    return Node(node.op, node.name, node.inputs, node.outputs, attrs, node.ann)


def _evaluate_attr(value: AttrValue, point: Mapping[str, int]) -> AttrValue:
    if isinstance(value, Dim):
        return _at(value, point)
    if isinstance(value, list) and has_dims(value):
        return [_at(v, point) if isinstance(v, Dim) else v for v in value]  # type: ignore[return-value]
    return value


def _at(dim: Dim, point: Mapping[str, int]) -> DimLike:
    """`dim` at `point`; kept symbolic where it reads a dim the point does not set (a dim
    computed at run time: the instance's rules compute the same one)."""
    return dim.evaluate(point) if set(dim.dims()) <= set(point) else dim


def symbolic_values(graph: Graph) -> dict[str, np.ndarray]:
    """The values computed from symbolic dims (object arrays holding Dims), by name."""
    known = _propagate(graph, _EVAL_LIMIT)[1]
    return {name: value for name, value in known.items()
            if value.dtype == object and name not in graph.constants}


def known_values(graph: Graph) -> dict[str, np.ndarray]:
    """Every value computable at compile time (constants and what folding would produce),
    without rewriting the graph: lets canonicalize see through not-yet-folded constants."""
    return _propagate(graph, None)[1]


def _propagate(graph: Graph, limit: int | None,
               inputs: Mapping[str, TensorType] | None = None,
               point: Mapping[str, int] | None = None,
               stop: Callable[[PycError], bool] | None = None,
               stopped: list[PycError] | None = None
               ) -> tuple[dict[str, TensorType], dict[str, np.ndarray]]:
    """Types and known values of every value; `inputs` and `point` instantiate the graph at
    one assignment of its named dims (the inputs' shapes, and the symbolic attributes that
    passes/bind_shapes.py wrote). An error `stop` accepts ends the walk there (appended to
    `stopped`): the values before the failing node are typed, the others absent."""
    types = {name: (inputs or graph.types)[name] for name in graph.inputs}
    types.update({name: TensorType.of(array) for name, array in graph.constants.items()})
    known: dict[str, np.ndarray] = dict(graph.constants)
    # the declared values of inputs, followed through the ops computing sizes (point 2)
    ranges = input_intervals(graph.value_bounds, {n: types[n].shape for n in graph.inputs}) \
        if graph.value_bounds else None
    known.update(_value_dims(graph, types))
    for node in graph.nodes:
        if point is not None:
            node = instantiate(node, point)
        opdef = registry.get(node.op)
        in_types = [types.get(name) if name else None for name in node.inputs]
        in_values = [known.get(name) if name else None for name in node.inputs]
        in_ranges = None if ranges is None else [_interval(ranges, known, name) for name in node.inputs]
        try:
            out_types = infer_node(opdef, node, in_types, in_values, in_ranges)
        except PycError as exc:
            if stop is None or stopped is None or isinstance(exc, RunTimeCheckedError) or \
                    not stop(exc):
                raise
            stopped.append(exc)
            break
        types.update({name: ttype for name, ttype in zip(node.outputs, out_types) if name})
        results = evaluate_node(opdef, node, in_types, in_values, out_types, limit)
        known.update({name: value for name, value in zip(node.outputs, results or []) if name})
        if ranges is not None and in_ranges is not None and not results:
            found = propagate_interval(node, in_ranges, in_values, opdef.evaluate)
            ranges.update({n: r for n, r in zip(node.outputs, found) if n and r is not None})
    return types, known


# the most elements of one input whose values become value dims (shape vectors, not data)
VALUE_DIMS_LIMIT = 16


def _value_dims(graph: Graph, types: Mapping[str, TensorType]) -> dict[str, np.ndarray]:
    """Integer inputs with declared non-negative values (sizes, like a dim's) and a small static
    shape, known as their elements' value dims (symbolic.value_dim): shape arithmetic on them
    stays symbolic, as on Shape. Others keep their intervals only (ops/intervals.py)."""
    found = {}
    for name, (lo, hi) in sorted(graph.value_bounds.items()):
        ttype = types.get(name)
        if not _reaches_shape_operand(graph, name):
            continue  # data only (OneHot's on/off values): kept a tensor, never a number
        if ttype is None or ttype.dtype not in (DType.I32, DType.I64) or has_dims(ttype.shape) \
                or ttype.numel > VALUE_DIMS_LIMIT or not 0 <= int(np.ceil(lo)) <= int(np.floor(hi)):
            continue
        elements = [value_dim(name, k, int(np.ceil(lo)), int(np.floor(hi)))
                    for k in range(ttype.numel)]
        found[name] = np.array(elements + [0], dtype=object)[:-1].reshape(ttype.shape)
    return found


def _reaches_shape_operand(graph: Graph, name: str) -> bool:
    """Whether `name`'s values flow, through any nodes, into an operand that decides a shape
    (an op's `static_inputs`: Reshape's shape, Range's limit, ...)."""
    reached, changed = {name}, True
    while changed:
        changed = False
        for node in graph.nodes:
            opdef = registry.lookup(node.op)
            read = [i for i, v in enumerate(node.inputs) if v in reached]
            if not read:
                continue
            if opdef is not None and set(read) & set(opdef.static_inputs):
                return True
            fresh = {out for out in node.outputs if out and out not in reached}
            if fresh:
                reached |= fresh
                changed = True
    return False


def _interval(ranges: dict[str, Interval], known: Mapping[str, np.ndarray],
              name: str) -> Interval | None:
    """A value's interval: declared or followed, else its known value's (None: unbounded)."""
    if not name:
        return None
    if name in ranges:
        return ranges[name]
    return Interval.exact(known[name]) if name in known else None


def infer_node(opdef: registry.OpDef, node: Node, in_types: list[TensorType | None],
               in_values: list[np.ndarray | None],
               in_ranges: list[Interval | None] | None = None) -> list[TensorType]:
    """The node's output types by its op's rule; PYC-E009 where the rule meets a case it does not
    handle, and every output must be addressable. `in_ranges`: the intervals of operands
    computed at run time from inputs with declared values (ops/intervals.py), which bound the
    sizes that such operands decide."""
    try:
        try:
            out_types = opdef.infer(node, in_types, in_values)
        except PycError as exc:
            # an operand deciding the shape is computed from tensor data at run time: where
            # the op bounds the size, the output gets computed dims (issue #15, point 2)
            if exc.code != "E008" or not hasattr(opdef, "runtime_infer"):
                raise
            out_types = opdef.runtime_infer(node, in_types, in_values, exc,
                                            in_ranges or [None] * len(node.inputs))
    except Exception as exc:  # an op rule met a case it does not handle
        if isinstance(exc, PycError) and exc.code == "E051":
            raise  # the rule's own refusal of symbolic dims, with its hint
        if _symbolic(in_types, in_values):
            raise PycError("E051", f"{node.op}'s rule cannot handle the symbolic dims of its "
                           f"inputs ({exc})", where=f"node {node.name!r}",
                           hint=NUMBERS_HINT) from exc
        if isinstance(exc, PycError):
            raise
        raise PycError("E009", f"cannot infer the type of {node.op}: {exc}",
                       where=f"node {node.name!r}") from exc
    for name, ttype in zip(node.outputs, out_types):
        if name:
            check_addressable(f"value {name!r} ({ttype})", ttype.nbytes, f"node {node.name!r}")
    return out_types


def _symbolic(in_types: list[TensorType | None], in_values: list[np.ndarray | None]) -> bool:
    """Whether a node's inputs hold symbolic dims, in their shapes or (shape tensors) values."""
    return any(has_dims(t.shape) for t in in_types if t is not None) or any(
        v is not None and v.dtype == object and has_dims(v.flat) for v in in_values)


def evaluate_node(opdef: registry.OpDef, node: Node, in_types: list[TensorType | None],
                  in_values: list[np.ndarray | None], out_types: list[TensorType],
                  limit: int | None) -> list[np.ndarray] | None:
    """The node's outputs computed at compile time by its numpy reference, or None where they
    are not known (an input is not) or too large: `limit` elements per output, or, with None,
    folding's rule (a constant never grows past GROWTH_LIMIT_BYTES beyond its inputs). This is
    the one constant evaluator: type propagation, constant folding and `pyc check` use it."""
    if any(has_dims(t.shape) for t in out_types):
        return None  # a value of a symbolic size is computed at run time (a numpy array is not)
    if hasattr(opdef, "shape_value") and in_types[0] is not None:  # Shape, Size: from the type
        return [opdef.shape_value(node, in_types[0])]
    present = [v for name, v in zip(node.inputs, in_values) if name]
    if any(v is not None and v.dtype == object for v in present):
        return _evaluate_symbolic(opdef, node, in_values, out_types)
    if limit is None:
        in_bytes = sum(v.nbytes for v in present if v is not None)
        small = sum(t.nbytes for t in out_types) <= max(GROWTH_LIMIT_BYTES, in_bytes)
    else:
        small = all(t.numel <= limit for t in out_types)
    if not small or (opdef.category != SHAPE_ONLY and any(v is None for v in present)):
        return None
    try:
        with np.errstate(all="ignore"):  # NaN / inf constants evaluate silently, as at run time
            results = opdef.evaluate(node, in_values)
    except NotImplementedError:
        return None
    except PycError:
        raise
    except Exception as exc:  # the numpy reference met values its shape rule let through
        raise PycError("E009", f"cannot evaluate {node.op} at compile time: "
                       f"{type(exc).__name__}: {exc}", where=f"node {node.name!r}",
                       hint="check the node's constant inputs") from exc
    return [np.asarray(value) for value in results]


# ops whose numpy references move and combine symbolic values (issue #15: object arrays of Dims)
# with Python's operators, which Dim implements: Gather, Concat, ... of a Shape
SYMBOLIC_SAFE = frozenset({"Gather", "Concat", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Split",
                           "Slice"})
# elementwise ops on shape values whose every element the dims' bounds must decide (`less`)
SYMBOLIC_DECIDED: dict[str, Callable[[DimLike, DimLike], object]] = {
    "Max": smax, "Min": smin,
    "Less": less, "Greater": lambda a, b: less(b, a),
    "LessOrEqual": lambda a, b: not less(b, a), "GreaterOrEqual": lambda a, b: not less(a, b)}
# elementwise arithmetic on object arrays: numpy applies Python's operators element by element
SYMBOLIC_ARITHMETIC = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}


def _evaluate_symbolic(opdef: registry.OpDef, node: Node, in_values: list[np.ndarray | None],
                       out_types: list[TensorType]) -> list[np.ndarray] | None:
    """Shape arithmetic on symbolic values: the outputs as object arrays of Dims and ints, or
    None (not known at compile time) where a value would be decided by a dim's bounds alone.
    Only ops whose references keep the objects are run; a result that came back numeric lost
    its Dims (a reference cast them), so it is not known either."""
    if any(v is None for name, v in zip(node.inputs, in_values) if name):
        return None
    values = [v for v in in_values if v is not None]
    results: list[np.ndarray | None]
    if node.op == "Cast" and out_types[0].dtype.numpy.kind in "iu":
        # a cast keeps a value only where the target type holds every value the bounds allow
        # (a value dim declared 0..300 cast to int8 would wrap)
        info = np.iinfo(out_types[0].dtype.numpy)
        if not all(info.min <= b <= info.max for v in values[0].flat if isinstance(v, Dim)
                   for b in v.bounds()):
            return None
        results = [np.asarray(values[0], dtype=object)]
    elif node.op == "Div" and out_types[0].dtype.numpy.kind in "iu":
        results = [_symbolic_div(*np.broadcast_arrays(values[0], values[1]))]
    elif node.op == "Equal":
        results = [_symbolic_equal(*np.broadcast_arrays(values[0], values[1]))]
    elif node.op in SYMBOLIC_DECIDED and len(values) == 2:
        results = [_decided(SYMBOLIC_DECIDED[node.op], values[0], values[1])]
    elif node.op == "Mod" and not node.int_attr("fmod", 0):
        results = [_decided(_mod, values[0], values[1])]
    elif node.op in SYMBOLIC_ARITHMETIC and out_types[0].dtype.numpy.kind in "iu":
        # on 0-d operands numpy returns the element itself (`seq - 1` of a Gather'd scalar):
        # kept an object array, as np.asarray would make a Dim an int64 of its upper bound
        results = [np.array(SYMBOLIC_ARITHMETIC[node.op](values[0].astype(object),
                                                         values[1].astype(object)), dtype=object)]
    elif node.op == "Identity":  # its elementwise reference casts to the declared dtype
        results = [values[0]]
    elif node.op == "Neg":
        results = [np.array(np.negative(values[0].astype(object)), dtype=object)]
    elif node.op == "Where":
        results = [np.where(values[0].astype(bool), values[1].astype(object),
                            values[2].astype(object))]
    elif node.op in SYMBOLIC_SAFE:
        # a reference may return an element itself (np.take of a scalar index): a Dim is an
        # int, and np.asarray would make it an int64 holding its upper bound
        results = [r if isinstance(r, np.ndarray) else np.array(r, dtype=object)
                   for r in opdef.evaluate(node, list(in_values))]
    else:
        return None
    known = [r for r in results if r is not None and r.dtype == object]
    if len(known) != len(results):
        return None
    return [r if has_dims(r.flat) else r.astype(np.int64) for r in known]


def _decided(op: Callable[[DimLike, DimLike], object], a: np.ndarray,
             b: np.ndarray) -> np.ndarray | None:
    """`op` element by element (numpy integers made Python ints first: numpy's operators would
    turn a Dim into its upper bound); None where the dims' values decide an element."""
    x, y = np.broadcast_arrays(a, b)
    out = np.empty(x.shape, dtype=object)
    try:
        for index in np.ndindex(x.shape):
            out[index] = op(*(v if isinstance(v, Dim) else int(v) for v in (x[index], y[index])))
    except SymbolicError:
        return None
    return out


def _mod(a: DimLike, b: DimLike) -> DimLike:
    """ONNX integer Mod (fmod=0: the sign of the divisor) by a positive constant."""
    if isinstance(b, Dim) or int(b) <= 0:
        raise SymbolicError(f"{a} mod {b}")
    return a % int(b)


def _symbolic_div(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """ONNX integer Div (truncation) of non-negative shape values by positive constants."""
    out = np.empty(a.shape, dtype=object)
    for index in np.ndindex(a.shape):
        x, y = a[index], b[index]
        if isinstance(y, Dim) or int(y) <= 0:
            return None
        if not isinstance(x, Dim):
            out[index] = int(x) // int(y) if int(x) >= 0 else -(-int(x) // int(y))
            continue
        if x.bounds()[0] < 0:  # truncation is floor division only for non-negative values
            out[index] = exact_div(x, int(y))
            if out[index] is None:
                return None
            continue
        out[index] = floor_div(x, int(y))
    return out


def _symbolic_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """Equal where every element is decided: equal expressions, or a constant outside a Dim's
    bounds; None where one depends on the dims' values."""
    out = np.empty(a.shape, dtype=object)
    for index in np.ndindex(a.shape):
        x, y = a[index], b[index]
        if isinstance(x, Dim) or isinstance(y, Dim):
            if x == y:
                out[index] = True
                continue
            lo_x, hi_x = x.bounds() if isinstance(x, Dim) else (int(x), int(x))
            lo_y, hi_y = y.bounds() if isinstance(y, Dim) else (int(y), int(y))
            if hi_x < lo_y or hi_y < lo_x:
                out[index] = False
                continue
            return None
        out[index] = bool(x == y)
    return out
