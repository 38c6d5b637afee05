"""Layout choice: fix the data layout each kernel reads and writes, and record why.

The CPU target keeps activations NCHW / row-major (the order the importer gives), conv weights
OIHW and matmul weights K x N row-major (canonicalize already pre-transposed constant B^T), which
is what the CPU kernels stream through their innermost loops. A GPU target may choose otherwise;
the decision lives here, not in the kernels.
"""

from __future__ import annotations

from ..ir.graph import Graph
from .context import PassContext

NAME = "choose_layout"
_CPU_LAYOUTS = {
    "Conv": ("NCHW", "direct conv walks output rows contiguously; weights OIHW"),
    "MaxPool": ("NCHW", "pooling windows slide along contiguous rows"),
    "AveragePool": ("NCHW", "pooling windows slide along contiguous rows"),
    "MatMul": ("row_major", "B is K x N row-major so the inner loop streams rows of B"),
}


def choose_layout(graph: Graph, ctx: PassContext) -> Graph:
    for node in graph.nodes:
        choice = _CPU_LAYOUTS.get(node.op)
        if choice is None:
            continue
        layout, reason = choice
        node.attrs["layout"] = layout
        ctx.log(NAME, [node.name], "keep_layout", reason, after=layout)
    return graph
