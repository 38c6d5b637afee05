"""The run-time dims of a model with symbolic input shapes (issue #15): which named dims its
generated code reads, in which order, and how a size over them is written in C.

The dims of a model are the named dims of its graph inputs' shapes, sorted by name (so the order,
and with it the ABI, depends on nothing but the names). The generated entry point derives their
values from the actual input shapes into an array `dims` (dims[k] is the k-th dim's value), and
every kernel that reads run-time sizes (a candidate with `symbolic_dims`) gets that array.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from .graph import Graph
from .symbolic import Dim, DimBounds, DimLike, RunTimeStride, computed_dims, input_dim_step

DIMS_PARAM = "dims"  # the C parameter (an array of int64_t) kernels read the dims from

# (graph, its dims, their C names) while code is generated for that graph (dims_fixed)
_FIXED: ContextVar[tuple[Graph, list[DimBounds], dict[str, str]] | None] = \
    ContextVar("pyc_fixed_dims", default=None)


@contextmanager
def dims_fixed(graph: Graph) -> Iterator[None]:
    """Within, `graph`'s types do not change (code generation: every kernel's parameters read
    the dims), so model_dims and dim_names of it walk its values once, not once per node (which
    was quadratic). Scoped to this context (thread- and task-safe), and checked on the way out:
    a graph changed inside is an internal error, not stale code."""
    dims = _model_dims(graph)
    token = _FIXED.set((graph, dims, c_names(dims)))
    try:
        yield
    finally:
        _FIXED.reset(token)
    if _model_dims(graph) != dims:
        raise AssertionError("the graph's dims changed while its code was generated")


def model_dims(graph: Graph) -> list[DimBounds]:
    """The named dims of the graph's inputs, then those its nodes compute (_model_dims); once
    per graph within dims_fixed."""
    fixed = _FIXED.get()
    if fixed is not None and fixed[0] is graph:
        return list(fixed[1])
    return _model_dims(graph)


def dim_names(graph: Graph) -> dict[str, str]:
    """c_names(model_dims(graph)): each dim's C expression (what kernels with symbolic dims
    read); once per graph within dims_fixed."""
    fixed = _FIXED.get()
    if fixed is not None and fixed[0] is graph:
        return dict(fixed[2])
    return c_names(_model_dims(graph))


def _model_dims(graph: Graph) -> list[DimBounds]:
    """The named dims of the graph's inputs, sorted by name, then the dims its nodes compute at
    run time (issue #15, point 2: `DimBounds.computed`), sorted by name ([] for a static
    model). The entry point sets the first from the input shapes; each computed one is written
    into the array by the kernel of the node computing it, before any reader runs."""
    found: dict[str, DimBounds] = {}
    for name in graph.inputs:
        for d in graph.types[name].shape:
            if isinstance(d, Dim):
                found.update(d.dims())
    computed = computed_dims(t.shape for t in graph.types.values())
    for node in graph.nodes:  # a symbolic attribute may read one no type holds (a value dim)
        for value in node.attrs.values():
            items = value if isinstance(value, list) else [value]
            computed.update(computed_dims([tuple(v for v in items if isinstance(v, Dim))]))
    for step in graph.entry_steps:  # an Expand's target may hold a value dim no type holds
        computed.update(computed_dims([tuple(v for v in (step.left, step.right)
                                             if isinstance(v, Dim))]))
    return [found[name] for name in sorted(found)] + [computed[name] for name in sorted(computed)]


def c_names(dims: list[DimBounds], array: str = DIMS_PARAM) -> dict[str, str]:
    """dim name -> its C expression: the dims array read at the dim's index."""
    return {d.name: f"{array}[{k}]" for k, d in enumerate(dims)}


def c_size(value: DimLike | RunTimeStride, names: Mapping[str, str]) -> str:
    """An int as its digits, a Dim (or a RunTimeStride) as a C expression of int64_t over
    `names`."""
    return value.to_c(names) if isinstance(value, (Dim, RunTimeStride)) else str(int(value))


def shape_text(shape: tuple[DimLike, ...]) -> list[int | str]:
    """A shape as the manifest records it: numbers, and each symbolic dim as its expression."""
    return [str(d) if isinstance(d, Dim) else int(d) for d in shape]


def shape_argument(shape: tuple[DimLike, ...]) -> list[int | str]:
    """An --input-shape as the manifest's flags and the build cache's key record it: numbers,
    and a named dim with its bounds (`batch:1..64`)."""
    out: list[int | str] = []
    for d in shape:
        if isinstance(d, Dim):
            try:
                b, step = input_dim_step(d)
            except ValueError:
                out.append(f"{d}")
                continue
            out.append(f"{b.name}:{b.lo}..{b.hi}" if step == 1
                       else f"{b.name}:{b.lo * step}..{b.hi * step}/{step}")
        else:
            out.append(int(d))
    return out
