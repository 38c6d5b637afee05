"""Conv of a few output pixels as dot products (codegen_templates/c/kernels/conv2d_dots.c.j2).

The im2col GEMM vectorizes across output pixels in NR-wide panels (32 floats on AVX-512): a
conv with 1..8 output pixels per image (Silero VAD's encoder: 3, 2, 1, 1; a classifier's last
stages) computes 4-32x the products it needs there. This kernel vectorizes along the reduction
instead: each output is a row of the weights, read in place, times its pixel's gathered window,
OB channels x P pixels at once so every weight row is read once.
"""

from __future__ import annotations

import math

from ...ir.graph import Graph, Node
from ...ops.conv import Conv
from ..kernel import KernelCandidate
from . import gemm

Params = dict[str, object]

MAX_PIXELS = 8  # output pixels per image; above this the im2col GEMM's panels are well filled
MIN_REDUCTION = 16  # a window shorter than this is not worth vector dot products


def _geometry(node: Node, graph: Graph) -> tuple[int, int]:
    """(output pixels per image, reduction length CG*KD*KH*KW)."""
    x, w, y = (graph.types[v] for v in (node.inputs[0], node.inputs[1], node.outputs[0]))
    return math.prod(y.shape[2:]), w.shape[1] * math.prod(w.shape[2:])


def applies(node: Node, graph: Graph) -> bool:
    dtype = graph.types[node.outputs[0]].dtype
    if not dtype.is_float or dtype.itemsize not in (4, 8):
        return False
    pixels, reduction = _geometry(node, graph)
    return pixels <= MAX_PIXELS and reduction >= MIN_REDUCTION


def takes_prologue(node: Node, graph: Graph) -> bool:
    """1-D and 2-D convs, as the im2col GEMM (fuse makes a prologue when any candidate takes
    it, and select_kernels may then pick either: neither must be handed one it cannot apply)."""
    return applies(node, graph) and graph.types[node.inputs[0]].rank <= 4


def _rows_per_task(isa: str, pixels: int) -> int:
    """OB: output channels a task accumulates at once, OB x P vector sums plus the P pixel rows
    and one weight vector held in registers."""
    return max(1, min(8, (gemm.ISAS[isa].registers - 2 - pixels) // pixels))


def params(isa: str):  # noqa: ANN201 (a closure per ISA)
    def template_params(node: Node, graph: Graph, op: Params) -> Params:
        """Pixels P, reduction R (RV of it in whole vectors), OB, the task count and the
        vector operations of the ISA."""
        pixels, reduction = _geometry(node, graph)
        dtype = graph.types[node.outputs[0]].dtype
        vec = gemm.vector_ops(isa, dtype.c_type, dtype.itemsize)
        lanes = int(vec["lanes"])  # type: ignore[call-overload]
        rows = _rows_per_task(isa, pixels)
        tasks = -(-int(op["OCG"]) // rows)  # type: ignore[call-overload]
        flops = Conv().flops(node, graph)
        lift = 5 - graph.types[node.inputs[0]].rank
        return {"P": pixels, "R": reduction, "RV": reduction // lanes * lanes, "OB": rows,
                "tasks": tasks, "vec": vec,
                # each task's sums are its own: threads pay where the GEMM's tasks would
                "parallel": tasks >= 2 and flops >= gemm.TASK_FLOPS,
                "out_coords": ["n", "oc"] + ["od", "oh", "ow"][lift:],
                "in_coords": ["n", "ci"] + ["id", "ih", "iw"][lift:]}
    return template_params


def workspace(node: Node, graph: Graph) -> int:
    """The gathered windows: P rows of R elements."""
    pixels, reduction = _geometry(node, graph)
    return pixels * reduction * graph.types[node.outputs[0]].dtype.itemsize


def candidate(isa: str) -> KernelCandidate:
    return KernelCandidate(
        "conv2d_dots", "conv2d_dots.c.j2", applies, 0.1, workspace, stores_once=True,
        params=params(isa), takes_epilogue=True, takes_prologue=takes_prologue)
