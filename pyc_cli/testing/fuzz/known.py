"""Known PyC defects, keyed by a failure signature: ones other engineers are fixing, and ones
this fuzzer found that nobody has fixed yet (each says which).

The fuzzer labels a failure with the defect it matches (in the report and case.json); the CI
tier (tests/fuzz/test_fuzz_ci.py) treats only these as expected failures. Keep the list small and
delete an entry the moment its fix lands: nothing here is skipped silently, every match is
reported as `known_defect`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import onnx

from .runner import Outcome


@dataclass(frozen=True)
class KnownDefect:
    name: str
    classes: tuple[str, ...]
    pattern: str  # regex one problem of the outcome's detail must match
    feeds: tuple[str, ...] = ("normal", "special")
    # the model must hold a node satisfying one of these predicates (NODE_PREDICATES)
    nodes: tuple[str, ...] = ()

    def explains(self, outcome: Outcome, problem: str, model: onnx.ModelProto) -> bool:
        return (outcome.cls in self.classes and outcome.feed in self.feeds
                and re.search(self.pattern, problem) is not None
                and (not self.nodes or any(NODE_PREDICATES[key](node, model) for key in self.nodes
                                           for node in model.graph.node)))


KNOWN_DEFECTS: tuple[KnownDefect, ...] = (
    # a graph input (or a value returned twice) as a graph output gets the internal name
    # copy_<x>_out instead of the ONNX output name (known-defects engineer)
    KnownDefect("output-misnamed-copy", ("mismatch",), r"^output names/order .*'copy_\w+_out'"),
    # NaN/Inf do not propagate as onnxruntime does (NaN/Inf engineer): NaN fed in (special
    # values) or made inside (Sqrt/Log/Acos of a negative) is dropped by Sign, Relu, Min/Max,
    # max/min reductions, ...
    KnownDefect("nan-inf-propagation", ("mismatch",), r": (NaN at|infinities differ)"),
    # Tile of a zero-size tensor: IndexError in (or a PYC-E009 "cannot reshape" refusal of)
    # Tile's decomposition (known-defects engineer; fuzz 2483408722, 533520136)
    KnownDefect("tile-zero-size", ("crash", "refused"),
                r"IndexError: tuple index out of range|cannot reshape .*where: Tile_",
                nodes=("tile-zero-size",)),
    # found by this fuzzer, not assigned yet (delete when fixed):
    # float64 LeakyRelu/Elu/... use the attribute default as a double (0.01) where ONNX
    # attributes are float32 (0.01f): relative error ~2e-8 (fuzz 715150840)
    KnownDefect("float64-alpha-default", ("mismatch",), r"beyond tolerance", nodes=("float64-alpha-unary",)),
    # Slice with a negative step and a start below -dim clamps as numpy does (empty) where
    # ONNX clamps to the first element; the ONNX reference evaluator shares it, so it shows as
    # an ort_defect (fuzz 2269397943)
    KnownDefect("slice-negative-step-clamp", ("mismatch", "ort_defect"), r".",
                nodes=("slice-negative-step",)),
)


def _slice_negative_step(node: onnx.NodeProto, model: onnx.ModelProto) -> bool:
    """A Slice whose steps initializer holds a negative step."""
    if node.op_type != "Slice" or len(node.input) < 5:
        return False
    steps = {t.name: t for t in model.graph.initializer}.get(node.input[4])
    return steps is not None and bool((onnx.numpy_helper.to_array(steps) < 0).any())


def _float64_alpha_unary(node: onnx.NodeProto, model: onnx.ModelProto) -> bool:
    """An activation with a float attribute (default or given) in a float64 model."""
    return node.op_type in ALPHA_OPS and any(
        t.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE for t in model.graph.input)


ALPHA_OPS = ("LeakyRelu", "Elu", "Celu", "Selu", "HardSigmoid", "ThresholdedRelu", "Shrink", "Swish")


def _tile_zero_size(node: onnx.NodeProto, model: onnx.ModelProto) -> bool:
    """A Tile whose input has a zero dim (graph input types; inferred ones otherwise)."""
    if node.op_type != "Tile":
        return False
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type for v in [*inferred.graph.input, *inferred.graph.value_info]}
    dims = types[node.input[0]].tensor_type.shape.dim if node.input[0] in types else []
    return any(d.HasField("dim_value") and d.dim_value == 0 for d in dims)


NODE_PREDICATES = {"slice-negative-step": _slice_negative_step, "tile-zero-size": _tile_zero_size,
                   "float64-alpha-unary": _float64_alpha_unary}




def problems(detail: str) -> list[str]:
    """The separate differences an outcome's detail lists (oracle.judge joins them with '; ')."""
    return [p for p in detail.split(" [reference")[0].split("; ") if p]


def known_defect(outcome: Outcome, model: onnx.ModelProto) -> str:
    """The known defect(s) explaining every problem of the outcome ('a+b'), or '' when any
    problem is unexplained (a new failure)."""
    names = []
    # value comparisons list several differences; a crash or refusal is one message
    parts = problems(outcome.detail) if outcome.cls in ("mismatch", "ort_defect") else [outcome.detail]
    for problem in parts or [""]:
        found = next((d.name for d in KNOWN_DEFECTS if d.explains(outcome, problem, model)), None)
        if found is None:
            return ""
        names.append(found)
    return "+".join(sorted(set(names)))
