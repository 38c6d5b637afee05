"""Per-node verdicts: where PyC and onnxruntime disagree on a whole graph, find the nodes that
disagree given the same inputs, and judge each of those alone.

PyC builds the graph once more with every node output exposed. If that build gives the same
graph outputs as the original one, its intermediates are the original's; each node is then run by
onnxruntime on PyC's own inputs to that node, and compared with PyC's output of the node. So a
difference is pinned to the nodes that compute differently, not to their downstream.

- No node differs: every node agrees with onnxruntime given the same inputs, and the outputs
  differ only by within-tolerance rounding that the graph amplifies (ill-conditioned): undecided.
- A node differs: the node alone is judged by the ONNX reference evaluator in float32 and again in
  float64 (the exact answer, rounded): whoever agrees with one of them while the other agrees with
  neither is right. Float32 sums of huge values overflow in one order of accumulation and not in
  another, or in a fused multiply-add and not in a separate product; float64 decides those.
  PyC right at every differing node: ort_defect; PyC wrong at one: mismatch; else undecided.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

from .oracle import (
    Outputs,
    Tolerance,
    Verdict,
    _within_tolerance,
    compare_all,
    ort_outputs,
    reference_outputs,
)

# run the model (bytes) with PyC on the feed; None where PyC did not build or run it
PycRun = Callable[[bytes, dict[str, np.ndarray]], Outputs | None]


def per_node_verdict(model: onnx.ModelProto, feeds: dict[str, np.ndarray], pyc: Outputs,
                     tolerance: Tolerance, pyc_run: PycRun) -> Verdict | None:
    """The verdict from the nodes that disagree, or None where intermediates cannot be had."""
    exposed, names = _exposed(model)
    if exposed is None:
        return None
    found = pyc_run(exposed.SerializeToString(), feeds)
    if found is None:
        return None
    values = dict(found)
    original = [(name, values.get(name)) for name, _ in pyc]
    if any(v is None for _, v in original) or compare_all(pyc, original, tolerance):
        return None  # the exposing build computes otherwise: its intermediates are not evidence
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    values = {**constants, **feeds, **values}
    verdicts = []
    for node in model.graph.node:
        if _has_subgraph(node) or not all(o in values for o in node.output if o):
            continue
        verdict = _node_verdict(model, node, values, names)
        if verdict is not None:
            verdicts.append(verdict)
    if not verdicts:
        return Verdict("undecided", "every node agrees with onnxruntime given PyC's own inputs: "
                       "within-tolerance rounding that the graph amplifies (ill-conditioned)")
    for cls in ("mismatch", "undecided", "ort_defect"):
        picked = [v.detail for v in verdicts if v.cls == cls]
        if picked:
            return Verdict(cls, "; ".join(picked))
    return None


def _exposed(model: onnx.ModelProto) -> tuple[onnx.ModelProto | None, dict[str, onnx.TypeProto]]:
    """The model with every node output (of a known type) also a graph output; the types."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception:  # noqa: BLE001  (without types no output can be declared)
        return None, {}
    types = {v.name: v.type for v in [*inferred.graph.input, *inferred.graph.value_info,
                                      *inferred.graph.output]}
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    known = {o.name for o in exposed.graph.output} | {i.name for i in exposed.graph.input}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in known and name in types:
                exposed.graph.output.append(onnx.ValueInfoProto(name=name, type=types[name]))
                known.add(name)
    return exposed, types


def _has_subgraph(node: onnx.NodeProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in node.attribute)


def _node_verdict(model: onnx.ModelProto, node: onnx.NodeProto, values: dict[str, np.ndarray],
                  types: dict[str, onnx.TypeProto]) -> Verdict | None:
    """None where onnxruntime, on PyC's inputs to the node, gives PyC's outputs of the node."""
    if any(o and o not in types for o in node.output):
        return None
    single = _single_node_model(model, node, values, types)
    feeds = {i.name: values[i.name] for i in single.graph.input}
    pyc = [(o.name, np.asarray(values[o.name])) for o in single.graph.output]
    try:
        ort = ort_outputs(single.SerializeToString(), feeds)
    except Exception:  # noqa: BLE001  (onnxruntime cannot run the node alone: no evidence)
        return None
    tolerance = Tolerance.of(single)
    problems = compare_all(ort, pyc, tolerance)
    if not problems:
        return None
    where = f"node {node.name or node.output[0]} ({node.op_type}) alone: {'; '.join(problems)}"
    if _within_summation_bound(single, feeds, ort, pyc, tolerance):
        return Verdict("undecided", f"{where} [a sum whose terms are so large that float32 "
                       "rounding in any order of accumulation explains both: each differing "
                       "element is within gamma_n * sum|terms| of the exact sum, or sum|terms| "
                       "exceeds FLT_MAX and overflow depends on the order]")
    judges = []
    for name, run in (("float32 reference", _reference32), ("float64 reference", _reference64)):
        expected = run(single, feeds)
        if expected is not None:
            judges.append((name, expected))
    pyc_right = [n for n, e in judges if not _differs(e, pyc, tolerance)]
    ort_right = [n for n, e in judges if not _differs(e, ort, tolerance)]
    if pyc_right and not ort_right:
        return Verdict("ort_defect", f"{where} [the {pyc_right[0]} agrees with PyC]")
    if ort_right and not pyc_right:
        return Verdict("mismatch", f"{where} [the {ort_right[0]} agrees with onnxruntime]")
    if pyc_right:
        return Verdict("undecided", f"{where} [the {pyc_right[0]} agrees with PyC, the "
                       f"{ort_right[0]} with onnxruntime]")
    return Verdict("undecided", f"{where} [no reference agrees with either]")


# ops whose outputs are sums of products of their float inputs (terms summed in some order)
SUMS = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum", "ReduceSum", "ReduceMean", "Sum",
        "Mean", "AveragePool", "GlobalAveragePool", "CumSum"}
UNIT_ROUNDOFF = 2.0**-24  # float32


def _within_summation_bound(single: onnx.ModelProto, feeds: dict[str, np.ndarray], ort: Outputs,
                            pyc: Outputs, tolerance: Tolerance) -> bool:
    """Whether a float32 sum node's differing elements all lie within the classic forward error
    bound of recursive summation, |fl(s) - s| <= gamma_n * sum|terms| (gamma_n = n*u / (1 - n*u),
    n at most the node's input size), around the exact (float64) sum, for PyC and onnxruntime
    alike; where sum|terms| exceeds FLT_MAX a partial sum may overflow, so inf, -inf, NaN (inf
    meeting -inf) or a finite value are all what some order of accumulation gives."""
    node = single.graph.node[0]
    if node.op_type not in SUMS or len(pyc) != 1 or any(
            np.asarray(v).dtype != np.float32 for _, v in pyc):
        return False
    exact = _reference64(single, feeds)
    terms = _reference64(single, {k: _finite_magnitude(v) for k, v in feeds.items()})
    if exact is None or terms is None:
        return False
    s, bound = np.asarray(exact[0][1]), np.abs(np.asarray(terms[0][1]))
    n = sum(v.size for v in feeds.values())
    gamma = n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)
    name, got, want = pyc[0][0], np.asarray(pyc[0][1]), np.asarray(ort[0][1])
    differing = ~_same(got, want) & ~_within_tolerance(name, want, got, tolerance)
    overflow = bound > np.finfo(np.float32).max
    with np.errstate(invalid="ignore", over="ignore"):
        admissible = [overflow | (np.abs(v.astype(np.float64) - s) <= gamma * bound)
                      for v in (got, want)]
    return bool(differing.any() and np.all(admissible[0][differing] & admissible[1][differing]))


def _finite_magnitude(value: np.ndarray) -> np.ndarray:
    """|value| with NaN and inf as 0: the finite terms' magnitudes (the exact sum decides
    what infinite terms do)."""
    if value.dtype.kind != "f":
        return value
    return np.where(np.isfinite(value), np.abs(value), 0).astype(value.dtype)


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _differs(expected: Outputs, actual: Outputs, tolerance: Tolerance) -> bool:
    """Whether `actual` differs from a reference (compared in `actual`'s own dtypes)."""
    cast = [(n, np.asarray(e).astype(np.asarray(a).dtype)) for (n, e), (_, a) in zip(expected, actual)]
    return len(expected) != len(actual) or bool(compare_all(cast, actual, tolerance))


def _single_node_model(model: onnx.ModelProto, node: onnx.NodeProto,
                       values: dict[str, np.ndarray], types: dict[str, onnx.TypeProto]
                       ) -> onnx.ModelProto:
    """The node alone: float inputs are graph inputs fed PyC's values, others are initializers
    (shape-determining operands stay constant, as they were)."""
    inputs, initializers = [], []
    for name in dict.fromkeys(i for i in node.input if i):
        value = np.asarray(values[name])
        if value.dtype.kind == "f":
            inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
        else:
            initializers.append(onnx.numpy_helper.from_array(value, name))
    outputs = [onnx.ValueInfoProto(name=o, type=types[o]) for o in node.output if o]
    graph = helper.make_graph([node], "single", inputs, outputs, initializers)
    single = helper.make_model(graph, opset_imports=list(model.opset_import))
    single.ir_version = model.ir_version
    return single


def _reference32(single: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> Outputs | None:
    try:
        return reference_outputs(single, feeds)
    except Exception:  # noqa: BLE001  (the reference cannot run every op)
        return None


def _reference64(single: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> Outputs | None:
    """The node evaluated in float64 (float32 inputs widened; exact where float32 overflows)."""
    if not any(v.dtype == np.float32 for v in feeds.values()) or single.graph.node[0].op_type in (
            "Cast", "CastLike"):
        return None
    wide = onnx.ModelProto()
    wide.CopyFrom(single)
    for info in [*wide.graph.input, *wide.graph.output]:
        if info.type.tensor_type.elem_type == TensorProto.FLOAT:
            info.type.tensor_type.elem_type = TensorProto.DOUBLE
    widened = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in feeds.items()}
    return _reference32(wide, widened)
