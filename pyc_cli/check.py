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
from .ir.types import DType, TensorType, check_addressable
from .ops import registry

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
    flops_total: int = 0
    flops_supported: int = 0
    assumed_dims: list[str] = field(default_factory=list)
    problems: dict[str, list[Problem]] = field(default_factory=dict)

    @property
    def failing_nodes(self) -> int:
        return len({p.node for group in self.problems.values() for p in group})

    @property
    def node_share(self) -> float:
        return (self.nodes - self.failing_nodes) / self.nodes if self.nodes else 1.0

    @property
    def flop_share(self) -> float:
        return self.flops_supported / self.flops_total if self.flops_total else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "compilable": not self.problems, "nodes": self.nodes,
            "supported_nodes": self.nodes - self.failing_nodes, "node_share": self.node_share,
            "flops_total": self.flops_total, "flops_supported": self.flops_supported,
            "flop_share": self.flop_share, "assumed_dims": self.assumed_dims,
            "problems": {reason: [p.__dict__ for p in group]
                         for reason, group in self.problems.items()},
        }

    def summary(self) -> str:
        parts = []
        for reason, group in self.problems.items():
            listing = ", ".join(f"{p.node!r} ({p.op}: {p.detail})" for p in group)
            parts.append(f"{reason} [{len(group)}]: {listing}")
        return "; ".join(parts)

    def add(self, reason: str, node: Node | onnx.NodeProto, detail: str, op: str) -> None:
        self.problems.setdefault(reason, []).append(Problem(node.name, op, detail))


def check_model(path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None
                ) -> CheckReport:
    model = load_model(Path(path))
    report = CheckReport(Path(path).name, 0)
    shapes = dict(input_shapes or {})
    _assume_symbolic_dims(model, shapes, report)
    # the imported graph: If nodes whose condition folds are replaced by their chosen branch
    graph = convert(model, shapes, check_ops=False)
    report.nodes = len(graph.nodes)
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


def _assume_symbolic_dims(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]],
                          report: CheckReport) -> None:
    """Symbolic dims without --input-shape are taken as 1 so that checking can go on."""
    inits = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in inits or value.name in shapes:
            continue
        dims = value.type.tensor_type.shape.dim
        sizes = [static_dim(d) for d in dims]
        if None in sizes:
            shapes[value.name] = tuple(1 if size is None else size for size in sizes)
            report.assumed_dims.append(value.name)


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
            out_types = opdef.infer(node, in_types, [known.get(v) if v else None for v in node.inputs])
            _check_dtype(opdef, node, in_types)
            for name, ttype in zip(node.outputs, out_types):
                check_addressable(f"value {name!r} ({ttype})", ttype.nbytes, f"node {node.name!r}")
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
        report.flops_supported += _flops(opdef, node, graph)
    graph.types.update({k: v for k, v in types.items() if k not in graph.types})
    report.flops_total = report.flops_supported + _unsupported_flops(graph, report)


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
    if node.op == "Shape" and in_types[0] is not None:
        known[node.outputs[0]] = opdef.shape_value(node, in_types[0])  # type: ignore[attr-defined]
        return
    values = [known.get(v) if v else None for v in node.inputs]
    small = all(t.numel <= 1 << 16 for t in out_types)  # shape-sized values only, never 32 GiB
    if small and all(v is not None for name, v in zip(node.inputs, values) if name):
        try:
            with np.errstate(all="ignore"):  # NaN / inf constants evaluate silently
                results = opdef.evaluate(node, values)
            for name, value in zip(node.outputs, results):
                if name and np.asarray(value).size <= 1 << 16:
                    known[name] = np.asarray(value)
        except Exception:  # noqa: BLE001  (best effort: the value stays unknown)
            pass


def _flops(opdef: registry.OpDef, node: Node, graph: Graph) -> int:
    try:
        return int(opdef.flops(node, graph))
    except Exception:  # noqa: BLE001  (an estimate; some rules need attrs set by later passes)
        return sum(graph.types[o].numel for o in node.outputs if o in graph.types)


def _unsupported_flops(graph: Graph, report: CheckReport) -> int:
    """An estimate for nodes PyC cannot cost itself: like a matmul against their constant inputs
    (2 x weights per output row), at least one operation per output element."""
    failing = {p.node for group in report.problems.values() for p in group}
    total = 0
    for node in graph.nodes:
        if node.name not in failing:
            continue
        outputs = [graph.types[o] for o in node.outputs if o in graph.types]
        elements = sum(t.numel for t in outputs)
        rows = sum(t.numel // max(t.shape[-1], 1) for t in outputs if t.shape)
        weights = sum(graph.constants[v].size for v in node.inputs if v in graph.constants)
        total += max(elements, 2 * weights * rows, 1)
    return total
