"""Ops over a symbolic batch (issue #15) as a loop of their static kernel over the images: where
a node's only symbolic dim is dim 0 of its activations (a conv or a pool of a dynamic batch), the
static candidate the cost model picks for one image is rendered for batch 1 (its own function)
and called once per image with the pointers moved by an image's size. Weights, packed panels and
build-time transforms are the static kernel's own; its scratch serves every image in turn."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from ...ir.graph import Graph, Node
from ...ir.run_dims import c_size, dim_names
from ...ir.symbolic import Dim, DimLike, has_dims, numel
from ...ir.types import TensorType
from ..kernel import KernelCandidate

# the ops whose kernels run image by image (every output image reads its input image only)
OPS = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "InstanceNormalization", "LRN")
TEMPLATE = "batch_loop.c.j2"


def batch_dim(node: Node, graph: Graph) -> Dim | None:
    """The node's one symbolic dim, where it is dim 0 of every symbolic value it reads or writes
    (and of no constant); None otherwise."""
    found: Dim | None = None
    for value in (*node.inputs, *node.outputs):
        if not value or value not in graph.types or not has_dims(graph.types[value].shape):
            continue
        shape = graph.types[value].shape
        first = shape[0]
        if value in graph.constants or has_dims(shape[1:]) or not isinstance(first, Dim) \
                or (found is not None and first != found):
            return None
        found = first
    return found


def image_graph(node: Node, graph: Graph) -> Graph:
    """`graph` with the node's symbolic values typed as one image (dim 0 = 1)."""
    types = dict(graph.types)
    for value in (*node.inputs, *node.outputs):
        if value and value in types and has_dims(types[value].shape):
            shape = types[value].shape
            types[value] = TensorType(types[value].dtype, (1, *shape[1:]))
    return dataclasses.replace(graph, types=types)


def image_stride(graph: Graph, value: str) -> int:
    """Elements per image of a symbolic value (0: a value every image reads whole)."""
    shape = graph.types[value].shape
    return int(numel(shape[1:])) if has_dims(shape) else 0


@functools.cache  # one object per op and static candidates: every table holding them shares it
def batch_loop_candidate(op: str, kernels: tuple[KernelCandidate, ...]) -> KernelCandidate:
    """The loop over images for `op`, delegating to the cheapest of its static `kernels` that
    applies to one image."""
    def inner(node: Node, graph: Graph) -> tuple[KernelCandidate, Graph] | None:
        if batch_dim(node, graph) is None:
            return None
        single = image_graph(node, graph)
        found = [c for c in kernels if not c.symbolic_dims and c.is_applicable(node, single)]
        if not found:
            return None
        return min(found, key=lambda c: (c.cost(node, single), c.name)), single

    def delegate(read: Callable[[KernelCandidate, Graph], object], default: object
                 ) -> Callable[[Node, Graph], object]:
        def call(node: Node, graph: Graph) -> object:
            chosen = inner(node, graph)
            return default if chosen is None else read(*chosen)
        return call

    def workspace(node: Node, graph: Graph) -> int:
        chosen = inner(node, graph)
        return 0 if chosen is None else chosen[0].workspace_bytes(node, chosen[1])

    def params(node: Node, graph: Graph, op_params: dict[str, object]) -> dict[str, object]:
        from .kernel_context import image_kernel_call

        chosen = inner(node, graph)
        assert chosen is not None
        dim = batch_dim(node, graph)
        return {"image_call": image_kernel_call(chosen[1], node, chosen[0]),
                "images_c": c_size(dim, dim_names(graph)),  # type: ignore[arg-type]
                "image_kernel": chosen[0].name}

    return KernelCandidate(
        f"{op.lower()}_batch_loop", TEMPLATE, lambda n, g: inner(n, g) is not None,
        cost_factor=min((c.cost_factor for c in kernels), default=1.0),
        workspace=workspace if any(c.workspace is not None for c in kernels) else None,
        takes_epilogue=bool(kernels) and all(c.takes_epilogue for c in kernels),
        params=params, symbolic_dims=True,
        constant_panels=lambda n, g, i: _inner_of(  # type: ignore[arg-type, return-value]
            inner, n, g, lambda c, s: c.panels_of(n, s, i)),
        constant_transform=lambda n, g, i: _inner_of(  # type: ignore[arg-type, return-value]
            inner, n, g, lambda c, s: c.transform_of(n, s, i)),
        why=delegate(lambda c, s: f"one image at a time through {c.name}", ""))  # type: ignore[arg-type]


def _inner_of(inner: Callable[[Node, Graph], tuple[KernelCandidate, Graph] | None], node: Node,
              graph: Graph, read: Callable[[KernelCandidate, Graph], DimLike | str | None]
              ) -> DimLike | str | None:
    chosen = inner(node, graph)
    return None if chosen is None else read(*chosen)


def with_batch_loops(table: dict[str, tuple[KernelCandidate, ...]]
                     ) -> dict[str, tuple[KernelCandidate, ...]]:
    """`table` with a batch loop added to each op of OPS it has."""
    return {op: (*cands, batch_loop_candidate(op, cands)) if op in OPS else cands
            for op, cands in table.items()}

