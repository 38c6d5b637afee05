"""The oracle: onnxruntime's outputs, one tolerance table, and the ONNX reference evaluator as
the tie-breaker when PyC and onnxruntime disagree on values.

Tolerances (|pyc - expected| <= atol * scale * max(1, max|expected|) + rtol * |expected|, NaN
positions equal, infinities equal; `scale` grows with the reductions in the graph, see
`reduction_scale`). The row is picked by the least precise float type in the output's cone, not
the output's own type: a float32 result cast to float64 carries float32 rounding.

| precision      | rtol   | atol  | note                                                   |
| float32        | 1e-4   | 1e-5  |                                                        |
| float16        | 9.8e-4 | 1e-3  | float16 outputs: plus 2 float16 ulps of the expected   |
| float64        | 1e-9   | 1e-12 |                                                        |
| ints, bool     | exact  |       |                                                        |
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import onnx

TOLERANCES: dict[str, tuple[float, float]] = {  # dtype -> (rtol, atol)
    "float32": (1e-4, 1e-5),
    "float16": (2 * 2.0**-11, 1e-3),
    "float64": (1e-9, 1e-12),
}
F16_ULPS = 2
REDUCING = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum", "LSTM", "GRU", "RNN",
            "AveragePool", "GlobalAveragePool", "LRN", "LayerNormalization", "InstanceNormalization",
            "BatchNormalization", "Softmax", "LogSoftmax", "CumSum", "CumProd", "Resize", "Mean", "Sum"}


def reduction_scale(model: onnx.ModelProto) -> float:
    """How much float error the graph may accumulate: 1 + sqrt(reduced elements) per reducing
    node (accumulation order differs between implementations)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    numel = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        numel[value.name] = math.prod(max(d.dim_value, 1) for d in dims)
    for tensor in model.graph.initializer:
        numel[tensor.name] = max(1, math.prod(tensor.dims))
    scale = 1.0
    for node in model.graph.node:
        if node.op_type in REDUCING or node.op_type.startswith("Reduce"):
            largest_in = max((numel.get(i, 1) for i in node.input if i), default=1)
            out = max(1, min((numel.get(o, 1) for o in node.output if o), default=1))
            scale += math.sqrt(max(largest_in / out, 1.0))
    return scale


FLOAT_RANK = {"float16": 0, "float32": 1, "float64": 2}


def cone_precisions(model: onnx.ModelProto) -> dict[str, str]:
    """Per graph output: the least precise float type among the values its cone reads."""
    inferred = onnx.shape_inference.infer_shapes(model)
    dtype = {v.name: v.type.tensor_type.elem_type for v in
             [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]}
    dtype.update({t.name: t.data_type for t in model.graph.initializer})
    producer = {o: node for node in model.graph.node for o in node.output if o}
    result = {}
    for output in model.graph.output:
        seen, stack, floats = set(), [output.name], set()
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            np_type = _np_name(dtype.get(name))
            if np_type in FLOAT_RANK:
                floats.add(np_type)
            if name in producer:
                stack.extend(i for i in producer[name].input if i)
        if floats:
            result[output.name] = min(floats, key=FLOAT_RANK.__getitem__)
    return result


def _np_name(elem_type: int | None) -> str:
    if not elem_type:
        return ""
    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:  # noqa: BLE001  (types numpy lacks: not a float precision we grade)
        return ""


@dataclass(frozen=True)
class Tolerance:
    scale: float = 1.0
    precisions: dict[str, str] | None = None  # output name -> precision row of the table

    @classmethod
    def of(cls, model: onnx.ModelProto) -> Tolerance:
        return cls(reduction_scale(model), cone_precisions(model))

    def row(self, name: str, dtype: np.dtype) -> tuple[float, float]:
        own = str(dtype)
        cone = (self.precisions or {}).get(name, own)
        return TOLERANCES[min(own, cone, key=lambda t: FLOAT_RANK.get(t, 3))]


def compare(name: str, expected: np.ndarray, actual: np.ndarray,
            tolerance: Tolerance = Tolerance()) -> str:
    """'' when `actual` matches `expected` within the table's tolerance, else why not."""
    if actual.dtype != expected.dtype:
        return f"{name}: dtype {actual.dtype} != {expected.dtype}"
    if actual.shape != expected.shape:
        return f"{name}: shape {list(actual.shape)} != {list(expected.shape)}"
    if expected.dtype.kind not in "fc":
        bad = int(np.sum(actual != expected))
        return f"{name}: {bad}/{expected.size} elements differ (exact)" if bad else ""
    exp, act = expected.astype(np.float64), actual.astype(np.float64)
    nan_e, nan_a = np.isnan(exp), np.isnan(act)
    if not np.array_equal(nan_e, nan_a):
        return f"{name}: NaN at {int(np.sum(nan_e != nan_a))} positions where the other is not"
    inf_e, inf_a = np.isinf(exp), np.isinf(act)
    if not np.array_equal(np.where(inf_e, exp, 0), np.where(inf_a, act, 0)):
        count = int(np.sum((inf_e != inf_a) | (inf_e & (exp != act))))
        return f"{name}: infinities differ at {count} positions"
    finite = ~(nan_e | inf_e)
    if not finite.any():
        return ""
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite entries are masked out
        err = np.where(finite, np.abs(act - exp) - _allowed(name, expected, tolerance), 0.0)
    if np.all(err <= 0):
        return ""
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    return (f"{name}: {int(np.sum(err > 0))}/{expected.size} elements beyond tolerance, worst at "
            f"{list(map(int, worst))}: got {act[worst]!r}, expected {exp[worst]!r}")


def _allowed(name: str, expected: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    """The absolute difference each element of `expected` may show: the dtype's (or its cone's)
    rtol, atol scaled by the largest finite magnitude, and two ulps more for float16."""
    exp = expected.astype(np.float64)
    rtol, atol = tolerance.row(name, expected.dtype)
    finite = np.isfinite(exp)
    magnitude = max(1.0, float(np.max(np.abs(exp[finite])))) if finite.any() else 1.0
    with np.errstate(invalid="ignore", over="ignore"):
        allowed = atol * tolerance.scale * magnitude + rtol * np.abs(exp)
        if expected.dtype == np.float16:
            allowed = allowed + F16_ULPS * np.spacing(np.abs(expected)).astype(np.float64)
    return allowed


Outputs = list[tuple[str, np.ndarray]]  # (name, value) in graph output order


def compare_all(expected: Outputs, actual: Outputs, tolerance: Tolerance) -> list[str]:
    """Names and order exactly, then each value by position."""
    problems = []
    names_e, names_a = [n for n, _ in expected], [n for n, _ in actual]
    if names_e != names_a:
        problems.append(f"output names/order {names_a} != {names_e}")
    if len(expected) != len(actual):
        return problems
    for (name, exp), (_, act) in zip(expected, actual):
        problem = compare(name, np.asarray(exp), np.asarray(act), tolerance)
        if problem:
            problems.append(problem)
    return problems


def ort_outputs(model_bytes: bytes, feeds: dict[str, np.ndarray]) -> Outputs:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # run failures are reported by the exception
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return list(zip(names, session.run(names, feeds)))


def reference_outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> Outputs:
    from onnx.reference import ReferenceEvaluator

    names = [o.name for o in model.graph.output]
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # NaN/Inf are expected values
        warnings.simplefilter("ignore")
        results = ReferenceEvaluator(model).run(None, feeds)
    return list(zip(names, [np.asarray(r) for r in results]))


@dataclass
class Verdict:
    cls: str  # ok | mismatch | ort_defect | undecided
    detail: str = ""


def judge(model: onnx.ModelProto, feeds: dict[str, np.ndarray], ort: Outputs, pyc: Outputs,
          tolerance: Tolerance) -> Verdict:
    """Compare PyC with onnxruntime. Output names/order, dtypes and shapes are PyC's to get
    right; a value disagreement goes to the reference evaluator, which decides whose it is."""
    problems = compare_all(ort, pyc, tolerance)
    names = [p for p in problems if p.startswith(NAMES)]
    values = [p for p in problems if not p.startswith(NAMES)]
    if any("dtype" in p or "shape" in p for p in values) or not values:
        return Verdict("mismatch", "; ".join(problems)) if problems else Verdict("ok")
    verdict = _values_verdict(model, feeds, ort, pyc, tolerance, values)
    if names and verdict.cls != "mismatch":  # the names are wrong whoever has the values right
        return Verdict("mismatch", "; ".join(names) + f" [reference decided the value "
                       f"differences: {verdict.cls}: {verdict.detail}]")
    return Verdict(verdict.cls, "; ".join(names + [verdict.detail]))


NAMES = "output names/order"


def _values_verdict(model: onnx.ModelProto, feeds: dict[str, np.ndarray], ort: Outputs,
                    pyc: Outputs, tolerance: Tolerance, values: list[str]) -> Verdict:
    text = "; ".join(values)
    for rule in (index_ties, ill_conditioned_mod):
        explained = rule(model, feeds, ort, pyc, tolerance)
        if explained is not None:
            return explained
    try:
        ref = reference_outputs(model, feeds)
    except Exception as exc:  # noqa: BLE001  (the reference cannot run every op)
        return Verdict("undecided", f"{text} [reference evaluator failed: "
                       f"{type(exc).__name__}: {str(exc)[:200]}]")
    pyc_vs_ref = [p for p in compare_all(ref, pyc, tolerance) if not p.startswith(NAMES)]
    ort_vs_ref = [p for p in compare_all(ref, ort, tolerance) if not p.startswith(NAMES)]
    if not pyc_vs_ref and ort_vs_ref:
        return Verdict("ort_defect", f"{text} [reference agrees with PyC]")
    if pyc_vs_ref and not ort_vs_ref:
        if overflow_order_ambiguous(model, feeds, ort, pyc, tolerance):
            return Verdict("undecided", f"{text} [reference agrees with onnxruntime; every "
                           "difference is NaN against ±inf from a sum of huge values, whose "
                           "overflow depends on the order of accumulation]")
        if ill_conditioned(model, feeds, ort, pyc, tolerance):
            return Verdict("undecided", f"{text} [reference agrees with onnxruntime; every "
                           "difference is where moving the inputs by an ulp or two moves "
                           "onnxruntime's own result beyond tolerance: ill-conditioned]")
        return Verdict("mismatch", f"{text} [reference agrees with onnxruntime]")
    return Verdict("undecided", f"{text} [reference agrees with "
                   f"{'both' if not pyc_vs_ref else 'neither'}]")


# ---------------------------------------------------------------- ties in index outputs

INDEX_OPS = {"ArgMax": 0, "ArgMin": 0, "TopK": 1}  # op -> which output holds indices


def index_ties(model: onnx.ModelProto, feeds: dict[str, np.ndarray], ort: Outputs, pyc: Outputs,
               tolerance: Tolerance) -> Verdict | None:
    """Indices picked among values equal within tolerance are both right: an arg-reduction turns
    a last-bit difference in its input (a vector lane's exp against the scalar tail's) into a
    different index. A differing index output is "ok" when PyC's indices select values within
    tolerance of onnxruntime's; a differing integer output further downstream of such a near tie
    is "undecided". None: no differing output is explained this way."""
    producers = {o: node for node in model.graph.node for o in node.output if o}
    differing = [name for (name, e), (_, a) in zip(ort, pyc)
                 if np.asarray(e).dtype.kind not in "fc" and compare(name, np.asarray(e), np.asarray(a))]
    if not differing or len(differing) != len(compare_all(ort, pyc, tolerance)):
        return None  # some float output differs too: not a question of ties
    arg_nodes = [n for n in model.graph.node if n.op_type in INDEX_OPS]
    if not arg_nodes:
        return None
    data = _intermediates(model, feeds, sorted({n.input[0] for n in arg_nodes}))
    if data is None:
        return None
    pyc_values, ort_values = dict(pyc), dict(ort)
    for name in differing:
        node = producers.get(name)
        if node is not None and node.op_type in INDEX_OPS and node.output[INDEX_OPS[node.op_type]] == name:
            if not _same_picks(node, data[node.input[0]], ort_values[name], pyc_values[name], tolerance):
                return None
        elif not any(_has_near_tie(n, data[n.input[0]], tolerance) for n in arg_nodes):
            return None
    direct = all(producers.get(n) is not None and producers[n].op_type in INDEX_OPS for n in differing)
    detail = f"{', '.join(differing)}: indices differ only between values equal within tolerance"
    return Verdict("ok", detail) if direct else Verdict("undecided", detail + " (downstream)")


def _intermediates(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                   names: list[str]) -> dict[str, np.ndarray] | None:
    """Values inside the graph, from onnxruntime (the names added as extra graph outputs)."""
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer
                 if t.name in names and t.name not in feeds}
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    known = {o.name for o in exposed.graph.output}
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type for v in [*inferred.graph.input, *inferred.graph.value_info]}
    for name in names:
        if name in known or name in constants:
            continue
        if name not in types:
            return None
        exposed.graph.output.append(onnx.ValueInfoProto(name=name, type=types[name]))
    try:
        return {**dict(ort_outputs(exposed.SerializeToString(), feeds)), **constants}
    except Exception:  # noqa: BLE001  (without the values no tie can be shown)
        return None


def _index_axis(node: onnx.NodeProto, rank: int) -> int:
    axis = next((a.i for a in node.attribute if a.name == "axis"), -1 if node.op_type == "TopK" else 0)
    return axis % max(rank, 1)


def _same_picks(node: onnx.NodeProto, x: np.ndarray, ort_idx: np.ndarray, pyc_idx: np.ndarray,
                tolerance: Tolerance) -> bool:
    if x.ndim == 0 or ort_idx.shape != pyc_idx.shape:
        return False
    axis = _index_axis(node, x.ndim)
    if ort_idx.ndim != x.ndim:  # keepdims=0
        ort_idx, pyc_idx = np.expand_dims(ort_idx, axis), np.expand_dims(pyc_idx, axis)
    if np.any(pyc_idx < 0) or np.any(pyc_idx >= x.shape[axis]):
        return False
    picked_ort = np.take_along_axis(x, ort_idx.astype(np.int64), axis)
    picked_pyc = np.take_along_axis(x, pyc_idx.astype(np.int64), axis)
    return not compare("picked", picked_ort, picked_pyc, tolerance)


def _has_near_tie(node: onnx.NodeProto, x: np.ndarray, tolerance: Tolerance) -> bool:
    """Whether the two most extreme values along the node's axis are equal within tolerance
    somewhere (for TopK: any two neighbours in sorted order)."""
    if x.ndim == 0 or x.dtype.kind not in "fc":
        return False
    axis = _index_axis(node, x.ndim)
    if x.shape[axis] < 2:
        return False
    ordered = np.moveaxis(np.sort(x.astype(np.float64), axis=axis), axis, -1)
    if node.op_type == "ArgMin":
        ordered = ordered[..., :2]
    elif node.op_type == "ArgMax":
        ordered = ordered[..., -2:]
    rtol, atol = tolerance.row("", x.dtype)
    with np.errstate(invalid="ignore"):
        gaps = np.abs(np.diff(ordered, axis=-1))
        return bool(np.any(gaps <= atol * tolerance.scale + rtol * np.abs(ordered[..., 1:])))


# ---------------------------------------------------------------- order-dependent overflow


def overflow_order_ambiguous(model: onnx.ModelProto, feeds: dict[str, np.ndarray], ort: Outputs,
                             pyc: Outputs, tolerance: Tolerance) -> bool:
    """Whether every differing element is non-finite on both sides, in a graph that sums (a
    reducing op) over a feed holding huge finite values: FLT_MAX + FLT_MAX - inf is NaN in one
    order of accumulation and -inf in another, and neither order is the ONNX one. A finite value
    where the other side has NaN is never explained so (a comparison that drops NaN)."""
    if not any(n.op_type in REDUCING or n.op_type.startswith("Reduce") for n in model.graph.node):
        return False
    if not any(_holds_huge(v) for v in feeds.values()):
        return False
    differing = False
    for (name, e), (_, a) in zip(ort, pyc):
        e, a = np.asarray(e), np.asarray(a)
        if e.dtype.kind not in "fc" or e.shape != a.shape:
            if compare(name, e, a, tolerance):
                return False
            continue
        with np.errstate(invalid="ignore"):
            same = (e == a) | (np.isnan(e) & np.isnan(a))
        finite_gap = np.isfinite(e) & np.isfinite(a)
        if compare(name, e[finite_gap], a[finite_gap], tolerance):
            return False  # finite values beyond tolerance: not a question of overflow
        unexplained = ~same & ~finite_gap & (np.isfinite(e) | np.isfinite(a))
        if np.any(unexplained):
            return False
        differing = differing or bool(np.any(~same & ~finite_gap))
    return differing


def _holds_huge(value: np.ndarray) -> bool:
    if value.dtype.kind != "f" or value.size == 0:
        return False
    with np.errstate(invalid="ignore"):
        return bool(np.any(np.isfinite(value) & (np.abs(value) >= np.finfo(value.dtype).max / 16)))


# ---------------------------------------------------------------- remainders of huge dividends


def ill_conditioned_mod(model: onnx.ModelProto, feeds: dict[str, np.ndarray], ort: Outputs,
                        pyc: Outputs, tolerance: Tolerance) -> Verdict | None:
    """A float remainder is undetermined where the dividend's tolerance exceeds the divisor:
    BatchNormalization rounding -2.9796064e38 one ulp differently moves fmod(x, -1.43) anywhere
    in (-1.43, 1.43) (fuzz seed 1427541355). A differing Mod output is "ok" when every differing
    element is such a remainder and PyC's is still a valid one (|r| < |w|, sign of x for fmod,
    of w otherwise); a differing output further downstream of one is "undecided". None: no
    differing output is explained this way."""
    mods = [n for n in model.graph.node if n.op_type == "Mod"]
    differing = [name for (name, e), (_, a) in zip(ort, pyc)
                 if compare(name, np.asarray(e), np.asarray(a), tolerance)]
    if not mods or not differing:
        return None
    data = _intermediates(model, feeds, sorted({i for n in mods for i in n.input[:2]}))
    if data is None:
        return None
    uncertain = {n.output[0]: _uncertain_remainders(n, data, tolerance) for n in mods}
    if not any(mask is not None and mask.any() for mask in uncertain.values()):
        return None
    producers = {o: node for node in model.graph.node for o in node.output if o}
    pyc_values, ort_values = dict(pyc), dict(ort)
    direct = True
    for name in differing:
        node = producers.get(name)
        if node is None or node.op_type != "Mod" or uncertain[name] is None:
            direct = False
            continue
        if not _valid_remainders(node, data, ort_values[name], pyc_values[name], uncertain[name], tolerance):
            return None
    if not direct and any(name in uncertain and name not in differing for name, _ in ort):
        return None  # an uncertain remainder that is a graph output came out the same
    detail = f"{', '.join(differing)}: remainders of dividends whose tolerance exceeds the divisor"
    return Verdict("ok", detail) if direct else Verdict("undecided", detail + " (downstream)")


def _uncertain_remainders(node: onnx.NodeProto, data: dict[str, np.ndarray],
                          tolerance: Tolerance) -> np.ndarray | None:
    """Where |x| * rtol >= |w| (float Mod only; None for an integer one)."""
    x, w = data[node.input[0]], data[node.input[1]]
    if x.dtype.kind != "f":
        return None
    rtol, _ = tolerance.row(node.input[0], x.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.isfinite(x) & (np.abs(x.astype(np.float64)) * rtol >= np.abs(w.astype(np.float64)))


def _valid_remainders(node: onnx.NodeProto, data: dict[str, np.ndarray], expected: np.ndarray,
                      actual: np.ndarray, uncertain: np.ndarray, tolerance: Tolerance) -> bool:
    x, w = np.broadcast_arrays(data[node.input[0]].astype(np.float64),
                               data[node.input[1]].astype(np.float64))
    a = np.asarray(actual, np.float64)
    if a.shape != x.shape or uncertain.shape != x.shape:
        return False
    with np.errstate(invalid="ignore"):
        beyond = ~_within_tolerance(node.output[0], np.asarray(expected), np.asarray(actual), tolerance)
        fmod = any(att.name == "fmod" and att.i == 1 for att in node.attribute)
        sign_of = x if fmod else w
        valid = (np.abs(a) <= np.abs(w)) & ((a == 0) | (np.sign(a) == np.sign(sign_of)))
    return bool(np.all(uncertain[beyond] & valid[beyond]))


def _within_tolerance(name: str, expected: np.ndarray, actual: np.ndarray,
                      tolerance: Tolerance) -> np.ndarray:
    """Elementwise: equal (NaN with NaN, inf with the same inf) or finite and within tolerance."""
    exp, act = expected.astype(np.float64), actual.astype(np.float64)
    finite = np.isfinite(exp)
    with np.errstate(invalid="ignore", over="ignore"):
        close = np.abs(act - exp) <= _allowed(name, expected, tolerance)
        return (exp == act) | (np.isnan(exp) & np.isnan(act)) | (finite & close)


# ---------------------------------------------------------------- ill-conditioned elements


NUDGES = 8  # perturbed feeds tried (deterministic seeds: a replay decides the same way)


def ill_conditioned(model: onnx.ModelProto, feeds: dict[str, np.ndarray], ort: Outputs,
                    pyc: Outputs, tolerance: Tolerance) -> bool:
    """Whether every element where PyC differs is one where onnxruntime's own result moves
    beyond tolerance when the float inputs move by an ulp or three, and PyC's value lies within
    the span of those results: there the rounding of any
    correct evaluation decides. (An LSTM whose cell state 3.4e38 meets a peephole product that
    cancels a gate's input exactly gives a gate of 0, 0.5 or 1 by whether the product is
    rounded before the add: fused multiply-add, seed 3051119508.)"""
    model_bytes = model.SerializeToString()
    moved = [ort_outputs(model_bytes, _nudged(feeds, seed)) for seed in range(NUDGES)]
    differing = False
    for index, ((name, e), (_, a)) in enumerate(zip(ort, pyc)):
        e, a = np.asarray(e), np.asarray(a)
        if not compare(name, e, a, tolerance):
            continue
        if e.dtype.kind != "f" or e.shape != a.shape:
            return False
        beyond = ~_within_tolerance(name, e, a, tolerance)
        others = [np.asarray(outputs[index][1]) for outputs in moved]
        others = [o for o in others if o.shape == e.shape and o.dtype == e.dtype]
        sensitive = np.zeros(e.shape, bool)
        for other in others:
            sensitive |= ~_within_tolerance(name, e, other, tolerance)
        if not np.all(sensitive[beyond] & _inside(name, a, [e, *others], tolerance)[beyond]):
            return False
        differing = True
    return differing


def _inside(name: str, actual: np.ndarray, results: list[np.ndarray],
            tolerance: Tolerance) -> np.ndarray:
    """Elementwise: `actual` lies within the span of `results` (or within tolerance of one of
    them; NaN where one of them is NaN)."""
    stack = np.stack([r.astype(np.float64) for r in results])
    a = actual.astype(np.float64)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN element: NaN bounds
        inside = (a >= np.nanmin(stack, axis=0)) & (a <= np.nanmax(stack, axis=0))
        inside |= np.isnan(a) & np.any(np.isnan(stack), axis=0)
    for result in results:
        inside |= _within_tolerance(name, result, actual, tolerance)
    return inside


def _nudged(feeds: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Each finite non-zero float input element moved one to three ulps up or down, at random
    (towards zero where the other way would overflow; independently per element, so that x and
    -x fed to two inputs stop cancelling exactly)."""
    rng = np.random.default_rng(seed)
    nudged = {}
    for name, value in feeds.items():
        value = np.asarray(value)
        if value.dtype.kind != "f" or value.size == 0:
            nudged[name] = value
            continue
        target = np.where(rng.random(value.shape) < 0.5, np.inf, -np.inf).astype(value.dtype)
        ulps = rng.integers(1, 4, value.shape)
        moved = value
        for step in range(3):
            with np.errstate(over="ignore"):
                ahead = np.nextafter(moved, target)
            ahead = np.where(np.isinf(ahead), np.nextafter(moved, value.dtype.type(0)), ahead)
            moved = np.where(ulps > step, ahead, moved)
        nudged[name] = np.where(np.isfinite(value) & (value != 0), moved, value).astype(value.dtype)
    return nudged
