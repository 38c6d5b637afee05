"""Random valid ONNX graphs over every registered op, deterministic for a seed.

`generate(seed)` grows a graph of 3-25 nodes with specs.py (explicit, generic elementwise, or the
backend-test fallback), picks outputs (every unconsumed value, plus sometimes a graph input or an
initializer returned directly, an intermediate value, the same value twice), then keeps the graph
only if onnx.checker (full, strict shape inference) accepts it and onnxruntime loads and runs it;
otherwise it regenerates from the next sub-seed. Int input ranges (valid indices, non-zero
divisors) travel in the model's metadata so any tool can feed the model validly (values.py).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from .backend_cases import examples_by_op, spec_backend, usable
from .builder import FUZZ_DTYPES, GraphBuilder, Reject, Value
from .specs import EXPLICIT, MOTIFS, Spec, spec_for
from .values import NONZERO_KEY, RANGES_KEY, feeds_for

# mostly recent opsets; old ones now and then (older schema versions, Upsample until 9)
OPSETS = (9, 13, 17, 18, 18, 19, 20, 21, 21, 22, 23, 24, 26)
MAX_ATTEMPTS = 30
MIN_NODES, MAX_NODES = 3, 25


@dataclass
class FuzzCase:
    seed: int
    model: onnx.ModelProto
    attempts: int  # graphs generated before one passed the checker and onnxruntime

    @property
    def ops(self) -> list[str]:
        return [n.op_type for n in self.model.graph.node]


class GenerationFailed(Exception):
    pass


def op_specs(opset: int, only: list[str] | None = None) -> dict[str, Spec]:
    """Every fuzzable op that exists at `opset`, with the spec that generates it."""
    from .specs import fuzzable_ops

    specs: dict[str, Spec] = {}
    for op in only or fuzzable_ops():
        try:
            onnx.defs.get_schema(op, opset)
        except onnx.defs.SchemaError:
            continue
        spec = spec_for(op)
        if spec is None and any(usable(e, opset) for e in examples_by_op().get(op, [])):
            spec = spec_backend
        if spec is not None:
            specs[op] = spec
    return specs


def _weight(op: str, spec: Spec) -> float:
    return 2.0 if op in EXPLICIT else (1.0 if spec is not spec_backend else 0.7)


def grow(b: GraphBuilder, specs: dict[str, Spec], target: int) -> None:
    """Add nodes until `target` (or too many rejections); each spec call is all-or-nothing."""
    ops = sorted(specs)
    weights = np.array([_weight(op, specs[op]) for op in ops])
    weights /= weights.sum()
    motifs = sorted(MOTIFS) if len(ops) > 1 else []  # not when generating one op on purpose
    for _ in range(target * 12):
        if len(b.nodes) >= target:
            return
        if motifs and b.chance(0.15):
            name = b.choice(motifs)
            spec = MOTIFS[name]
        else:
            name = ops[int(b.rng.choice(len(ops), p=weights))]
            spec = specs[name]
        snapshot = (len(b.nodes), len(b.values), len(b.inputs), len(b.initializers))
        try:
            spec(b, name)
            if len(b.nodes) > MAX_NODES:
                raise Reject("too many nodes")
        except Reject:
            _rollback(b, snapshot)


def _rollback(b: GraphBuilder, snapshot: tuple[int, int, int, int]) -> None:
    """Undo a partly applied spec (motifs add several nodes; a later one may be rejected)."""
    nodes, values, inputs, inits = snapshot
    del b.nodes[nodes:], b.values[values:], b.inputs[inputs:], b.initializers[inits:]


def choose_outputs(b: GraphBuilder) -> list[Value]:
    consumed = {name for node in b.nodes for name in node.input}
    produced = [v for v in b.values if not v.is_input and v.const is None]
    leaves = [v for v in produced if v.name not in consumed]
    outputs = leaves[-8:] if leaves else produced[-1:]
    if b.chance(0.2) and produced:
        outputs.append(b.choice(produced))  # an intermediate value, also consumed
    if b.chance(0.06) and b.inputs:
        outputs.append(b.choice(b.inputs))  # a graph input returned directly
    if b.chance(0.05) and b.initializers:
        outputs.append(b.choice([v for v in b.initializers]))  # an initializer returned directly
    if b.chance(0.06) and outputs:
        outputs.append(b.choice(outputs))  # the same value as two outputs
    return outputs


def to_model(b: GraphBuilder, outputs: list[Value], name: str) -> onnx.ModelProto:
    used = {n for node in b.nodes for n in node.input} | {v.name for v in outputs}
    inputs = [v for v in b.inputs if v.name in used]
    inits = [v for v in b.initializers if v.name in used]
    graph = helper.make_graph(
        b.nodes, name,
        [helper.make_tensor_value_info(v.name, v.dtype, list(v.shape)) for v in inputs],
        [helper.make_tensor_value_info(v.name, v.dtype, list(v.shape)) for v in outputs],
        initializer=[onnx.numpy_helper.from_array(v.const, v.name) for v in inits])
    opsets = [helper.make_opsetid("", b.opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="pyc-fuzz")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    names = {v.name for v in inputs}
    ranges = {k: v for k, v in b.ranges.items() if k in names}
    helper.set_model_props(model, {RANGES_KEY: json.dumps(ranges, sort_keys=True),
                                   NONZERO_KEY: json.dumps(sorted(b.nonzero & names))})
    return model


def accepted_by_checker_and_ort(model: onnx.ModelProto) -> bool:
    import onnxruntime as ort


    ort.set_default_logger_severity(4)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # run failures are reported by the exception
    try:
        onnx.checker.check_model(model, full_check=True)
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        session.run(None, feeds_for(model, 0))  # some invalid graphs only fail at run time
    except Exception:  # noqa: BLE001  (an invalid graph is regenerated, not a finding)
        return False
    return True


def _opsets_for(only: list[str] | None) -> list[int]:
    """OPSETS, or when generating chosen ops, the ones of OPSETS where PyC supports one of them."""
    if not only:
        return list(OPSETS)
    from ...ops import registry

    def supported(op: str, opset: int) -> bool:
        opdef = registry.lookup(op)
        try:
            version = onnx.defs.get_schema(op, opset).since_version
        except onnx.defs.SchemaError:
            return False
        return opdef is not None and opdef.since <= version <= opdef.until

    return [o for o in OPSETS if any(supported(op, o) for op in only)] or list(OPSETS)


def generate_once(rng: np.random.Generator, name: str, only: list[str] | None = None) -> onnx.ModelProto:
    opset = int(rng.choice(_opsets_for(only)))
    b = GraphBuilder(rng, opset, zero_size=bool(rng.random() < 0.1),
                     primary=int(rng.choice(FUZZ_DTYPES, p=[.6, .08, .08, .08, .1, .06])))
    specs = op_specs(opset, only)
    if not specs:
        raise Reject(f"no op of {only} exists at opset {opset}")
    target = int(rng.integers(MIN_NODES, MAX_NODES + 1)) if not only else int(rng.integers(1, 6))
    grow(b, specs, target)
    if len(b.nodes) < (1 if only else MIN_NODES):
        raise Reject("too few nodes")
    return to_model(b, choose_outputs(b), name)


def generate(seed: int, only: list[str] | None = None) -> FuzzCase:
    """A checked graph for `seed` (`only`: restrict the ops drawn, e.g. for coverage tests)."""
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, attempt])
        try:
            model = generate_once(rng, f"fuzz_{seed}", only)
        except Reject:
            continue
        if accepted_by_checker_and_ort(model):
            return FuzzCase(seed, model, attempt + 1)
    raise GenerationFailed(f"no valid graph for seed {seed} in {MAX_ATTEMPTS} attempts (ops {only})")


def op_histogram(models: list[onnx.ModelProto]) -> dict[str, int]:
    return dict(Counter(n.op_type for m in models for n in m.graph.node).most_common())
