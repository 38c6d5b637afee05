"""The target-neutral ABI of a compiled model: how its inputs and outputs are described to
callers (names, element types, shapes, sizes), whichever target compiled it.

The element-type codes are defined here once; the C runtime's `pyc_dtype` enum
(runtime_c/pyc_runtime.h) must use the same numbers (tests/test_abi.py reads the header), and
the loader checks a library's reported I/O against them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import PycError
from .ir.graph import Graph
from .ir.guards import Condition, deferred_steps
from .ir.run_dims import c_names, c_size, model_dims, shape_text
from .ir.symbolic import (
    Dim,
    DimBounds,
    bare_value_dim,
    entry_source,
    has_dims,
    input_dim_step,
    value_source,
)
from .ir.types import DType

DTYPE_CODES: dict[DType, int] = {
    DType.F32: 1, DType.F64: 2, DType.F16: 3, DType.I8: 4, DType.I16: 5, DType.I32: 6,
    DType.I64: 7, DType.U8: 8, DType.BOOL: 9, DType.U16: 10, DType.U32: 11, DType.U64: 12,
    DType.BF16: 13,
}


@dataclass(frozen=True)
class IoInfo:
    """One input or output as the ABI publishes it."""

    name: str
    dtype: str
    dtype_code: int
    shape: list[int]  # a symbolic dim's upper bound
    nbytes: int  # at the upper bounds
    # with symbolic dims (issue #15): each dim as a number or the text of its expression
    dims: list[int | str] | None = None


def io_infos(graph: Graph, values: list[str], names: list[str] | None = None) -> list[IoInfo]:
    """The ABI description of `values`, published under `names` (default: the value names)."""
    return [IoInfo(name, graph.types[v].dtype.value, DTYPE_CODES[graph.types[v].dtype],
                   [int(d) for d in graph.types[v].shape], int(graph.types[v].nbytes),
                   shape_text(graph.types[v].shape) if has_dims(graph.types[v].shape) else None)
            for v, name in zip(values, names or values)]


def run_dims(graph: Graph) -> dict[str, Any]:
    """What the generated entry points of a model with symbolic dims need (ModelInfo's dims,
    input_axes, output_dims_c; all empty for a static model): the model's dims, the dim each
    input axis takes (-1: a number), and each output dim as a C expression over `dims`."""
    dims = model_dims(graph)
    if not dims:
        return {}
    index = {d.name: k for k, d in enumerate(dims)}
    names = c_names(dims)
    axes, steps = [], []
    for value in graph.inputs:
        found = [input_dim_step(d) if isinstance(d, Dim) else None
                 for d in graph.types[value].shape]
        axes.append([index[f[0].name] if f else -1 for f in found])
        steps.append([f[1] if f else 1 for f in found])
    outputs = [[c_size(d, names) for d in graph.types[v].shape] for v in graph.outputs]
    # an axis STEP*NAME (NAME:LO..HI/STEP) binds its size / STEP; only where some axis has one,
    # so artifacts without steps are as before
    extra = {"input_steps": steps} if any(s != 1 for row in steps for s in row) else {}
    values = []
    fixed = value_assumptions(graph)
    for k, bounds in enumerate(dims):
        source = value_source(bounds)
        if source is not None and source[0] in graph.inputs:
            lo, hi = (fixed[bounds.name],) * 2 if bounds.name in fixed else (bounds.lo, bounds.hi)
            values.append({"index": k, "input": graph.inputs.index(source[0]), "element": source[1],
                           "ctype": graph.types[source[0]].dtype.c_type, "lo": lo, "hi": hi})
    steps_at_entry = entry_steps(graph, dims)
    return {"dims": dims, "input_axes": axes, "output_dims_c": outputs, **extra,
            **({"value_dims": values} if values else {}),
            **({"entry_steps": steps_at_entry} if steps_at_entry else {})}


def entry_steps(graph: Graph, dims: list[DimBounds]) -> list[dict[str, Any]]:
    """graph.entry_steps (what the shape rules need computed and checked after the value dims
    are read, before any kernel runs: symbolic.EntryStep) as the entry point's C: {kind: dim,
    index, name, num, den, hi, node} sets dims[index] = num / den, which must divide exactly
    and lie within the dim's bounds; {kind: check, cond, what, node} must hold. A run breaking
    one returns status 6 (PYC-E041)."""
    names = c_names(dims, "context->dims")
    index = {d.name: k for k, d in enumerate(dims)}
    steps: list[dict[str, Any]] = []
    deferred = deferred_steps(graph)  # checked where the run takes their If branch
    for k, step in enumerate(graph.entry_steps):
        label = step.node  # shaped_run.c.j2 writes it as a C string (c_string): escaped
        left, right = c_size(step.left, names), c_size(step.right, names)
        lenient = k in deferred  # sets its dim without refusing (the branch checks it)
        if step.kind == "dim":
            if step.dim in index:
                steps.append({"kind": "dim", "index": index[step.dim], "name": step.dim,
                              "num": left, "den": right, "hi": dims[index[step.dim]].hi,
                              "node": label, "lenient": lenient})
        elif step.kind == "bcast":
            if step.dim in index:
                steps.append({"kind": "bcast", "index": index[step.dim], "name": step.dim,
                              "left": left, "right": right, "node": label,
                              "lenient": lenient})
        elif lenient:
            continue
        elif step.kind == "equal":
            steps.append({"kind": "check", "node": label, "what": "sizes equal",
                          "cond": f"{left} == {right}"})
        else:
            steps.append({"kind": "check", "node": label, "what": "a dim broadcasts",
                          "cond": f"{left} == 1 || {left} == {right}"})
    made = {s["name"] for s in steps if s["kind"] in ("dim", "bcast")}
    missing = [d.name for d in dims if entry_source(d) is not None and d.name not in made]
    if missing:
        raise PycError("E051", f"run-time dims {missing} have no rule computing them at entry",
                       hint="give the Reshape that decides them a constant target")
    return steps


def branch_checks(graph: Graph, dims: list[DimBounds], guard: Callable[[Condition], str]
                   ) -> dict[int, list[dict[str, str]]]:
    """The entry steps of nodes inside a run-time If branch that the run checks where it takes
    the branch (ir/guards.deferred_steps), as C over run_steps' `dims`: position in graph.nodes
    -> [{guard, cond, what, node}], each refusing the run (status 6, PYC-E041) where `guard`
    (the branch's condition, as `guard` writes it) holds and `cond` does not."""
    names = c_names(dims)
    found: dict[int, list[dict[str, str]]] = {}
    for k, start in sorted(deferred_steps(graph).items()):
        step = graph.entry_steps[k]
        left, right = c_size(step.left, names), c_size(step.right, names)
        if step.kind == "dim":
            dim = next((d for d in dims if d.name == step.dim), None)
            if dim is None:
                continue
            cond = f"{right} > 0 && {left} % {right} == 0 && {left} / {right} <= {dim.hi}"
            what = f"{step.dim} divides exactly"
        elif step.kind == "bcast":
            cond = f"{left} == {right} || {left} == 1 || {right} == 1"
            what = "the sides broadcast"
        elif step.kind == "equal":
            cond, what = f"{left} == {right}", "sizes equal"
        else:
            cond, what = f"{left} == 1 || {left} == {right}", "a dim broadcasts"
        found.setdefault(start, []).append({"guard": guard(step.guard) or "1", "cond": cond,
                                            "what": what, "node": step.node})
    return found


def value_assumptions(graph: Graph) -> dict[str, int]:
    """Value dims a Reshape's element count decided (ops/views._solve_value_dim: its output
    type holds the number where its `shape` holds the value dim), by name: the entry point
    accepts only that value for them (status 6 otherwise), so the types hold at run time."""
    fixed: dict[str, int] = {}
    for node in graph.nodes:
        target = node.attrs.get("shape") if node.op == "Reshape" else None
        if not isinstance(target, list) or not node.outputs or node.outputs[0] not in graph.types:
            continue
        for dim, out in zip(target, graph.types[node.outputs[0]].shape):
            bounds = bare_value_dim(dim)
            if bounds is not None and not isinstance(out, Dim):
                fixed[bounds.name] = int(out)
    return fixed


def dtype_code(dtype: DType) -> int:
    """The ABI code of `dtype` (0 for a type no compiled model reports)."""
    return DTYPE_CODES.get(dtype, 0)
