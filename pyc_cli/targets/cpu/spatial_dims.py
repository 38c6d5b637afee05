"""Convs, pools and concats over symbolic spatial dims (issue #15: OCR crops of many widths).

Where a node's symbolic dims are not only its batch (which `batch_loop.py` covers with the
static kernel of one image), the sizes a static kernel bakes in (input and output heights and
widths, the valid output columns of each tap, the concat's chunks) are read at run time from
`dims`: each is `Dim.to_c` of the size shape inference gave (the output size formulas are Dim
expressions already, e.g. `(w + 1)//2` for a stride-2 conv). Each candidate applies only to
nodes with symbolic dims, so static builds choose exactly as before.

- `conv2d_dims` (`conv2d_dims.c.j2`): a pointwise conv (1x1, stride 1, no padding) as a small
  GEMM per chunk of pixels: the chunk's input columns (with a fused prologue applied) are
  copied into a stack buffer of a fixed width, and blocks of output channels accumulate over it
  in registers; any other 1-D / 2-D conv (strided, padded, dilated, grouped, depthwise) as the
  direct loop with each tap's valid output columns computed at run time.
- `pool_dims` (`pool_dims.c.j2`): MaxPool / AveragePool windows with run-time bounds.
- `concat_dims` (`concat_dims.c.j2`): Concat with symbolic dims after its axis (chunks and
  offsets over the dims).
- `resize_nearest_dims` (`resize_dims.c.j2`): nearest upsampling by integer scales.
- `conv_transpose2d_dims` (`conv_transpose2d_dims.c.j2`): a ConvTranspose whose kernel tiles
  the output (kernel = stride).
"""

from __future__ import annotations

from collections.abc import Mapping

from ...ir.graph import Graph, Node
from ...ir.run_dims import c_size, dim_names
from ...ir.symbolic import DimLike, has_dims
from ...ops import registry
from ..kernel import KernelCandidate
from . import gemm
from .batch_loop import batch_dim

Params = dict[str, object]

# output rows at least this many chunks wide (at the upper bounds) are chunked row by row
ROWWISE_MIN_CHUNKS = 4
# the zero-bordered input plane a depthwise task copies to its stack, at most
PLANE_STACK_BYTES = 128 * 1024
# output channels a pointwise block accumulates at once (each input vector loaded once for all)
POINTWISE_BLOCK_CHANNELS = 6
# vectors of pixels per pointwise chunk (the accumulators: channels x vectors registers)
POINTWISE_CHUNK_VECTORS = 2
# the packed input columns of one chunk live on the task's stack, up to this size (Linux
# threads' stacks are 8 MiB by default; PP-OCR rec's 1x3 conv over 960 channels needs 184 KiB)
POINTWISE_STACK_BYTES = 256 * 1024


def _symbolic(node: Node, graph: Graph) -> bool:
    """A node with symbolic dims that the loop over images does not take (they are not only
    its batch)."""
    return any(has_dims(graph.types[v].shape) for v in (*node.inputs, *node.outputs)
               if v and v in graph.types) and batch_dim(node, graph) is None


def _names(graph: Graph) -> dict[str, str]:
    return dim_names(graph)


def _c(value: object, names: Mapping[str, str]) -> str:
    return c_size(value, names)  # type: ignore[arg-type]


# ---------------------------------------------------------------- convolution


def _conv_applies(node: Node, graph: Graph) -> bool:
    """A 1-D or 2-D conv with symbolic dims whose weight and bias are static (fused epilogue
    and prologue operands may be symbolic)."""
    x = graph.types[node.inputs[0]]
    if x.rank not in (3, 4) or not _symbolic(node, graph):
        return False
    own = registry.fused_inputs(node)[0]
    return not any(has_dims(graph.types[v].shape) for v in own[1:] if v)


def _pointwise(op: Params) -> bool:
    """1x1 taps, stride 1, no padding: output pixel p reads input pixel p."""
    return all(op[k] == 1 for k in ("KH", "KW", "SH", "SW")) \
        and op["PH"] == op["PW"] == 0 \
        and op["OH"] == op["H"] and op["OW"] == op["W"]  # symbolic equality


def _conv_params(isa: str):  # noqa: ANN202 (a closure per ISA)
    def params(node: Node, graph: Graph, op: Params) -> Params:
        names = _names(graph)
        itemsize = graph.types[node.outputs[0]].dtype.itemsize
        lanes = max(1, gemm.ISAS[isa].vector_bytes // itemsize)
        cg, ocg = int(op["CG"]), int(op["OCG"])  # type: ignore[call-overload]
        # AVX-512's 32 vector registers hold 8 x 2 sums, the others' 16 hold 6 x 2
        block = min(8 if gemm.ISAS[isa].vector_bytes == 64 else POINTWISE_BLOCK_CHANNELS, ocg)
        reduction = cg * int(op["KH"]) * int(op["KW"])  # type: ignore[call-overload]
        # one vector of pixels per chunk where two would not fit the stack
        vectors = next((v for v in (POINTWISE_CHUNK_VECTORS, 1)
                        if reduction * v * lanes * itemsize <= POINTWISE_STACK_BYTES), 0)
        chunk = lanes * vectors
        # depthwise convs (one channel in and out per group) keep the direct loop
        pointwise = vectors > 0 and cg * ocg > 1
        flops = registry.get(node.op).flops(node, graph)
        # the zero-bordered plane the direct loop's taps read (at the upper bounds)
        g = {k: int(op[k]) for k in ("OH", "OW", "KH", "KW", "SH", "SW", "DH", "DW")}  # type: ignore[call-overload]
        plane = ((g["OH"] - 1) * g["SH"] + (g["KH"] - 1) * g["DH"] + 1) \
            * ((g["OW"] - 1) * g["SW"] + (g["KW"] - 1) * g["DW"] + 1)
        return {
            **{f"{k}_c": _c(op[k], names) for k in ("N", "H", "W", "OH", "OW")},
            "plane": plane if plane * itemsize <= PLANE_STACK_BYTES else 0,
            # chunks of one output row each where taps read rows in place (stride 1 along
            # the width, rows wide enough for several chunks)
            # (not with a prologue: read in place, the input is not what the conv takes)
            "rowwise": pointwise and not _pointwise(op) and int(op["SW"]) == 1  # type: ignore[call-overload]
            and not node.ann.prologue
            and int(op["OW"]) >= ROWWISE_MIN_CHUNKS * chunk,  # type: ignore[call-overload]
            "chunked": pointwise, "taps": not _pointwise(op), "R": reduction, "PB": chunk,
            "NV": vectors, "lanes": lanes,
            "OB": block, "OB_tail": ocg % block,
            "parallel": flops >= gemm.PARALLEL_MIN_FLOPS,
            "out_coords": ["n", "oc", "oh", "ow"], "in_coords": ["n", "ci", "ih", "iw"],
            # operands contiguous over (oh, ow) / (ih, iw) are indexed by the flat pixel
            "flat_coords": ["oh", "ow", "pix"], "flat_in_coords": ["ih", "iw", "ipix"]}
    return params


def _conv_prologue(node: Node, graph: Graph) -> bool:
    """Where the prologue is computed once per input element: a pointwise conv (its chunk's
    columns) and a depthwise one (its plane); a conv of more taps would compute it per tap
    (PP-OCR det's 3x3 convs after the FPN's adds: 12x slower so). The fuse pass asks every
    candidate: where the ISA's im2col GEMM takes one (no masked loads: every conv), the
    gathered taps apply it, computed per tap."""
    if not _conv_applies(node, graph):
        return False
    op = registry.get(node.op).kernel_params(node, graph)
    depthwise = int(op["CG"]) == int(op["OCG"]) == 1  # type: ignore[call-overload]
    return _pointwise(op) or depthwise


def conv_candidate(isa: str) -> KernelCandidate:
    return KernelCandidate("conv2d_dims", "conv2d_dims.c.j2", _conv_applies, cost_factor=4.0,
                           takes_epilogue=True, takes_prologue=_conv_prologue,
                           params=_conv_params(isa), symbolic_dims=True,
                           why=lambda n, g: "spatial sizes read at run time")


# ---------------------------------------------------------------- pooling


def _pool_applies(node: Node, graph: Graph) -> bool:
    """A 1-D or 2-D pool with symbolic dims and no Indices output."""
    x = graph.types[node.inputs[0]]
    return x.rank in (3, 4) and _symbolic(node, graph) \
        and not (len(node.outputs) > 1 and node.outputs[1])


def _pool_params(node: Node, graph: Graph, op: Params) -> Params:
    names = _names(graph)
    # the window and its padding too: a global pool's window is the input, "SAME" pads
    # depend on it
    out = {f"{k}_c": _c(op[k], names)
           for k in ("N", "C", "H", "W", "OH", "OW", "KH", "KW", "PH", "PW")}
    # count_include_pad counts window positions inside the padded input
    out["HP_c"] = _c(op["H"] + op["PH_end"], names)  # type: ignore[operator]
    out["WP_c"] = _c(op["W"] + op["PW_end"], names)  # type: ignore[operator]
    out["parallel"] = int(graph.types[node.inputs[0]].numel) >= 256 * 1024
    return out


POOL_DIMS = KernelCandidate("pool_dims", "pool_dims.c.j2", _pool_applies, cost_factor=1.0,
                            params=_pool_params, symbolic_dims=True)


# ---------------------------------------------------------------- concat


def _concat_applies(node: Node, graph: Graph) -> bool:
    """A Concat with symbolic dims after its axis (those before it only: concat_blocks_dims)."""
    if not _symbolic(node, graph):
        return False
    op = registry.get(node.op).kernel_params(node, graph)
    return has_dims((op["row"], *op["chunks"]))  # type: ignore[arg-type, misc]


def _concat_params(node: Node, graph: Graph, op: Params) -> Params:
    names = _names(graph)
    itemsize = graph.types[node.outputs[0]].dtype.itemsize
    chunks: list[DimLike] = list(op["chunks"])  # type: ignore[call-overload]
    return {"outer_c": _c(op["outer"], names), "row_c": _c(op["row"], names),
            "chunks_c": [_c(c, names) for c in chunks],
            "bytes_c": [_c(c * itemsize, names) for c in chunks],
            "offsets_c": [_c(o, names) for o in op["offsets"]],  # type: ignore[attr-defined]
            "skip": list(node.ann.inplace_inputs)}


CONCAT_DIMS = KernelCandidate("concat_dims", "concat_dims.c.j2", _concat_applies,
                              params=_concat_params, symbolic_dims=True)


# ---------------------------------------------------------------- nearest upsampling


def _integer_scales(node: Node, graph: Graph) -> list[int] | None:
    """Each axis's output size as an integer multiple of its input size (symbolically), or
    None."""
    x, y = graph.types[node.inputs[0]], graph.types[node.outputs[0]]
    if x.rank != y.rank:
        return None
    scales = []
    for d_in, d_out in zip(x.shape, y.shape):
        k = int(d_out) // max(1, int(d_in))
        if k < 1 or d_out != k * d_in:
            return None
        scales.append(k)
    return scales


def resize_applies(node: Node, graph: Graph) -> bool:
    """Resize of a 4-D tensor with symbolic dims, nearest with asymmetric coordinates rounded
    down, by integer scales over H and W (an FPN's upsampling): output (oh, ow) reads input
    (oh / SH, ow / SW)."""
    if node.op != "Resize" or graph.types[node.inputs[0]].rank != 4 \
            or not _symbolic(node, graph):
        return False
    attrs = node.attrs
    if (attrs.get("mode", "nearest"), attrs.get("coordinate_transformation_mode", "half_pixel"),
            attrs.get("nearest_mode", "round_prefer_floor")) != ("nearest", "asymmetric", "floor"):
        return False
    scales = _integer_scales(node, graph)
    return scales is not None and scales[:2] == [1, 1]


def _resize_params(node: Node, graph: Graph, op: Params) -> Params:
    names = _names(graph)
    x, y = graph.types[node.inputs[0]], graph.types[node.outputs[0]]
    scales = _integer_scales(node, graph)
    assert scales is not None
    return {"NC_c": _c(x.shape[0] * x.shape[1], names), "H_c": _c(x.shape[2], names),
            "W_c": _c(x.shape[3], names), "OH_c": _c(y.shape[2], names),
            "OW_c": _c(y.shape[3], names), "SH": scales[2], "SW": scales[3],
            "parallel": int(y.numel) >= 256 * 1024}


RESIZE_DIMS = KernelCandidate("resize_nearest_dims", "resize_dims.c.j2", resize_applies,
                              params=_resize_params, symbolic_dims=True)


# ---------------------------------------------------------------- transposed convolution


def _transpose_applies(node: Node, graph: Graph) -> bool:
    """A 2-D ConvTranspose with symbolic dims whose kernel tiles the output (kernel = stride,
    no padding, dilation 1, one group; det's upsampling head): each input pixel writes its own
    KH x KW block of outputs."""
    x, w = graph.types[node.inputs[0]], graph.types[node.inputs[1]]
    if x.rank != 4 or not _symbolic(node, graph) or has_dims(w.shape) \
            or node.int_attr("group", 1) != 1:
        return False
    kernel = list(w.shape[2:])
    if list(node.attrs.get("strides", [1, 1])) != kernel \
            or any(node.attrs.get("pads", [0] * 4)) or any(node.attrs.get("output_padding", [0, 0])) \
            or any(d != 1 for d in node.attrs.get("dilations", [1, 1])):
        return False
    y = graph.types[node.outputs[0]]
    return y.shape[2] == kernel[0] * x.shape[2] and y.shape[3] == kernel[1] * x.shape[3]


def _transpose_params(node: Node, graph: Graph, op: Params) -> Params:
    names = _names(graph)
    x, w = graph.types[node.inputs[0]], graph.types[node.inputs[1]]
    return {"N_c": _c(x.shape[0], names), "H_c": _c(x.shape[2], names),
            "W_c": _c(x.shape[3], names), "C": int(x.shape[1]), "OC": int(w.shape[1]),
            "KH": int(w.shape[2]), "KW": int(w.shape[3]),
            "has_bias": len(node.inputs) > 2 and bool(node.inputs[2]),
            "parallel": registry.get(node.op).flops(node, graph) >= gemm.PARALLEL_MIN_FLOPS}


CONV_TRANSPOSE_DIMS = KernelCandidate("conv_transpose2d_dims", "conv_transpose2d_dims.c.j2",
                                      _transpose_applies, params=_transpose_params,
                                      symbolic_dims=True)


def with_spatial_dims(table: dict[str, tuple[KernelCandidate, ...]], isa: str
                      ) -> dict[str, tuple[KernelCandidate, ...]]:
    """`table` with the symbolic-spatial candidates added to the ops it has."""
    extra: dict[str, tuple[KernelCandidate, ...]] = {
        "Conv": (_conv_candidate(isa),), "AveragePool": (POOL_DIMS,), "MaxPool": (POOL_DIMS,),
        "Concat": (CONCAT_DIMS,), "Resize": (RESIZE_DIMS,),
        "ConvTranspose": (CONV_TRANSPOSE_DIMS,)}
    return {op: (*cands, *extra.get(op, ())) for op, cands in table.items()}


_CONV: dict[str, KernelCandidate] = {}


def _conv_candidate(isa: str) -> KernelCandidate:
    """One object per ISA: every table of that ISA shares it."""
    return _CONV.setdefault(isa, conv_candidate(isa))
