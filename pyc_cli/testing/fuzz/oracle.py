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
    rtol, atol = tolerance.row(name, expected.dtype)
    scale = tolerance.scale
    magnitude = max(1.0, float(np.max(np.abs(exp[finite]))))
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite entries are masked out
        allowed = atol * scale * magnitude + rtol * np.abs(exp)
        if expected.dtype == np.float16:
            allowed = allowed + F16_ULPS * np.spacing(np.abs(expected)).astype(np.float64)
        err = np.where(finite, np.abs(act - exp) - allowed, 0.0)
    if np.all(err <= 0):
        return ""
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    return (f"{name}: {int(np.sum(err > 0))}/{expected.size} elements beyond tolerance, worst at "
            f"{list(map(int, worst))}: got {act[worst]!r}, expected {exp[worst]!r}")


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
        return Verdict("mismatch", f"{text} [reference agrees with onnxruntime]")
    return Verdict("undecided", f"{text} [reference agrees with "
                   f"{'both' if not pyc_vs_ref else 'neither'}]")
