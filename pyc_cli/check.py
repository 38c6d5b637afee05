"""`pyc check`: every node PyC cannot compile, grouped by reason, in one run, with a
compilability score (share of nodes and of FLOPs that are supported)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .errors import PycError
from .frontend.onnx_import import convert, load_model, schema_version, static_dim
from .ir.graph import Graph, Node
from .ir.types import DType, TensorType
from .ops import registry
from .ops.propagate import evaluate_node, infer_node

REASONS = ("unknown op", "unsupported opset", "dtype", "attribute value", "data-dependent shape",
           "inconsistent shapes")


@dataclass
class Problem:
    node: str
    op: str
    detail: str


@dataclass
class CheckReport:
    model: str
    nodes: int
    # estimated FLOPs of every node at the checked shapes, each counted once (>= 0), and
    # whether the node compiles: the FLOP share is a sum over a subset of the same numbers
    node_flops: dict[str, tuple[int, bool]] = field(default_factory=dict)
    assumed_dims: list[str] = field(default_factory=list)
    assumed_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    problems: dict[str, list[Problem]] = field(default_factory=dict)
    # problems that appear only because an unknown dim was guessed (or may): not failures
    undecided: dict[str, list[Problem]] = field(default_factory=dict)
    # node name -> (inputs, outputs) of the imported graph, in execution order
    dataflow: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict, repr=False)

    @property
    def failing_nodes(self) -> int:
        return len({p.node for group in self.problems.values() for p in group})

    @property
    def unsupported_nodes(self) -> int:
        """Nodes with a problem at the checked shapes (the first guess), decided or not."""
        return sum(1 for _, supported in self.node_flops.values() if not supported)

    @property
    def flops_total(self) -> int:
        return sum(flops for flops, _ in self.node_flops.values())

    @property
    def flops_supported(self) -> int:
        return sum(flops for flops, supported in self.node_flops.values() if supported)

    @property
    def node_share(self) -> float:
        return (self.nodes - self.unsupported_nodes) / self.nodes if self.nodes else 1.0

    @property
    def flop_share(self) -> float:
        total = self.flops_total
        return self.flops_supported / total if total else 1.0

    @property
    def compilable(self) -> bool | None:
        """True, False, or None when only --input-shape can decide."""
        return False if self.problems else None if self.undecided else True

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "compilable": self.compilable, "nodes": self.nodes,
            "supported_nodes": self.nodes - self.unsupported_nodes, "node_share": self.node_share,
            "flops_total": self.flops_total, "flops_supported": self.flops_supported,
            "flop_share": self.flop_share, "assumed_dims": self.assumed_dims,
            "assumed_shapes": {k: list(v) for k, v in self.assumed_shapes.items()},
            "problems": _problems_json(self.problems),
            "undecided": _problems_json(self.undecided),
        }

    def summary(self) -> str:
        parts = []
        for reason, group in self.problems.items():
            listing = ", ".join(f"{p.node!r} ({p.op}: {p.detail})" for p in group)
            parts.append(f"{reason} [{len(group)}]: {listing}")
        return "; ".join(parts)

    def add(self, reason: str, node: Node | onnx.NodeProto, detail: str, op: str) -> None:
        self.problems.setdefault(reason, []).append(Problem(node.name, op, detail))


def _problems_json(problems: dict[str, list[Problem]]) -> dict[str, list[dict[str, str]]]:
    return {reason: [p.__dict__ for p in group] for reason, group in problems.items()}


# Unknown dims are checked at two guesses: a plausible size, and a second one to tell problems
# of the model from problems of the guess. Axis 0 is usually the batch; other axes are spatial
# or sequence lengths. Equal dim names get equal sizes, as the model requires.
GUESSES = ({"batch": 1, "other": 64}, {"batch": 2, "other": 224})
# problems that can come from the sizes alone (the others, e.g. an unknown op, cannot)
SHAPE_REASONS = ("inconsistent shapes",)


def check_model(path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None
                ) -> CheckReport:
    """Every problem of the model at the given shapes. Inputs with unknown dims and no
    `input_shapes` entry are checked at guessed sizes (GUESSES): a problem that depends on the
    guess (it appears at one guess only, or it is a shape problem downstream of a guessed input)
    is `undecided`, not a failure; --input-shape decides it."""
    model = load_model(Path(path))
    given = dict(input_shapes or {})
    guesses = [_guess_shapes(model, given, **sizes) for sizes in GUESSES]
    if not guesses[0]:
        return _check_at(model, Path(path).name, given)
    report = _check_at(model, Path(path).name, {**given, **guesses[0]})
    report.assumed_dims = sorted(guesses[0])
    report.assumed_shapes = dict(sorted(guesses[0].items()))
    others = []
    for guess in guesses[1:]:
        try:
            others.append((_check_at(model, Path(path).name, {**given, **guess}), guess))
        except PycError:
            continue  # this guess cannot even be imported: it decides nothing
    dependent = _depends_on(report.dataflow, set(guesses[0]))
    _separate_undecided(report, others, dependent)
    return report


def _guess_shapes(model: onnx.ModelProto, given: dict[str, tuple[int, ...]], batch: int,
                  other: int) -> dict[str, tuple[int, ...]]:
    """A size for every unknown dim of the inputs `given` does not fix."""
    inits = {t.name for t in model.graph.initializer}
    by_name: dict[str, int] = {}
    shapes = {}
    for value in model.graph.input:
        if value.name in inits or value.name in given:
            continue
        dims = value.type.tensor_type.shape.dim
        sizes = [static_dim(d) for d in dims]
        if None not in sizes:
            continue
        guessed = []
        for axis, (dim, size) in enumerate(zip(dims, sizes)):
            if size is None:
                guess = batch if axis == 0 else other
                size = by_name.setdefault(dim.dim_param, guess) if dim.dim_param else guess
            guessed.append(size)
        shapes[value.name] = tuple(guessed)
    return shapes


def _depends_on(dataflow: dict[str, tuple[list[str], list[str]]], sources: set[str]) -> set[str]:
    """Nodes (by name) that read, directly or through other nodes, one of `sources`."""
    reached, nodes = set(sources), set()
    for name, (inputs, outputs) in dataflow.items():  # nodes are in topological order
        if any(value in reached for value in inputs):
            nodes.add(name)
            reached.update(outputs)
    return nodes


def _separate_undecided(report: CheckReport,
                        others: list[tuple[CheckReport, dict[str, tuple[int, ...]]]],
                        dependent: set[str]) -> None:
    """Keep as failures only problems every guess shows that cannot come from the sizes;
    the rest move to `undecided`, each saying at which guessed shape it appeared."""
    def keys(run: CheckReport) -> set[tuple[str, str]]:
        return {(reason, p.node) for reason, group in run.problems.items() for p in group}

    everywhere = set.intersection(keys(report), *(keys(run) for run, _ in others))
    decided: dict[str, list[Problem]] = {}
    for run, guess in [(report, report.assumed_shapes), *others]:
        for reason, group in run.problems.items():
            for problem in group:
                if (reason, problem.node) in everywhere and not (
                        reason in SHAPE_REASONS and problem.node in dependent):
                    if run is report:
                        decided.setdefault(reason, []).append(problem)
                    continue
                _add_undecided(report, reason, problem, guess)
    report.problems = {reason: decided[reason] for reason in REASONS if reason in decided}
    report.undecided = {reason: report.undecided[reason] for reason in REASONS
                        if reason in report.undecided}


def _add_undecided(report: CheckReport, reason: str, problem: Problem,
                   guess: dict[str, tuple[int, ...]]) -> None:
    group = report.undecided.setdefault(reason, [])
    if any(p.node == problem.node for p in group):
        return  # the first guess that shows it is enough to say
    shapes = ", ".join(f"{name}={','.join(map(str, dims))}" for name, dims in guess.items())
    group.append(Problem(problem.node, problem.op, f"{problem.detail} (at guessed {shapes})"))


def _check_at(model: onnx.ModelProto, name: str, shapes: dict[str, tuple[int, ...]]
              ) -> CheckReport:
    """Every problem of the model at fully known input shapes."""
    report = CheckReport(name, 0)
    # the imported graph: If nodes whose condition folds are replaced by their chosen branch
    graph = convert(model, dict(shapes), check_ops=False)
    report.nodes = len(graph.nodes)
    report.dataflow = {n.name: (list(n.inputs), list(n.outputs)) for n in graph.nodes}
    _check_op_support(graph, report)
    _check_types(graph, report, _onnx_types(model, shapes))
    report.problems = {reason: report.problems[reason] for reason in REASONS
                       if reason in report.problems}
    return report


def _check_op_support(graph: Graph, report: CheckReport) -> None:
    for node in graph.nodes:
        key = node.op
        opdef = registry.lookup(key)
        version = None if "." in key else schema_version("", key, graph.opset)
        if opdef is None:
            report.add("unknown op", node, "no PyC op unit", key)
        elif version is not None and not opdef.since <= version <= opdef.until:
            report.add("unsupported opset", node, f"version {version}; PyC implements "
                       f"{opdef.since}..{opdef.until}", key)


def _classify(exc: PycError) -> str:
    text = exc.what.lower()
    if "constant" in text or "static shape" in text or "run-time" in text:
        return "data-dependent shape"
    if "element type" in text:
        return "dtype"
    return "attribute value" if exc.code == "E008" else "inconsistent shapes"


def _onnx_types(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> dict[str, TensorType]:
    """Types onnx's own shape inference gives (used past nodes PyC cannot type itself)."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, shapes[value.name]):
                dim.Clear()
                dim.dim_value = size
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception:  # noqa: BLE001  (best effort: without it, downstream nodes stay untyped)
        return {}
    types = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        tensor = value.type.tensor_type
        dims = list(tensor.shape.dim)
        sizes = [static_dim(d) for d in dims]
        if tensor.HasField("shape") and None not in sizes:
            try:
                types[value.name] = TensorType(DType.from_onnx(tensor.elem_type),
                                               tuple(s for s in sizes if s is not None))
            except KeyError:
                continue
    return types


def _check_types(graph: Graph, report: CheckReport, fallback: dict[str, TensorType]) -> None:
    """Type every node the way the importer does, recording each failure instead of stopping;
    past a failing node, onnx's inferred types keep the rest of the graph checkable."""
    failing = {p.node for group in report.problems.values() for p in group}
    types: dict[str, TensorType] = {n: graph.types[n] for n in graph.inputs}
    types.update({n: TensorType.of(a) for n, a in graph.constants.items()})
    graph.types.update(types)  # op cost rules read weight types from the graph
    known: dict[str, np.ndarray] = dict(graph.constants)
    for node in graph.nodes:
        opdef = registry.lookup(node.op)
        in_types = [types.get(v) if v else None for v in node.inputs]
        if opdef is None or node.name in failing or any(
                t is None for v, t in zip(node.inputs, in_types) if v):
            _assume_types(node, types, fallback)  # unsupported, or after one that is
            continue
        try:
            out_types = infer_node(opdef, node, in_types,
                                   [known.get(v) if v else None for v in node.inputs])
            _check_dtype(opdef, node, in_types)
            for name, ttype in zip(node.outputs, out_types):
                if any(d < 0 for d in ttype.shape):  # sizes, and so FLOP estimates, are >= 0
                    raise PycError("E009", f"inferred a negative dimension for {name!r}: "
                                   f"{list(ttype.shape)}")
        except PycError as exc:
            report.add(_classify(exc), node, exc.what, node.op)
            _assume_types(node, types, fallback)
            continue
        except Exception as exc:  # noqa: BLE001  (an op rule met a case it does not handle)
            report.add("inconsistent shapes", node, f"{type(exc).__name__}: {exc}", node.op)
            _assume_types(node, types, fallback)
            continue
        for name, ttype in zip(node.outputs, out_types):
            if name:
                types[name] = ttype
        graph.types.update({o: t for o, t in zip(node.outputs, out_types) if o})
        _evaluate_small(opdef, node, in_types, known, out_types)
        report.node_flops[node.name] = (_flops(opdef, node, graph), True)
    graph.types.update({k: v for k, v in types.items() if k not in graph.types})
    _estimate_unsupported_flops(graph, report)


def _assume_types(node: Node, types: dict[str, TensorType], fallback: dict[str, TensorType]) -> None:
    for name in node.outputs:
        if name and name in fallback:
            types[name] = fallback[name]


def _check_dtype(opdef: registry.OpDef, node: Node, in_types: list[TensorType | None]) -> None:
    for index, value in enumerate(node.inputs):
        if value and value in opdef.dtype_values(node) and in_types[index] is not None and \
                not opdef.accepts(in_types[index].dtype):  # type: ignore[union-attr]
            raise PycError("E008", f"element type {in_types[index].dtype.value} of {value!r} "  # type: ignore[union-attr]
                           "is not supported")


def _evaluate_small(opdef: registry.OpDef, node: Node, in_types: list, known: dict,
                    out_types: list[TensorType]) -> None:
    """Shape-sized values known at compile time, by the compiler's own constant evaluator."""
    values = [known.get(v) if v else None for v in node.inputs]
    try:
        results = evaluate_node(opdef, node, in_types, values, out_types, limit=1 << 16)
    except PycError:  # best effort: the value stays unknown
        return
    known.update({name: value for name, value in zip(node.outputs, results or []) if name})


def _flops(opdef: registry.OpDef, node: Node, graph: Graph) -> int:
    try:
        return int(opdef.flops(node, graph))
    except Exception:  # noqa: BLE001  (an estimate; some rules need attrs set by later passes)
        return sum(graph.types[o].numel for o in node.outputs if o in graph.types)


def _estimate_unsupported_flops(graph: Graph, report: CheckReport) -> None:
    """An estimate for nodes PyC cannot cost itself: like a matmul against their constant inputs
    (2 x weights per output row), at least one operation per output element."""
    failing = {p.node for group in report.problems.values() for p in group}
    for node in graph.nodes:
        if node.name not in failing:
            continue
        outputs = [graph.types[o] for o in node.outputs if o in graph.types]
        elements = sum(t.numel for t in outputs)
        rows = sum(t.numel // max(t.shape[-1], 1) for t in outputs if t.shape)
        weights = sum(graph.constants[v].size for v in node.inputs if v in graph.constants)
        report.node_flops[node.name] = (max(elements, 2 * weights * rows, 1), False)
