"""The CPU target's kernel candidates, per op: which C template (codegen_templates/c/kernels/)
computes it, on which nodes, with which tunable parameters, scratch and cost. An op with two
candidates (MatMul, Conv) is chosen between by passes/select_kernels.py through the target.

To add a kernel: write its template, declare a `KernelCandidate` here under its op (with an
`applies` predicate if it does not fit every node, and a `cost_factor` relative to the others),
and give the op the numbers the template needs in its `kernel_params` (or, for numbers only this
candidate needs, in the candidate's `params`). tests/targets/cpu/ checks the table."""

from __future__ import annotations

import math

from ...ir.graph import Graph, Node
from ...ops import registry
from ...ops.conv import Conv
from ...ops.recurrent import Recurrent
from ..kernel import KernelCandidate, Tunable

# ---------------------------------------------------------------- convolution as GEMM

# the im2col workspace holds columns for this many bytes of output pixels at a time: small
# enough to stay in L2 and to keep the arena near the activations' own size
IM2COL_WORKSPACE_CAP = 512 * 1024


def im2col_tile(reduction: int, pixels: int, itemsize: int, cap: int = IM2COL_WORKSPACE_CAP) -> int:
    """Output pixels per im2col tile: a multiple of 16 (the GEMM tile width) under the cap
    (the memory planner may lower the cap per node, e.g. in memory_first mode)."""
    fit = cap // max(1, reduction * itemsize)
    return max(16, min(pixels, fit // 16 * 16 if fit >= 16 else 16))


def _gemm_shape(node: Node, graph: Graph) -> tuple[int, int, int, bool]:
    """(rows per group, reduction length, output pixels, pointwise) of conv-as-GEMM."""
    params = Conv().kernel_params(node, graph)
    pixels = int(params["OD"]) * int(params["OH"]) * int(params["OW"])  # type: ignore[call-overload]
    reduction = int(params["CG"]) * int(params["KD"]) * int(params["KH"]) * int(params["KW"])  # type: ignore[call-overload]
    return int(params["OCG"]), reduction, pixels, bool(params["pointwise"])  # type: ignore[call-overload]


def _gemm_pays_off(node: Node, graph: Graph) -> bool:
    rows, reduction, _, _ = _gemm_shape(node, graph)
    return rows >= 4 and reduction >= 8  # depthwise and tiny convs stay direct


def _workspace_cap(node: Node) -> int:
    """The scratch cap the memory mode gives the chosen kernel (select_kernels records it)."""
    kernel = node.ann.kernel
    return IM2COL_WORKSPACE_CAP if kernel is None or kernel.workspace_cap is None \
        else kernel.workspace_cap


def _im2col_bytes(node: Node, graph: Graph) -> int:
    _, reduction, pixels, pointwise = _gemm_shape(node, graph)
    itemsize = graph.types[node.outputs[0]].dtype.itemsize
    cap = _workspace_cap(node)
    return 0 if pointwise else reduction * im2col_tile(reduction, pixels, itemsize, cap) * itemsize


def _im2col_params(node: Node, graph: Graph) -> dict[str, object]:
    """The tile of output pixels whose columns the workspace holds."""
    x, w = graph.types[node.inputs[0]], graph.types[node.inputs[1]]
    pixels = math.prod(graph.types[node.outputs[0]].shape[2:])
    return {"tile": im2col_tile(w.shape[1] * math.prod(w.shape[2:]), pixels, x.dtype.itemsize,
                                _workspace_cap(node))}


def _im2col_prologue(node: Node, graph: Graph) -> bool:
    """The im2col kernel applies an elementwise prologue while it gathers columns (1-D and 2-D
    convs: its prologue indexes operands by (n, c, h, w))."""
    return graph.types[node.inputs[0]].rank <= 4


# ---------------------------------------------------------------- scratch of other kernels


def _sums_workspace(node: Node, graph: Graph) -> int:
    """ReduceLogSumExp keeps its shifts in the output and its sums of exponentials here."""
    return graph.types[node.outputs[0]].nbytes


def _recurrent_workspace(node: Node, graph: Graph) -> int:
    """One batch row's state: hidden, cell and a spare vector of H, plus G*H gate sums."""
    opdef = registry.get(node.op)
    assert isinstance(opdef, Recurrent)
    x, w, r = (graph.types[node.inputs[i]] for i in range(3))
    return (3 + opdef.gates) * opdef.geometry(node, x.shape, w.shape, r.shape).H * x.dtype.itemsize


def _input_ctype(key: str, index: int):  # noqa: ANN202 (a small closure)
    """A template parameter naming the C type of input `index` (ArgMax's values)."""
    def params(node: Node, graph: Graph) -> dict[str, object]:
        return {key: graph.types[node.inputs[index]].dtype.c_type}
    return params


# ---------------------------------------------------------------- the candidates

# the GEMM macro (codegen_templates/c/gemm.c.j2) blocks registers in 4x16 tiles today
GEMM_TILES = (Tunable("tile_rows", (4,), "rows of C per register block"),
              Tunable("tile_cols", (16,), "columns of C per register block (the vector width)"))
IM2COL = KernelCandidate(
    "conv2d_im2col_gemm", "conv2d_im2col.c.j2", _gemm_pays_off, 1.0, _im2col_bytes,
    stores_once=True, params=_im2col_params, takes_epilogue=True, takes_prologue=_im2col_prologue,
    tunables=(Tunable("workspace_cap", (IM2COL_WORKSPACE_CAP, 32 * 1024),
                      "bytes of im2col columns (the memory mode's cap; the tile follows)"),
              *GEMM_TILES))
CONV_DIRECT = KernelCandidate("conv2d_direct", "conv2d.c.j2", lambda n, g: not n.ann.prologue,
                              cost_factor=4.0, takes_epilogue=True)
MATMUL_TILES = KernelCandidate("matmul_tiles", "matmul.c.j2", cost_factor=1.0, stores_once=True,
                               tunables=GEMM_TILES, takes_epilogue=True)
MATMUL_NAIVE = KernelCandidate("matmul_naive", "matmul_naive.c.j2", cost_factor=3.0,
                               takes_epilogue=True)
STRIDED_COPY = KernelCandidate("strided_copy", "strided_copy.c.j2")
REDUCE = KernelCandidate("reduce_strided", "reduce.c.j2")
POOL = KernelCandidate("pool_direct", "pool.c.j2")
SOFTMAX = KernelCandidate("softmax_rows", "softmax.c.j2")
CUMULATIVE = KernelCandidate("cumulative_rows", "cumsum.c.j2")
ARGREDUCE = KernelCandidate("argreduce_rows", "argreduce.c.j2", params=_input_ctype("in_ctype", 0))
RESIZE = KernelCandidate("resize_tables", "resize.c.j2")
RECURRENT = KernelCandidate(
    "recurrent_rows", "recurrent.c.j2",
    # canonicalize transposes the weights into the layout the kernel reads
    applies=lambda node, graph: bool(node.attrs.get("weights_transposed")),
    workspace=_recurrent_workspace, restrict_pointers=False)


def _each(ops: tuple[str, ...], *candidates: KernelCandidate) -> dict[str, tuple[KernelCandidate, ...]]:
    return {op: candidates for op in ops}


# op -> its candidates, cheapest-first is not implied (select_kernels compares costs)
CPU_KERNELS: dict[str, tuple[KernelCandidate, ...]] = {
    "Conv": (IM2COL, CONV_DIRECT),
    "MatMul": (MATMUL_TILES, MATMUL_NAIVE),
    "ConvTranspose": (KernelCandidate("conv_transpose2d_direct", "conv_transpose2d.c.j2"),),
    **_each(("Transpose", "Slice"), STRIDED_COPY),
    "Concat": (KernelCandidate("concat_blocks", "concat.c.j2"),),
    "Gather": (KernelCandidate("gather_rows", "gather.c.j2"),),
    "GatherElements": (KernelCandidate("gather_elements", "gather_elements.c.j2"),),
    "GatherND": (KernelCandidate("gather_nd", "gather_nd.c.j2"),),
    "ScatterElements": (KernelCandidate("scatter_elements", "scatter_elements.c.j2"),),
    "ScatterND": (KernelCandidate("scatter_nd", "scatter_nd.c.j2"),),
    "Pad": (KernelCandidate("pad_gather", "pad.c.j2"),),
    "TopK": (KernelCandidate("topk_insertion", "topk.c.j2"),),
    **_each(("AveragePool", "MaxPool"), POOL),
    **_each(("Softmax", "LogSoftmax", "Hardmax"), SOFTMAX),
    "LayerNormalization": (KernelCandidate("layernorm_rows", "layernorm.c.j2"),),
    "InstanceNormalization": (KernelCandidate("instancenorm_rows", "instancenorm.c.j2"),),
    "LRN": (KernelCandidate("lrn_channels", "lrn.c.j2"),),
    **_each(("CumSum", "CumProd"), CUMULATIVE),
    **_each(("ArgMax", "ArgMin"), ARGREDUCE),
    **_each(("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
             "ReduceL2", "ReduceSumSquare", "ReduceLogSum"), REDUCE),
    "ReduceLogSumExp": (KernelCandidate("reduce_strided", "reduce.c.j2", workspace=_sums_workspace),),
    **_each(("Resize", "Upsample"), RESIZE),
    **_each(("LSTM", "GRU", "RNN"), RECURRENT),
    "pyc.Elementwise": (KernelCandidate("elementwise_loop", "elementwise.c.j2"),),
    "pyc.Copy": (KernelCandidate("memcpy", "copy.c.j2"),),
}
