"""The CPU target's kernel candidates, per op: which C template (codegen_templates/c/kernels/)
computes it, on which nodes, with which tunable parameters, scratch and cost. An op with two
candidates (MatMul, Conv) is chosen between by passes/select_kernels.py through the target.

To add a kernel: write its template, declare a `KernelCandidate` here under its op (with an
`applies` predicate if it does not fit every node, and a `cost_factor` relative to the others),
and give the op the numbers the template needs in its `kernel_params` (or, for numbers and loop
variable names only this candidate's template uses, in the candidate's `params`).
tests/targets/cpu/ checks the table."""

from __future__ import annotations

import math

from ...ir.graph import Graph, Node
from ...ir.types import DType
from ...ops import registry
from ...ops.conv import Conv
from ...ops.movement import contiguous_strides
from ...ops.recurrent import Recurrent
from ..kernel import KernelCandidate, Tunable
from .kernel_context import (
    LAYERNORM_TASK_ELEMENTS,
    SOFTMAX_TASK_ELEMENTS,
    coalesce,
    index_expression,
    row_split,
)

Params = dict[str, object]

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


def _conv_coords(node: Node, graph: Graph, op: Params) -> Params:
    """The loop variables the conv templates name: output coordinates an epilogue indexes its
    operands by, input coordinates a prologue does (every conv runs as 3-D: the leading ones
    of a 1-D or 2-D conv are unit loops that no operand indexes)."""
    lift = 5 - graph.types[node.inputs[0]].rank
    return {"out_coords": ["n", "oc"] + ["od", "oh", "ow"][lift:],
            "in_coords": ["n", "ci"] + ["id", "ih", "iw"][lift:]}


def _im2col_params(node: Node, graph: Graph, op: Params) -> Params:
    """The tile of output pixels whose columns the workspace holds, and the loop coordinates."""
    x, w = graph.types[node.inputs[0]], graph.types[node.inputs[1]]
    pixels = math.prod(graph.types[node.outputs[0]].shape[2:])
    return {"tile": im2col_tile(w.shape[1] * math.prod(w.shape[2:]), pixels, x.dtype.itemsize,
                                _workspace_cap(node)), **_conv_coords(node, graph, op)}


def _matmul_coords(node: Node, graph: Graph, op: Params) -> Params:
    """The template's output loop variables, which an epilogue indexes its operands by: batch
    dims b0.., then row i and column j (a 1-D operand drops its matrix dim)."""
    a_rank, b_rank = (graph.types[v].rank for v in node.inputs[:2])
    batch = len(op["batch"])  # type: ignore[arg-type]
    return {"out_coords": [f"b{d}" for d in range(batch)]
            + (["i"] if a_rank > 1 else []) + (["j"] if b_rank > 1 else [])}


def _strided_copy_loops(node: Node, graph: Graph, op: Params) -> Params:
    """Output dims merged where both sides are contiguous, and the input index over them."""
    shape = graph.types[node.outputs[0]].shape
    dims, sets = coalesce(shape, [contiguous_strides(shape), list(op["in_strides"])])  # type: ignore[call-overload]
    return {"dims": dims, "in_index": index_expression([f"i{d}" for d in range(len(dims))], sets[1])}


def _reduce_loops(node: Node, graph: Graph, op: Params) -> Params:
    """Input dims merged where input and output strides allow, and both index expressions;
    `sum_rows` (the row length) where a float sum or mean reduces contiguous trailing rows,
    which the template sums a vector at a time (c/row_math.j2)."""
    shape = tuple(op["in_shape"])  # type: ignore[call-overload]
    dims, sets = coalesce(shape, [contiguous_strides(shape), list(op["out_strides"])])  # type: ignore[call-overload]
    coords = [f"i{d}" for d in range(len(dims))]
    rows = (len(dims) == 1 and sets[1] == [0]) or (len(dims) == 2 and sets[1] == [1, 0])
    float_sum = (op["reducer"] in ("ReduceSum", "ReduceMean")
                 and graph.types[node.inputs[0]].dtype is DType.F32)
    return {"dims": dims, "in_index": index_expression(coords, sets[0]),
            "out_index": index_expression(coords, sets[1]),
            "sum_rows": dims[-1] if rows and float_sum and dims else 0}


def _concat_skips(node: Node, graph: Graph, op: Params) -> Params:
    """Inputs the memory plan already placed in their slice of the output need no copy."""
    return {"skip": list(node.ann.inplace_inputs)}


def _lrn_in_place(node: Node, graph: Graph, op: Params) -> Params:
    return {"in_place": node.ann.inplace_operand is not None}


def _im2col_prologue(node: Node, graph: Graph) -> bool:
    """The im2col kernel applies an elementwise prologue while it gathers columns (1-D and 2-D
    convs: its prologue indexes operands by (n, c, h, w))."""
    return graph.types[node.inputs[0]].rank <= 4


# ---------------------------------------------------------------- row kernels

def _softmax_rows(node: Node, graph: Graph, op: Params) -> Params:
    """Contiguous float rows of Softmax / LogSoftmax take the vectorized row kernel (LogSoftmax
    keeps a chunk of exponentials on the stack)."""
    row, outer = int(op["row"]), int(op["outer"])  # type: ignore[call-overload]
    vector = (op["inner"] == 1 and op["kind"] != "Hardmax"
              and graph.types[node.outputs[0]].dtype is DType.F32)
    return {"vector_rows": vector, "chunk": min(row, 256),
            **row_split(outer, row, SOFTMAX_TASK_ELEMENTS)}


def _layernorm_rows(node: Node, graph: Graph, op: Params) -> Params:
    return row_split(int(op["outer"]), int(op["row"]), LAYERNORM_TASK_ELEMENTS)  # type: ignore[call-overload]


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
    def params(node: Node, graph: Graph, op: Params) -> Params:
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
                              cost_factor=4.0, takes_epilogue=True, params=_conv_coords)
MATMUL_TILES = KernelCandidate("matmul_tiles", "matmul.c.j2", cost_factor=1.0, stores_once=True,
                               tunables=GEMM_TILES, takes_epilogue=True, params=_matmul_coords)
MATMUL_NAIVE = KernelCandidate("matmul_naive", "matmul_naive.c.j2", cost_factor=3.0,
                               takes_epilogue=True, params=_matmul_coords)
STRIDED_COPY = KernelCandidate("strided_copy", "strided_copy.c.j2", params=_strided_copy_loops)
REDUCE = KernelCandidate("reduce_strided", "reduce.c.j2", params=_reduce_loops)
POOL = KernelCandidate("pool_direct", "pool.c.j2")
# each row is read completely (max, sum; mean, variance) before the row is written
SOFTMAX = KernelCandidate("softmax_rows", "softmax.c.j2", inplace_input=0, params=_softmax_rows)
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
    "Concat": (KernelCandidate("concat_blocks", "concat.c.j2", params=_concat_skips),),
    "Gather": (KernelCandidate("gather_rows", "gather.c.j2"),),
    "GatherElements": (KernelCandidate("gather_elements", "gather_elements.c.j2"),),
    "GatherND": (KernelCandidate("gather_nd", "gather_nd.c.j2"),),
    "ScatterElements": (KernelCandidate("scatter_elements", "scatter_elements.c.j2"),),
    "ScatterND": (KernelCandidate("scatter_nd", "scatter_nd.c.j2"),),
    "Pad": (KernelCandidate("pad_gather", "pad.c.j2"),),
    "TopK": (KernelCandidate("topk_insertion", "topk.c.j2"),),
    **_each(("AveragePool", "MaxPool"), POOL),
    **_each(("Softmax", "LogSoftmax", "Hardmax"), SOFTMAX),
    "LayerNormalization": (KernelCandidate("layernorm_rows", "layernorm.c.j2", inplace_input=0,
                                           params=_layernorm_rows),),
    "InstanceNormalization": (KernelCandidate("instancenorm_rows", "instancenorm.c.j2"),),
    # its in-place path (a ring of saved inputs) is slower: only memory_first takes it
    "LRN": (KernelCandidate("lrn_channels", "lrn.c.j2", params=_lrn_in_place, inplace_input=0,
                            inplace_modes=("memory_first",)),),
    **_each(("CumSum", "CumProd"), CUMULATIVE),
    **_each(("ArgMax", "ArgMin"), ARGREDUCE),
    **_each(("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
             "ReduceL2", "ReduceSumSquare", "ReduceLogSum"), REDUCE),
    "ReduceLogSumExp": (KernelCandidate("reduce_strided", "reduce.c.j2", workspace=_sums_workspace,
                                        params=_reduce_loops),),
    **_each(("Resize", "Upsample"), RESIZE),
    **_each(("LSTM", "GRU", "RNN"), RECURRENT),
    "pyc.Elementwise": (KernelCandidate("elementwise_loop", "elementwise.c.j2"),),
    "pyc.Copy": (KernelCandidate("memcpy", "copy.c.j2"),),
}
