"""`--per-node`: every intermediate value that still exists after fusion, against onnxruntime.

Fusion keeps ONNX value names: a fused elementwise group is named after its last node and
produces that node's ONNX value; a MatMul/Conv that absorbs an epilogue produces the epilogue's
ONNX value. So an IR value whose name is an ONNX node output holds that ONNX value, and is
compared with onnxruntime's; ONNX values computed inside a fused loop or epilogue never exist in
memory and are reported as such (with the node they were fused into), found through the fused
groups (`fused_from`, `epilogue_from`, `prologue_from`) and the decision log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..ir.annotations import ALIAS_KERNELS
from ..ir.graph import Graph, Node
from ..ops.layout import BLOCKED_SUFFIX, to_plain
from ..runtime.debug_build import ArtifactPlan, Tap, build_debug_model, read_plan, tap_spec
from ..targets.cpu.target import CpuTarget
from .metrics import ValueComparison, compare_value
from .reference import run_reference

# decisions that merge the nodes they name into one IR node (skip_epilogue, say, does not)
MERGING_ACTIONS = frozenset({"fuse_elementwise", "fuse_epilogue", "fuse_prologue",
                             "fuse_manual_layernorm", "fold_batchnorm_into_conv",
                             "fold_batchnorm_into_gemm", "fuse_layernorm"})


@dataclass(frozen=True)
class OnnxValue:
    name: str
    node: str  # the ONNX node producing it, named as the importer names it
    op: str


@dataclass(frozen=True)
class Step:
    """One node of the compiled schedule, as the report names it."""

    step: int
    node: str
    op: str
    kernel: str
    function: str | None  # the generated C function; None for views (no code)
    fused_from: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "node": self.node, "op": self.op, "kernel": self.kernel,
                "function": self.function, "fused_from": self.fused_from}


@dataclass(frozen=True)
class NodeValue:
    step: Step
    comparison: ValueComparison

    def to_json(self) -> dict[str, Any]:
        return {**self.step.to_json(), "value": self.comparison.name,
                **{k: v for k, v in self.comparison.to_json().items() if k != "name"}}


@dataclass(frozen=True)
class AbsentValue:
    """An ONNX intermediate with no buffer in the compiled model."""

    value: str
    onnx_node: str
    reason: str
    fused_into: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "onnx_node": self.onnx_node, "reason": self.reason,
                "fused_into": self.fused_into}


@dataclass
class PerNodeReport:
    values: list[NodeValue]
    absent: list[AbsentValue]
    pyc_only: list[str]  # IR values with no ONNX counterpart (introduced by passes)
    debug_output_max_abs_diff: float
    first_divergent: NodeValue | None = field(init=False)

    def __post_init__(self) -> None:
        self.first_divergent = next((v for v in self.values if not v.comparison.passed), None)

    @property
    def passed(self) -> bool:
        return self.first_divergent is None

    def hidden_in(self, node: str) -> list[str]:
        """ONNX values computed inside `node` (fused or tiled) that cannot be inspected."""
        return [a.value for a in self.absent if a.fused_into == node]

    def to_json(self) -> dict[str, Any]:
        return {"compared": len(self.values), "values": [v.to_json() for v in self.values],
                "not_materialized": [a.to_json() for a in self.absent],
                "pyc_only_values": self.pyc_only,
                "debug_build_output_max_abs_diff": self.debug_output_max_abs_diff,
                "first_divergent": None if self.first_divergent is None else {
                    **self.first_divergent.to_json(),
                    "fused_values": self.hidden_in(self.first_divergent.step.node)}}


# ---------------------------------------------------------------- the ONNX side


def onnx_values(model_path: Path) -> dict[str, OnnxValue]:
    """Outputs of the main graph's nodes, with node names given as the importer gives them
    (unnamed nodes are OP_INDEX; repeated names get a _N suffix)."""
    model = onnx.load(str(model_path), load_external_data=False)
    used: set[str] = set()
    values = {}
    for index, proto in enumerate(model.graph.node):
        base = proto.name or f"{proto.op_type}_{index}"
        name, suffix = base, 1
        while name in used:
            name, suffix = f"{base}_{suffix}", suffix + 1
        used.add(name)
        for out in proto.output:
            if out:
                values[out] = OnnxValue(out, name, proto.op_type)
    return values


# ---------------------------------------------------------------- the IR side


def read_decisions(artifact: Path) -> list[dict[str, Any]]:
    lines = (artifact / "decisions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


class FusedGroups:
    """Which ONNX (or canonicalized) nodes each IR node computes: itself, its fused groups
    (`fused_from`, `epilogue_from`, `prologue_from`), the channel tiles a Concat joins, and the
    nodes of merging decisions (a hand-written LayerNorm, BatchNorm folded into a Conv, ...) that
    involve any of them or the producer of its output, to a fixed point."""

    def __init__(self, graph: Graph, sources: dict[str, OnnxValue],
                 decisions: list[dict[str, Any]]) -> None:
        self.graph, self.sources = graph, sources
        self.producers = graph.producers()
        self.merges = [list(d["nodes"]) for d in decisions if d["action"] in MERGING_ACTIONS]

    def of(self, node: Node) -> list[str]:
        group = self._own(node)
        for tile in self._tiles(node):
            group += [tile.ann.tiled_from, *self._own(tile)]
        return list(dict.fromkeys(group))

    def _own(self, node: Node) -> list[str]:
        group = [node.name]
        group += [*node.ann.prologue_from, *node.ann.fused_from, *node.ann.epilogue_from]
        group += [node.ann.norm_from] if node.ann.norm_from else []
        group += [self.sources[o].node for o in node.outputs if o in self.sources]
        members = set(group)
        grown = True
        while grown:
            grown = False
            for names in self.merges:
                if not members.isdisjoint(names) and not members.issuperset(names):
                    group += names
                    members.update(names)
                    grown = True
        return group

    def _tiles(self, node: Node) -> list[Node]:
        """The channel tiles (memory_first) whose slices a node joins: the Concat that ends a
        tiled conv -> pool chain computes the chain through them."""
        found: dict[str, Node] = {}
        pending = [self.producers[v] for v in node.inputs if v in self.producers]
        while pending:
            tile = pending.pop()
            if tile.ann.tiled_from and tile.name not in found:
                found[tile.name] = tile
                pending += [self.producers[v] for v in tile.inputs if v in self.producers]
        order = {n.name: i for i, n in enumerate(self.graph.nodes)}
        return sorted(found.values(), key=lambda n: order[n.name])


def schedule_steps(source: ArtifactPlan, groups: FusedGroups) -> list[Step]:
    calls = iter(CpuTarget().kernel_calls(source.graph, source.plan, source.weights))
    steps = []
    for position, node in enumerate(source.graph.nodes):
        kernel = node.ann.kernel_name
        function = next(calls).fn if kernel not in ALIAS_KERNELS else None
        steps.append(Step(position, node.name, node.op, kernel, function, groups.of(node)))
    return steps


class _Absence:
    """Why an ONNX value has no buffer: the step it was fused into (or tiled in), else the
    decision that removed its node."""

    def __init__(self, graph: Graph, steps: list[Step], decisions: list[dict[str, Any]]) -> None:
        self.graph = graph
        self.host: dict[str, Step] = {}
        for step in steps:  # the first step computing a member (a tiled node's first tile)
            for member in step.fused_from:
                self.host.setdefault(member, step)
        tiles: dict[str, list[str]] = {}
        for node in graph.nodes:
            if node.ann.tiled_from:
                tiles.setdefault(node.ann.tiled_from, []).append(node.name)
        self.tiles = {name: group for group in tiles.values() for name in group}
        self.decision = {name: d for d in decisions for name in d.get("nodes", [])}  # last wins

    def of(self, value: OnnxValue) -> AbsentValue:
        host = self.host.get(value.node)
        if host is not None and host.node in self.tiles:
            return AbsentValue(value.name, value.node, "computed in channel tiles ("
                               f"{', '.join(self.tiles[host.node])}; memory_first), never stored "
                               "whole", host.node)
        if host is not None:
            return AbsentValue(value.name, value.node, f"fused into {host.node} ({host.kernel}): "
                               "computed inside its loop, never stored", host.node)
        decision = self.decision.get(value.node, {})
        if value.op == "Constant" or value.name in self.graph.constants or \
                decision.get("action") == "fold":
            return AbsentValue(value.name, value.node, "a compile-time constant")
        if decision:
            return AbsentValue(value.name, value.node, f"{decision['pass']}: {decision['action']}")
        return AbsentValue(value.name, value.node, "not computed by the compiled model")


def absent_values(graph: Graph, sources: dict[str, OnnxValue], steps: list[Step],
                  decisions: list[dict[str, Any]]) -> list[AbsentValue]:
    """Every ONNX node output the compiled model holds no buffer for, with the reason."""
    defined = {o for node in graph.nodes for o in node.outputs if o} | set(graph.inputs)
    absence = _Absence(graph, steps, decisions)
    return [absence.of(value) for value in sources.values() if value.name not in defined]


# ---------------------------------------------------------------- the comparison


def per_node_report(artifact: Path, manifest: dict[str, Any], model_path: Path,
                    feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                    work: Path, rtol: float | None, atol: float | None
                    ) -> tuple[PerNodeReport, dict[str, np.ndarray]]:
    """Run the debug build and onnxruntime with every comparable intermediate as an extra
    output; returns the report and onnxruntime's model outputs."""
    source = read_plan(artifact, manifest)
    graph = source.graph
    sources = onnx_values(model_path)
    decisions = read_decisions(artifact)
    steps = schedule_steps(source, FusedGroups(graph, sources, decisions))
    named = {value: onnx_name(graph, value, sources) for node in graph.nodes
             for value in node.outputs if value}
    names = {value: name for value, name in named.items() if name}
    taps = [Tap(value, step.step, tap_spec(graph, value))
            for step, node in zip(steps, graph.nodes) for value in node.outputs
            if names.get(value)]
    model = build_debug_model(artifact, manifest, source, taps, work)
    debug_outputs, tapped = model.run_with_taps(feeds)
    model.close()
    reference = run_reference(model_path, feeds, sorted({names[t.value] for t in taps}))
    values = [NodeValue(steps[tap.step], compare_value(
                  tap.value, _plain(tapped[tap.value], tap.value, names[tap.value]),
                  reference[names[tap.value]], rtol, atol))
              for tap in taps]
    pyc_only = [o for node in graph.nodes for o in node.outputs if o and not names.get(o)]
    drift = max((_max_abs_diff(debug_outputs[n], outputs[n]) for n in outputs), default=0.0)
    report = PerNodeReport(values, absent_values(graph, sources, steps, decisions), pyc_only, drift)
    return report, {name: reference[name] for name in outputs}


def onnx_name(graph: Graph, value: str, sources: dict[str, OnnxValue]) -> str | None:
    """The ONNX value a compiled one holds: itself, or for a value the layout pass made
    blocked (`X.blocked`, ops/layout.py) the plain X it holds in blocks; None for neither."""
    if value in sources:
        return value
    base = value.removesuffix(BLOCKED_SUFFIX)
    if base != value and base in sources and graph.types[value].rank == 5:
        return base
    return None


def _plain(array: np.ndarray, value: str, name: str) -> np.ndarray:
    """A tapped value in the ONNX layout (a blocked one reordered to plain)."""
    return to_plain(array) if value != name else array


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """How far the debug build's outputs are from the artifact's (0 when compiled alike)."""
    if a.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    same = (a == b) | (np.isnan(a.astype(np.float64)) & np.isnan(b.astype(np.float64)))
    return float(np.where(same, 0.0, diff).max())
