"""The CPU target's kernel candidates, per op: which C template (codegen_templates/c/kernels/)
computes it, on which nodes, with which tunable parameters, scratch and cost. An op with two
candidates (MatMul, Conv) is chosen between by passes/select_kernels.py through the target.

To add a kernel: write its template, declare a `KernelCandidate` here under its op (with an
`applies` predicate if it does not fit every node, and a `cost_factor` relative to the others),
and give the op the numbers the template needs in its `kernel_params` (or, for numbers and loop
variable names only this candidate's template uses, in the candidate's `params`).
tests/targets/cpu/ checks the table."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

from ...ir.graph import Graph, Node
from ...ir.run_dims import c_size, dim_names
from ...ir.symbolic import Dim, DimBounds, computed_dims, has_dims, numel
from ...ir.types import DType
from ...ops import registry
from ...ops.attention import folded
from ...ops.conv import Conv
from ...ops.movement import contiguous_strides
from ...ops.recurrent import Recurrent
from ...planning import weights
from ..kernel import KernelCandidate, Tunable
from . import batch_loop, blocked, conv_dots, gemm, spatial_dims, winograd
from .kernel_context import (
    LAYERNORM_TASK_ELEMENTS,
    SOFTMAX_TASK_ELEMENTS,
    coalesce,
    index_expression,
    render_program,
    row_split,
    run_time_tasks,
)

Params = dict[str, object]

# the ISAs with masked vector loads, which the implicit GEMM's borders and tails need
MASKED_LOAD_ISAS = ("avx512", "avx2")


def int_params(op: Params, keys: tuple[str, ...]) -> dict[str, int]:
    """The integer kernel params `keys` of an op's params `op`."""
    return {k: int(op[k]) for k in keys}  # type: ignore[call-overload]

# ---------------------------------------------------------------- convolution as GEMM

# the im2col workspace holds columns for this many bytes of output pixels at a time: small
# enough to stay in L2 and to keep the arena near the activations' own size
IM2COL_WORKSPACE_CAP = 512 * 1024


def im2col_tile(reduction: int, pixels: int, itemsize: int, cap: int = IM2COL_WORKSPACE_CAP,
                multiple: int = 16) -> int:
    """Output pixels per im2col tile: a multiple of `multiple` (the GEMM's panel width) under
    the cap (the memory planner may lower the cap per node, e.g. in memory_first mode)."""
    fit = cap // max(1, reduction * itemsize)
    whole = -(-pixels // multiple) * multiple
    return max(multiple, min(whole, fit // multiple * multiple))


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


def worth_threads(node: Node, graph: Graph) -> bool:
    return registry.get(node.op).flops(node, graph) >= gemm.PARALLEL_MIN_FLOPS


def _direct_conv_params(node: Node, graph: Graph, op: Params) -> Params:
    """The loop coordinates, and whether the (image, output channel) tasks go to threads."""
    return {**_conv_coords(node, graph, op), "parallel": worth_threads(node, graph)}


# the zero-bordered input plane a depthwise task keeps on its stack at most
DEPTHWISE_PLANE_BYTES = 128 * 1024
# a map whose sums fit this many bytes keeps them all and runs the epilogue once per task
# (PP-OCR det's 10x10 maps 1.15x faster; 8 and 16 KiB maps measured no faster so)
DEPTHWISE_MAP_SUMS_BYTES = 4 * 1024
# output rows a depthwise task computes at once (each input row loaded once for all of them)
DEPTHWISE_BLOCK_ROWS = 4
# vectors of columns per register block: rows x vectors independent sums hide the
# multiply-add's latency (on Zen 4, 1.03-1.1x faster than one vector per row on PP-OCR's 5x5)
DEPTHWISE_BLOCK_VECTORS = 2


def _depthwise_block_rows(oh: int) -> int:
    """DEPTHWISE_BLOCK_ROWS, or 3 where that splits the output rows evenly and 4 does not (3
    and 6 rows: no narrower remainder block)."""
    if oh % DEPTHWISE_BLOCK_ROWS and oh % 3 == 0:
        return 3
    return max(1, min(DEPTHWISE_BLOCK_ROWS, oh))


def _depthwise_column_blocks(ow: int, lanes: int, itemsize: int) -> list[dict[str, int]]:
    """The register blocks along an output row, as runs [first, end) of equal blocks of
    `vectors` vectors of `width` columns: DEPTHWISE_BLOCK_VECTORS full-width vectors, then the
    full vectors left, then the last columns in one vector of the narrowest width (halving
    down to 16 bytes) that holds them."""
    full, tail = divmod(ow, lanes)
    vectors = min(DEPTHWISE_BLOCK_VECTORS, max(1, full))
    whole = full // vectors * vectors
    blocks = []
    if whole:
        blocks.append({"first": 0, "end": whole * lanes, "vectors": vectors, "width": lanes})
    if full > whole:
        blocks.append({"first": whole * lanes, "end": full * lanes, "vectors": full - whole,
                       "width": lanes})
    if tail:
        width = lanes
        while width // 2 >= tail and width // 2 * itemsize >= 16:
            width //= 2
        blocks.append({"first": full * lanes, "end": full * lanes + width, "vectors": 1,
                       "width": width})
    return blocks


def _depthwise_geometry(isa: str, node: Node, graph: Graph, op: Params) -> dict[str, Any]:
    """The zero-bordered plane every tap of a depthwise task reads, split into SW column phases
    of rows x cols each (phase_size elements), the register blocks along a row (vectors of the
    ISA's width) and the columns they compute (row_cols, the width of the rows of sums), from
    the conv's params `op`."""
    g = int_params(op, ("H", "W", "OH", "OW", "KH", "KW", "SH", "SW", "DH", "DW", "PH", "PW"))
    itemsize = graph.types[node.outputs[0]].dtype.itemsize
    lanes = max(1, gemm.ISAS[isa].vector_bytes // itemsize)
    col_blocks = _depthwise_column_blocks(g["OW"], lanes, itemsize)
    row_cols = col_blocks[-1]["end"] if col_blocks else 0
    # a phase column j holds plane column j * SW + phase; vectors read up to row_cols columns
    # past the widest tap's first one
    cols = max(-(-(g["PW"] + g["W"]) // g["SW"]), row_cols + (g["KW"] - 1) * g["DW"] // g["SW"])
    # unit stride: LEAD columns before the left pad put each input row on a vector boundary,
    # and the rows are whole vectors long (the plane's copy, inline, stores whole vectors,
    # each in one cache line). PP-OCR rec at 1 thread (Zen 4, profile_ab, load 1.4-3.5): its
    # 3x3 depthwise convs 0.86-0.98x the time (the stride (2, 1) and 12 x 160 ones 0.89-0.90),
    # the 5x5 ones unchanged; benchmarks/results/rec-conv-kernels-2026-12-07.md
    lead = (-g["PW"]) % lanes if g["SW"] == 1 else 0
    if g["SW"] == 1:
        cols = -(-(lead + cols) // lanes) * lanes
    # stride 2: rows that hold a pair of vectors are dealt out to the two phases a pair at a
    # time (narrower rows went slower so: PP-OCR det's 20-column 5x5 one, 1.2x)
    deal = lanes if g["SW"] == 2 and itemsize in (4, 8) and g["W"] >= 2 * lanes else 0
    rows = max(g["PH"] + g["H"], (g["OH"] - 1) * g["SH"] + (g["KH"] - 1) * g["DH"] + 1)
    return {"plane_rows": rows, "plane_cols": cols, "phase_size": rows * cols, "deal": deal,
            "lead": lead, "lanes": lanes,
            "row_cols": row_cols, "col_blocks": col_blocks, "itemsize": itemsize,
            "block_rows": _depthwise_block_rows(g["OH"]), "sums_bytes": DEPTHWISE_MAP_SUMS_BYTES,
            # the epilogue runs over output pixels: an operand contiguous over (oh, ow) is
            # indexed by the pixel
            "flat_coords": ["oh", "ow", "pix"]}


def _is_depthwise(isa: str):  # noqa: ANN202 (a closure per ISA)
    def applies(node: Node, graph: Graph) -> bool:
        """A 2-D conv with one input channel per output channel, no prologue to apply, whose
        bordered input plane fits the task's stack."""
        x, w = graph.types[node.inputs[0]], graph.types[node.inputs[1]]
        if x.rank != 4 or node.ann.prologue or w.shape[1] != 1 \
                or not node.int_attr("group", 1) == x.shape[1] == w.shape[0]:
            return False
        op = Conv().kernel_params(node, graph)
        g = _depthwise_geometry(isa, node, graph, op)
        if not g["col_blocks"]:  # no output columns
            return False
        phases = int_params(op, ("SW",))["SW"]
        sums = max(g["block_rows"] * int_params(op, ("OW",))["OW"] * g["itemsize"],
                   DEPTHWISE_MAP_SUMS_BYTES) // g["itemsize"] + g["col_blocks"][-1]["width"]
        return (phases * g["phase_size"] + sums) * g["itemsize"] <= DEPTHWISE_PLANE_BYTES
    return applies


def _depthwise_params(isa: str):  # noqa: ANN202 (a closure per ISA)
    def params(node: Node, graph: Graph, op: Params) -> Params:
        return {**_conv_coords(node, graph, op), **_depthwise_geometry(isa, node, graph, op),
                "parallel": worth_threads(node, graph)}
    return params


def depthwise_candidate(isa: str) -> KernelCandidate:
    """Registers accumulate each output over its window, in vectors of `isa`'s width: cheaper
    than the direct loop's passes over output rows, which remains for what this does not
    cover."""
    return KernelCandidate("conv2d_depthwise", "conv2d_depthwise.c.j2", _is_depthwise(isa),
                           cost_factor=2.0, takes_epilogue=True, params=_depthwise_params(isa))


def _conv_coords(node: Node, graph: Graph, op: Params) -> Params:
    """The loop variables the conv templates name: output coordinates an epilogue indexes its
    operands by, input coordinates a prologue does (every conv runs as 3-D: the leading ones
    of a 1-D or 2-D conv are unit loops that no operand indexes)."""
    lift = 5 - graph.types[node.inputs[0]].rank
    return {"out_coords": ["n", "oc"] + ["od", "oh", "ow"][lift:],
            "in_coords": ["n", "ci"] + ["id", "ih", "iw"][lift:]}


def _im2col_params(isa: str):  # noqa: ANN202 (a closure per ISA)
    def params(node: Node, graph: Graph, op: Params) -> Params:
        """The tile of output pixels whose packed columns the workspace holds, the GEMM plan
        of one tile, and the loop coordinates."""
        rows, reduction, pixels, _ = _gemm_shape(node, graph)
        dtype = graph.types[node.outputs[0]].dtype
        nr = gemm.panel_width(isa, dtype.itemsize)
        tile = im2col_tile(reduction, pixels, dtype.itemsize, _workspace_cap(node), nr)
        g = gemm.plan(isa, dtype.c_type, dtype.itemsize, rows, tile, reduction, 1, _tuned(node),
                      k_blocking=True)
        g["n_full"] = pixels % nr == 0  # every tile's width is then a multiple of NR
        return {"tile": tile, "gemm": g, **_conv_coords(node, graph, op)}
    return params


def _im2col_workspace(isa: str):  # noqa: ANN202 (a closure per ISA)
    def workspace(node: Node, graph: Graph) -> int:
        """One tile's columns, packed (a multiple of NR pixels)."""
        _, reduction, pixels, _ = _gemm_shape(node, graph)
        itemsize = graph.types[node.outputs[0]].dtype.itemsize
        nr = gemm.panel_width(isa, itemsize)
        return reduction * im2col_tile(reduction, pixels, itemsize, _workspace_cap(node), nr) \
            * itemsize
    return workspace


def _runs_implicitly(node: Node, graph: Graph) -> bool:
    """A conv the implicit GEMM takes: 1-D or 2-D, stride 1, no prologue, output rows no wider
    than the input's (the grid is the input's width)."""
    if graph.types[node.inputs[0]].rank not in (3, 4) or node.ann.prologue:
        return False
    v = int_params(Conv().kernel_params(node, graph), ("W", "OW", "SH", "SW"))
    return v["SH"] == v["SW"] == 1 and v["OW"] <= v["W"]


def _implicit_applies(isa: str):  # noqa: ANN202 (a closure per ISA)
    def applies(node: Node, graph: Graph) -> bool:
        """Masked vector loads (AVX2, AVX-512) on a conv the GEMM pays off for."""
        return isa in MASKED_LOAD_ISAS and _gemm_pays_off(node, graph) \
            and _runs_implicitly(node, graph)
    return applies


# AVX-512: a conv whose channels come in whole blocks of 12 runs 12-row register blocks (24 of
# the 32 registers accumulate; one broadcast of a weight feeds 2 FMAs either way, but each pair
# of pixel vectors loaded feeds 24 FMAs instead of 16). PP-OCR rec's 240 -> 240 and 480 -> 240
# pointwise convs on Zen 4 at 1 thread (thread CPU time, 6 interleaved rounds, the machine
# shared): 0.95-0.98x the time of MR = 8. Channel counts that 12 does not divide (ResNet's 64 ..
# 512) keep MR = 8: a 12-row plan would end in a short block
IMPLICIT_WIDE_ROWS = 12


def _implicit_rows(isa: str, ocg: int) -> dict[str, object]:
    """The implicit GEMM's register rows where they differ from the ISA's default."""
    if isa == "avx512" and ocg % IMPLICIT_WIDE_ROWS == 0:
        return {"mr": IMPLICIT_WIDE_ROWS}
    return {}


def _implicit_params(isa: str):  # noqa: ANN202 (a closure per ISA)
    def params(node: Node, graph: Graph, op: Params) -> Params:
        """The GEMM plan over the grid's pixels (output rows on the input's width, up to the
        last output pixel), each tap's input offset from a grid pixel (taps in the weights'
        order: kh, then kw), and whether any tap reads padding."""
        v = int_params(op, ("N", "G", "CG", "OCG", "H", "W", "OH", "OW", "KH", "KW", "DH", "DW",
                            "PH", "PW"))
        taps = [(kh, kw) for kh in range(v["KH"]) for kw in range(v["KW"])]
        dtype = graph.types[node.outputs[0]].dtype
        kdim = v["CG"] * len(taps)
        pixels = (v["OH"] - 1) * v["W"] + v["OW"]
        g = gemm.plan(isa, dtype.c_type, dtype.itemsize, v["OCG"], pixels, kdim,
                      v["N"] * v["G"], {**_implicit_rows(isa, v["OCG"]), **_tuned(node)})
        padded = bool(v["PH"] or v["PW"]) or v["OH"] + (v["KH"] - 1) * v["DH"] != v["H"] \
            or v["OW"] + (v["KW"] - 1) * v["DW"] != v["W"]
        return {"gemm": g, "KDIM": kdim, "OHW": v["OH"] * v["OW"], "padded": padded,
                "a_row": kdim, "a_k": len(taps),  # the weights [OCG, CG, KH, KW] as A
                "taps": [(kh * v["DH"] - v["PH"]) * v["W"] + kw * v["DW"] - v["PW"]
                         for kh, kw in taps],
                "tap_kh": [kh for kh, _ in taps], "tap_kw": [kw for _, kw in taps],
                "prefetch": v["W"] == v["OW"] and kdim * int(g["NR"]) * dtype.itemsize  # type: ignore[call-overload]
                <= PREFETCH_PANEL_BYTES,
                "prefetch_operands": _prefetched_operands(node, graph, v["W"] == v["OW"]),
                # where the grid is the output, its pixel indexes operands over (oh, ow)
                **({"flat_coords": ["oh", "ow", "pix"]}
                   if v["W"] == v["OW"] and graph.types[node.inputs[0]].rank == 4 else {}),
                **_conv_coords(node, graph, op)}
    return params


# the implicit GEMM prefetches its output rows ahead (_prefetched_operands) only where a panel
# of its input (K x NR elements, re-read by every block of channels) takes at most half of L1:
# on ResNet-50's K = 64 and 128 1x1 convs the residual ones ran 0.80-0.88x the time, but PP-OCR
# rec's 240 -> 240 ones (a 30 KiB panel) 1.17-1.19x, the prefetched lines evicting the panel
PREFETCH_PANEL_BYTES = 16 * 1024


def _prefetched_operands(node: Node, graph: Graph, grid_is_output: bool) -> list[str]:
    """The epilogue operands (E<k>) shaped as the output, which the implicit GEMM's stores read
    at the output's own offsets: they and the output rows a few register blocks ahead are
    prefetched (each panel's stores walk all OC rows, too many streams for the hardware
    prefetcher). Empty where the grid is wider than the output or nothing is fused."""
    if not grid_is_output or not node.ann.epilogue:
        return []
    shape = graph.types[node.outputs[0]].shape
    return [f"E{k}" for k, value in enumerate(registry.fused_inputs(node)[1])
            if graph.types[value].shape == shape]


def _phase_geometry(op: Params) -> dict[str, object]:
    """A strided conv's polyphase planes (conv2d_strided.c.j2): the planes (a, b) some tap reads
    (padded input rows a + SH*i, columns b + SW*j), their size HP x GW (the output plus the
    largest tap offset in plane rows / columns: every valid pixel's taps stay inside), the
    plane columns that read the input (the rest are padding), and each tap's offset from a grid
    pixel (its plane, then its row and column in it; taps in the weights' order: kh, then kw)."""
    v = int_params(op, ("H", "W", "OH", "OW", "KH", "KW", "SH", "SW", "DH", "DW", "PH", "PW"))
    taps = [(kh * v["DH"], kw * v["DW"]) for kh in range(v["KH"]) for kw in range(v["KW"])]
    phases = sorted({(dh % v["SH"], dw % v["SW"]) for dh, dw in taps})
    hp = v["OH"] + (v["KH"] - 1) * v["DH"] // v["SH"]
    gw = v["OW"] + (v["KW"] - 1) * v["DW"] // v["SW"]
    lo = [max(0, -(-(v["PW"] - b) // v["SW"])) for _, b in phases]
    hi = [min(gw, max(low, -(-(v["W"] + v["PW"] - b) // v["SW"]))) for low, (_, b) in zip(lo, phases)]
    offsets = [phases.index((dh % v["SH"], dw % v["SW"])) * hp * gw
               + dh // v["SH"] * gw + dw // v["SW"] for dh, dw in taps]
    return {"phase_a": [a for a, _ in phases], "phase_b": [b for _, b in phases],
            "col_lo": lo, "col_hi": hi, "HP": hp, "GW": gw, "plane": len(phases) * hp * gw,
            "taps": offsets}


def _strided_applies(isa: str):  # noqa: ANN202 (a closure per ISA)
    def applies(node: Node, graph: Graph) -> bool:
        """A 1-D or 2-D strided conv the GEMM pays off for, on an ISA with masked loads (the
        implicit micro-kernel's tail); the copy applies a prologue."""
        if isa not in MASKED_LOAD_ISAS or graph.types[node.inputs[0]].rank not in (3, 4) \
                or not _gemm_pays_off(node, graph):
            return False
        v = int_params(Conv().kernel_params(node, graph), ("SH", "SW"))
        return (v["SH"], v["SW"]) != (1, 1)
    return applies


def _strided_workspace(node: Node, graph: Graph) -> int:
    """The phase planes of every (image, channel)."""
    op = Conv().kernel_params(node, graph)
    return int(op["N"]) * int(op["C"]) * int(_phase_geometry(op)["plane"]) \
        * graph.types[node.outputs[0]].dtype.itemsize  # type: ignore[call-overload]


# the phase planes are copied by threads from this many elements (about 20 us on one core,
# measured: several fork/joins' worth)
COPY_PARALLEL_ELEMENTS = 64 * 1024


# AVX2 has 16 registers: past this many taps per channel GCC hoists their loads and spills
# MR=6's 12 accumulators (a 7x7/s2 stem on one core: 4.8 ms at MR=6, 2.4 ms at MR=4; a 3x3/s2
# is faster at MR=6), so such convs default to MR=4 there
AVX2_MANY_TAPS = 16


def _strided_params(isa: str):  # noqa: ANN202 (a closure per ISA)
    def params(node: Node, graph: Graph, op: Params) -> Params:
        """The phase planes, and the implicit GEMM's plan over their grid (no padding left:
        only the last panel's tail is masked)."""
        v = int_params(op, ("N", "C", "G", "CG", "OCG", "OH", "OW", "KH", "KW"))
        geometry = _phase_geometry(op)
        gw, kdim = int(geometry["GW"]), v["CG"] * v["KH"] * v["KW"]  # type: ignore[call-overload]
        dtype = graph.types[node.outputs[0]].dtype
        many = isa == "avx2" and v["KH"] * v["KW"] > AVX2_MANY_TAPS
        g = gemm.plan(isa, dtype.c_type, dtype.itemsize, v["OCG"], (v["OH"] - 1) * gw + v["OW"],
                      kdim, v["N"] * v["G"], {**({"mr": 4} if many else {}), **_tuned(node)})
        copied = v["N"] * v["C"] * int(geometry["plane"])  # type: ignore[call-overload]
        return {**geometry, "gemm": g, "KDIM": kdim, "OHW": v["OH"] * v["OW"], "padded": False,
                "a_row": kdim, "a_k": v["KH"] * v["KW"], "tap_kh": [], "tap_kw": [],
                "copy_parallel": copied >= COPY_PARALLEL_ELEMENTS, "segments": gw != v["OW"],
                **({"flat_coords": ["oh", "ow", "pix"]}
                   if gw == v["OW"] and graph.types[node.inputs[0]].rank == 4 else {}),
                **_conv_coords(node, graph, op)}
    return params


# ---------------------------------------------------------------- pixel-major conv

# the columns a pixel-major conv reads are its input (pointwise) or gathered into its scratch;
# columns of at most this many bytes (K x pixels) are one block of pixels per task: they stay in
# L2 while every panel of weights passes over them
PIXEL_BLOCK_BYTES = 1024 * 1024
# flop-equivalents per output element of the transposed stores (a channel's pixels from a
# tile's column, scalar), beyond the channel-major kernels' row stores: about 1 cycle of a
# Zen 4 core's 32 flops. A short reduction does not pay for them (ResNet's 256-long ones do:
# 1.15x measured)
PIXEL_STORE_COST = 32.0
# a tie goes to the channel-major kernels
PIXEL_TIE = 1.02
# the tasks of a small map split its output channels' panels: fewer than this many would
# leave a thread of the CI-class machine idle
PIXEL_MIN_PANELS = 2
# a map of at most this many output pixels (ResNet-50's 7x7: 7 row blocks a panel) has its
# weights' next panel prefetched into L2 while the row blocks of the current one run: each
# weight byte there feeds only 2 x pixels / 4 flops (25 on 7x7), and a panel's first row block
# waited on memory. Measured on Zen 4 at 1 thread (thread CPU time, 6 interleaved rounds, the
# machine shared): ResNet-50's 7x7 1x1 convs 0.88-0.94x the time; the 14x14 ones (25 blocks,
# 4x the flops a byte) were 1.0-1.06x with it, so they keep without
PREFETCH_PIXELS = 64
# ... and runs taller register blocks there: each pass of a row block over a panel streams the
# whole panel (K x NR) through L1, so fewer, taller blocks read it fewer times (49 pixels: 4
# blocks of 14 instead of 7 of 8; 14 x 2 vectors = 28 accumulators of AVX-512's 32
# registers). Measured on Zen 4 at 1 thread (thread CPU time, interleaved): the 3x3 512 -> 512
# conv on 7x7 0.93x the time (MR 12: 0.94x), the 1x1 512 -> 2048 and 2048 -> 512 ones
# 0.94-0.97x; 14x14 maps (196 = 14 x 14) 0.98-0.99x, within the noise, so they keep MR 8
SMALL_MAP_ROWS = {"avx512": 14}
# flop-equivalents per gathered column element (a load and a store, branch-free rows)
GATHER_COST = 4.0
# a tuned kc runs the reduction in K blocks outside the panels (gemm_packed.j2's kouter: each
# KC slice of the columns serves a group of panels from L1 / L2, each weight byte comes from
# memory once); by default K stays whole: on ResNet-50's 3x3 convs on 7x7 maps (900 KB of
# columns beside 576 KB panels) kc 128 / 256 / 512 measured 0.97-1.04x the time (1 thread,
# thread CPU time, interleaved, the machine loaded)
PIXEL_PART_BYTES = 32 * 1024  # the most a task's partial sums of a group of panels take


def _pixel_geometry(node: Node, graph: Graph) -> dict[str, int]:
    return int_params(Conv().kernel_params(node, graph),
                      ("N", "C", "OC", "H", "W", "OH", "OW", "KH", "KW", "SH", "SW", "DH", "DW",
                       "PH", "PW", "G"))


def _pixel_applies(isa: str):  # noqa: ANN202 (a closure per ISA)
    def applies(node: Node, graph: Graph) -> bool:
        """A 2-D float32 conv of one group the GEMM pays off for, no prologue, whose weight is a
        constant only it reads (the weights file holds it as panels of output channels)."""
        x = graph.types[node.inputs[0]]
        if isa not in MASKED_LOAD_ISAS or x.rank != 4 or x.dtype is not DType.F32 \
                or node.ann.prologue or not gemm.sole_constant_reader(node, graph, 1):
            return False
        return _pixel_geometry(node, graph)["G"] == 1 and _gemm_pays_off(node, graph)
    return applies


def _pixel_in_place(v: dict[str, int]) -> bool:
    """A 1x1, stride-1, unpadded conv reads its input as the columns."""
    return (v["KH"], v["KW"], v["SH"], v["SW"], v["PH"], v["PW"]) == (1, 1, 1, 1, 0, 0) \
        and (v["OH"], v["OW"]) == (v["H"], v["W"])


def _columns_bytes(v: dict[str, int]) -> int:
    """The columns of one image: output pixels x reduction length."""
    return v["OH"] * v["OW"] * v["C"] * v["KH"] * v["KW"] * 4


def _pixel_plan(isa: str, node: Node, graph: Graph) -> Params:
    v = _pixel_geometry(node, graph)
    pixels, kdim = v["OH"] * v["OW"], v["C"] * v["KH"] * v["KW"]
    tuned = _tuned(node)
    if not tuned.get("mr") and pixels <= PREFETCH_PIXELS and isa in SMALL_MAP_ROWS:
        tuned = {**tuned, "mr": SMALL_MAP_ROWS[isa]}
    mr = int(tuned.get("mr") or gemm.ISAS[isa].rows[0])  # type: ignore[call-overload]
    if not tuned.get("mc") and _columns_bytes(v) <= PIXEL_BLOCK_BYTES:
        tuned = {**tuned, "mc": -(-pixels // mr) * mr}
    g = gemm.plan(isa, "float", 4, pixels, v["OC"], kdim, v["N"], tuned, k_blocking=True)
    if int(g["KB"]) > 1:  # type: ignore[call-overload]
        part_bytes = int(g["MC"]) * int(g["NR"]) * 4  # type: ignore[call-overload]
        g["KP"] = max(1, min(int(g["NCP"]), PIXEL_PART_BYTES // part_bytes))  # type: ignore[call-overload]
    return g


def _pixel_params(isa: str):  # noqa: ANN202 (a closure per ISA)
    def params(node: Node, graph: Graph, op: Params) -> Params:
        """The GEMM plan over (pixels, output channels), and whether the columns are the input
        itself or gathered (by threads when there are many)."""
        v = _pixel_geometry(node, graph)
        kdim = v["C"] * v["KH"] * v["KW"]
        pixels = v["OH"] * v["OW"]
        return {"gemm": _pixel_plan(isa, node, graph), "KDIM": kdim, "OHW": pixels,
                "in_place": _pixel_in_place(v), "prefetch_next": pixels <= PREFETCH_PIXELS,
                "gather_parallel": kdim * pixels >= COPY_PARALLEL_ELEMENTS,  # per image
                **_conv_coords(node, graph, op)}
    return params


def _pixel_workspace(node: Node, graph: Graph) -> int:
    """The gathered columns of one image (none for a pointwise conv)."""
    v = _pixel_geometry(node, graph)
    return 0 if _pixel_in_place(v) else _columns_bytes(v)


def _lane_use(count: int, width: int) -> float:
    return count / (-(-count // width) * width)


def _pixel_cost_scale(isa: str):  # noqa: ANN202 (a closure per ISA)
    def scale(node: Node, graph: Graph) -> float:
        """Against the channel-major kernels (cost 1 per flop at full lanes): their vectors run
        over the pixels of a grid as wide as the input (or its phase planes), whose last panel
        is part empty on a small map; this kernel's run over output channels. Plus the
        gather."""
        v = _pixel_geometry(node, graph)
        if _columns_bytes(v) > PIXEL_BLOCK_BYTES:
            return winograd.NEVER  # a large map: every task's block of pixels re-reads B
        if v["OH"] * v["OW"] <= conv_dots.MAX_PIXELS:
            return winograd.NEVER  # a few pixels: dot products along the reduction
        nr = gemm.panel_width(isa, 4)
        if v["OC"] < PIXEL_MIN_PANELS * nr:
            return winograd.NEVER  # the tasks split the panels: too few for the threads
        strided = (v["SH"], v["SW"]) != (1, 1)
        grid_width = v["OW"] + (v["KW"] - 1) * v["DW"] // v["SW"] if strided else v["W"]
        grid = (v["OH"] - 1) * grid_width + v["OW"]
        channel_major = v["OH"] * v["OW"] / (-(-grid // nr) * nr)
        pixel_major = _lane_use(v["OC"], nr)
        flops = max(1, Conv().flops(node, graph))
        gather = 0.0 if _pixel_in_place(v) else GATHER_COST * _pixel_workspace(node, graph) / 4 / flops
        stores = 1.0 + PIXEL_STORE_COST / (2 * v["C"] * v["KH"] * v["KW"])
        return channel_major / pixel_major * stores * PIXEL_TIE + gather
    return scale


def _pixel_transform(isa: str):  # noqa: ANN202 (a closure per ISA)
    def transform(node: Node, graph: Graph, index: int) -> str | None:
        """The weights (input 1) are stored as panels of NR output channels."""
        return weights.conv_panels_name(gemm.panel_width(isa, 4)) if index == 1 else None
    return transform


def pixel_candidate(isa: str) -> KernelCandidate:
    return KernelCandidate(
        "conv2d_pixel_gemm", "conv2d_pixel.c.j2", _pixel_applies(isa), 0.25, _pixel_workspace,
        stores_once=True, params=_pixel_params(isa), takes_epilogue=True,
        tunables=gemm.tunables(isa, k_blocking=True), cost_scale=_pixel_cost_scale(isa),
        constant_transform=_pixel_transform(isa), workspace_fixed=True)


def conv_candidates(isa: str, with_winograd: bool = True) -> tuple[KernelCandidate, ...]:
    """Conv's candidates on `isa`: Winograd F(4x4,3x3) for 3x3 stride-1 convs where it pays
    (unless `with_winograd` is off: `pyc build --no-winograd`), the implicit GEMM (and its
    polyphase variant for strided convs), the packed GEMM over gathered columns, the depthwise
    kernel, and the direct loop (tiny convs, and convs whose prologue the others cannot
    apply)."""
    return (
        winograd.candidate(isa, with_winograd),
        # reads the input in place (no columns, no workspace): cheaper than gathering them
        KernelCandidate(
            "conv2d_implicit_gemm", "conv2d_implicit.c.j2", _implicit_applies(isa), 0.25,
            stores_once=True, params=_implicit_params(isa), takes_epilogue=True,
            tunables=gemm.tunables(isa)),
        # a strided conv: the same micro-kernel over a polyphase copy of the input (its own
        # size, where im2col gathers KH*KW/(SH*SW) times it)
        KernelCandidate(
            "conv2d_strided_gemm", "conv2d_strided.c.j2", _strided_applies(isa), 0.26,
            _strided_workspace, stores_once=True, params=_strided_params(isa),
            takes_epilogue=True, takes_prologue=_strided_applies(isa), tunables=gemm.tunables(isa),
            workspace_fixed=True),
        # the same GEMM with vectors over output channels: small maps waste no lanes
        pixel_candidate(isa),
        KernelCandidate(
            "conv2d_im2col_gemm", "conv2d_im2col.c.j2", _gemm_pays_off, 0.3,
            _im2col_workspace(isa), stores_once=True, params=_im2col_params(isa),
            takes_epilogue=True, takes_prologue=_im2col_prologue(isa),
            tunables=(Tunable("workspace_cap", (IM2COL_WORKSPACE_CAP, 32 * 1024),
                              "bytes of im2col columns (the memory mode's cap; the tile follows)"),
                      *gemm.tunables(isa, k_blocking=True))),
        conv_dots.candidate(isa), depthwise_candidate(isa), CONV_DIRECT)


def _tiles_output(node: Node, graph: Graph) -> bool:
    """A 2-D ConvTranspose whose kernel tiles the output exactly (kernel = stride, no
    padding, no dilation, one group, no output padding): one tap per output pixel."""
    from ...ops.conv_transpose import ConvTranspose

    if graph.types[node.inputs[0]].rank != 4:
        return False
    v = int_params(ConvTranspose().kernel_params(node, graph),
                   ("H", "W", "OH", "OW", "KH", "KW", "SH", "SW", "DH", "DW", "PH", "PW", "G"))
    return (v["KH"], v["KW"]) == (v["SH"], v["SW"]) and (v["DH"], v["DW"], v["G"]) == (1, 1, 1) \
        and not v["PH"] and not v["PW"] and (v["OH"], v["OW"]) == (v["H"] * v["SH"], v["W"] * v["SW"])


def _transpose_gemm_applies(isa: str):  # noqa: ANN202 (a closure per ISA)
    def applies(node: Node, graph: Graph) -> bool:
        return isa in MASKED_LOAD_ISAS and _tiles_output(node, graph)
    return applies


def _transpose_gemm_params(isa: str):  # noqa: ANN202 (a closure per ISA)
    def params(node: Node, graph: Graph, op: Params) -> Params:
        """The GEMM Wt[OC*KH*KW, C] x X[C, H*W] as the implicit conv's micro-kernel sees it:
        one tap, no padding, A read column-major from the weights [C, OC, KH, KW]."""
        v = int_params(op, ("N", "C", "H", "W", "OC", "KH", "KW", "OH", "OW"))
        rows = v["OC"] * v["KH"] * v["KW"]
        dtype = graph.types[node.outputs[0]].dtype
        g = gemm.plan(isa, dtype.c_type, dtype.itemsize, rows, v["H"] * v["W"], v["C"], v["N"],
                      _tuned(node))
        return {"gemm": g, "CG": v["C"], "taps": [0], "tap_kh": [0], "tap_kw": [0],
                "padded": False, "a_row": 1, "a_k": rows, "OHW": v["OH"] * v["OW"]}
    return params


def transpose_candidates(isa: str) -> tuple[KernelCandidate, ...]:
    """ConvTranspose's candidates on `isa`: one GEMM where the kernel tiles the output exactly
    (AVX2, AVX-512: masked loads), and the direct scatter loop for every other."""
    return (KernelCandidate("conv_transpose2d_gemm", "conv_transpose2d_gemm.c.j2",
                            _transpose_gemm_applies(isa), 0.25,
                            params=_transpose_gemm_params(isa), tunables=gemm.tunables(isa)),
            CONV_TRANSPOSE_DIRECT)


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
    shape: tuple[int, ...] = tuple(op["in_shape"])  # type: ignore[call-overload, arg-type]
    dims, sets = coalesce(shape, [contiguous_strides(shape), list(op["out_strides"])])  # type: ignore[call-overload]
    coords = [f"i{d}" for d in range(len(dims))]
    rows = (len(dims) == 1 and sets[1] == [0]) or (len(dims) == 2 and sets[1] == [1, 0])
    float_sum = (op["reducer"] in ("ReduceSum", "ReduceMean")
                 and graph.types[node.inputs[0]].dtype is DType.F32)
    return {"dims": dims, "in_index": index_expression(coords, sets[0]),
            "out_index": index_expression(coords, sets[1]),
            "sum_rows": dims[-1] if rows and float_sum and dims else 0}


# keys per block of the blocked attention: a task's R x TB scores (16 KiB at R = 16) stay in L1
# between the two products; the online softmax carries longer rows block to block
ATTENTION_KEY_BLOCK = 256
# a task's scores and output tile on the stack: at most this many floats (64 KiB)
ATTENTION_STACK_FLOATS = 16384


def _attention_blocks(isa: str, T: int, E: int) -> Params:
    """The blocked kernel's shape for `isa`: TB keys per block; rows per task; the QK^T tile
    (4 rows x NQ vectors of keys: 16 accumulators with 32 registers, 8 with 16); the PV tiles
    (RP rows x NP vectors of E as chunks (first column, vectors), columns past the last whole
    vector scalar)."""
    g = gemm.vector_ops(isa, "float", 4)
    lanes_ = int(g["lanes"])  # type: ignore[call-overload]
    accumulators = 16 if gemm.ISAS[isa].registers >= 32 else 8
    nq = accumulators // 4
    tb = min(ATTENTION_KEY_BLOCK, -(-T // 16) * 16)
    vectors = E // lanes_
    np_ = max(1, min(nq, vectors))
    chunks = [(c * lanes_, min(np_, vectors - c)) for c in range(0, vectors, np_)]
    # PV keeps 3/4 of the accumulators QK^T does: with 16 (8 x 2 vectors) GCC 12 spilled one
    # to the stack in the reduction loop (the softmax's exp constants stay in registers)
    rp = max(1, min(8, (accumulators * 3 // 4) // np_))
    return {"g": g, "TB": tb, "NQ": nq,
            "pv_chunks": chunks, "pv_tail": vectors * lanes_,
            "pv_rows": sorted({rp, min(rp, 4), 1}, reverse=True),
            "rows_per_task": max(1, min(16, ATTENTION_STACK_FLOATS // (tb + E)))}


def _attention_params(isa: str):  # noqa: ANN202 (a closure per ISA)
    def params(node: Node, graph: Graph, op: Params) -> Params:
        """Loop variables the score program indexes its operands by (batch dims, query row i,
        key column j, over the scores' shape), the batch strides that recover them (as C:
        numbers here, expressions of the run-time dims in the symbolic variant) and the blocks."""
        batch = list(op["batch"])  # type: ignore[call-overload]
        scores = (*batch, op["S"], op["T"])
        static = not node_is_symbolic(node, graph)
        return {"out_coords": [f"b{d}" for d in range(len(batch))] + ["i", "j"],
                "epilogue_shape": list(scores), "parallel": worth_threads(node, graph),
                **_attention_blocks(isa, int(op["T"]), int(op["E"])),  # type: ignore[call-overload]
                **_attention_sizes_c(op, {} if static else dim_names(graph))}
    return params


def _attention_sizes_c(op: Params, names: Mapping[str, str]) -> Params:
    """The batch, S and T as C: numbers in a static build, expressions over the run-time dims
    (`names`) in the symbolic variant (T's upper bound sizes nothing now)."""
    batch = list(op["batch"])  # type: ignore[call-overload]
    return {"S_c": c_size(op["S"], names), "T_c": c_size(op["T"], names),  # type: ignore[arg-type]
            "batch_size_c": c_size(numel(tuple(batch)), names),
            "batch_c": [c_size(b, names) for b in batch],
            "batch_strides_c": [c_size(numel(tuple(batch[d + 1:])), names)
                                for d in range(len(batch))]}


def _attention_contiguous(node: Node, graph: Graph) -> bool:
    """Operands as stored, no layout permutation (ops/attention.py): the kernel's vector loads
    run along contiguous rows of Kt (keys) and V, which a folded Transpose of K would break
    (fuse_attention then keeps the Transposes)."""
    return not folded(node)


def _attention_dims_applies(node: Node, graph: Graph) -> bool:
    """pyc.Attention over symbolic batch, query and key counts, the head sizes static, float
    (the row max and sum of c/row_math.j2)."""
    if not _attention_contiguous(node, graph) or not node_is_symbolic(node, graph) or \
            graph.types[node.outputs[0]].dtype is not DType.F32:
        return False
    op = registry.get(node.op).kernel_params(node, graph)
    return not isinstance(op["D"], Dim) and not isinstance(op["E"], Dim)


def attention_candidates(isa: str) -> tuple[KernelCandidate, ...]:
    """The blocked attention for `isa`'s vector ops, static and over symbolic dims (one
    template)."""
    return (KernelCandidate("attention_rows", "attention.c.j2", _attention_contiguous,
                            params=_attention_params(isa)),
            KernelCandidate("attention_rows_dims", "attention.c.j2", _attention_dims_applies,
                            params=_attention_params(isa), symbolic_dims=True))


def _concat_skips(node: Node, graph: Graph, op: Params) -> Params:
    """Inputs the memory plan already placed in their slice of the output need no copy."""
    return {"skip": list(node.ann.inplace_inputs)}


def _lrn_in_place(node: Node, graph: Graph, op: Params) -> Params:
    return {"in_place": node.ann.inplace_operand is not None}


def _im2col_prologue(isa: str):  # noqa: ANN202 (a closure per ISA)
    def takes(node: Node, graph: Graph) -> bool:
        """The im2col kernel applies an elementwise prologue while it gathers columns (1-D and
        2-D convs: its prologue indexes operands by (n, c, h, w)); except, where the implicit
        GEMM runs, on a stride-1 conv with more than one tap: the prologue would be computed
        once per tap and the conv would lose the faster kernel."""
        if graph.types[node.inputs[0]].rank > 4:
            return False
        if isa not in MASKED_LOAD_ISAS:
            return True
        v = int_params(Conv().kernel_params(node, graph), ("KD", "KH", "KW", "SH", "SW"))
        return v["KD"] * v["KH"] * v["KW"] == 1 or (v["SH"], v["SW"]) != (1, 1)
    return takes


# ---------------------------------------------------------------- the packed GEMM


def _matmul_dims(node: Node, graph: Graph) -> tuple[int, int, int, list[int], list[int]]:
    """(M, K, N, batch, B's batch strides) of a MatMul."""
    from ...ops.matmul import MatMul

    op = MatMul().kernel_params(node, graph)
    return (int(op["M"]), int(op["K"]), int(op["N"]), list(op["batch"]),  # type: ignore[call-overload]
            list(op["b_batch_strides"]))  # type: ignore[call-overload]


def _b_matrices(node: Node, graph: Graph) -> int:
    """How many distinct B matrices a (batched) MatMul reads."""
    _, k, n, _, _ = _matmul_dims(node, graph)
    return gemm.matrices(graph.types[node.inputs[1]].shape, k, n)


def _tuned(node: Node) -> dict[str, object]:
    """The tuning database's parameters for the chosen kernel (the plan derives the rest)."""
    return dict(node.ann.kernel.params) if node.ann.kernel is not None else {}


STREAM_PREFETCH_BYTES = 256 * 1024


def _packed_matmul_params(isa: str, constant: bool):  # noqa: ANN202 (a closure per ISA)
    def params(node: Node, graph: Graph, op: Params) -> Params:
        m, k, n, batch, b_strides = _matmul_dims(node, graph)
        dtype = graph.types[node.outputs[0]].dtype
        g = gemm.plan(isa, dtype.c_type, dtype.itemsize, m, n, k, math.prod(batch), _tuned(node),
                      k_blocking=True, min_rows=gemm.MATMUL_MIN_ROWS)
        packed = int(g["panels"]) * int(g["NR"]) * k  # type: ignore[call-overload]
        b_matrices = _b_matrices(node, graph)
        return {**_matmul_coords(node, graph, op), "gemm": g, "b_packed": constant,
                "b_matrices": b_matrices, "tasks": g["tasks"], "parallel": g["parallel"],
                # a streaming plan (the GEMV: B's bytes take the time) prefetches the panel
                # after each one into L2 while it reads this one (gemm_packed.j2): its
                # statically scheduled tasks are each thread's next panels. 5 x 2048^2 GEMVs
                # (80 MB, streamed from memory) 0.70-0.79x the time, the 512-2048-2048-512
                # MLP at batch 1 0.64-0.76x (Zen 4, 1 thread, thread CPU time, interleaved,
                # load ~10); a B under STREAM_PREFETCH_BYTES stays in cache between calls
                "prefetch_next": bool(g["static"]) and int(g["panels"]) > 1  # type: ignore[call-overload]
                and k * n * dtype.itemsize >= STREAM_PREFETCH_BYTES,
                # copying an element costs about what 8 flops do: below TASK_FLOPS of that,
                # the run-time packing is not worth threads
                "pack_parallel": b_matrices * k * n * 8 >= gemm.TASK_FLOPS,
                "pb_batch_strides": [s // max(1, k * n) * packed for s in b_strides]}
    return params


def _packed_b_workspace(isa: str):  # noqa: ANN202 (a closure per ISA)
    def workspace(node: Node, graph: Graph) -> int:
        """Every distinct B matrix, packed into panels."""
        _, k, n, _, _ = _matmul_dims(node, graph)
        itemsize = graph.types[node.outputs[0]].dtype.itemsize
        nr = gemm.panel_width(isa, itemsize)
        return _b_matrices(node, graph) * k * -(-n // nr) * nr * itemsize
    return workspace


def _packed_b(isa: str):  # noqa: ANN202 (a closure per ISA)
    def panels(node: Node, graph: Graph, index: int) -> int | None:
        """B, the weights, is read in NR-wide panels (packed once, at build time)."""
        if index != 1:
            return None
        return gemm.panel_width(isa, graph.types[node.inputs[1]].dtype.itemsize)
    return panels


def _b_unpacked(node: Node, graph: Graph) -> bool:
    """A B the weights file holds packed is read only by the packed-constant kernel."""
    return not gemm.packs_constant(node, graph)


def matmul_candidates(isa: str) -> tuple[KernelCandidate, ...]:
    """MatMul's candidates on `isa`: the packed GEMM (B packed at build time when it is a
    constant only MatMuls read, else at run time into the workspace), the 4x16 tile loop and
    the naive loop (kept as checks and for a tuner to compare)."""
    tunables = gemm.tunables(isa, k_blocking=True)
    return (
        KernelCandidate("matmul_packed_const", "matmul_packed.c.j2", gemm.packs_constant,
                        cost_factor=0.25, stores_once=True, tunables=tunables,
                        takes_epilogue=True, params=_packed_matmul_params(isa, True),
                        constant_panels=_packed_b(isa)),
        KernelCandidate("matmul_packed", "matmul_packed.c.j2", _b_unpacked, cost_factor=0.3,
                        workspace=_packed_b_workspace(isa), stores_once=True, tunables=tunables,
                        takes_epilogue=True, params=_packed_matmul_params(isa, False)),
        KernelCandidate("matmul_tiles", "matmul.c.j2", _b_unpacked, cost_factor=1.0,
                        stores_once=True, tunables=GEMM_TILES, takes_epilogue=True,
                        params=_matmul_coords),
        KernelCandidate("matmul_naive", "matmul_naive.c.j2", _b_unpacked, cost_factor=3.0,
                        takes_epilogue=True, params=_matmul_coords),
        symbolic_matmul_candidate(isa),
        # any MatMul over run-time sizes (B computed at run time too): the reference loop
        KernelCandidate("matmul_naive_dims", "matmul_naive_dims.c.j2", node_is_symbolic,
                        cost_factor=3.0, takes_epilogue=True, params=_matmul_dims_params,
                        symbolic_dims=True),
    )


# ---------------------------------------------------------------- run-time dims (issue #15)


def node_is_symbolic(node: Node, graph: Graph) -> bool:
    """Whether a shape of `node`'s inputs or outputs holds a symbolic dim."""
    return any(has_dims(graph.types[v].shape) for v in (*node.inputs, *node.outputs)
               if v and v in graph.types)


def _rows_epilogue_index(graph: Graph, value: str, out: tuple, n: int,
                         names: Mapping[str, str] | None = None) -> str | None:
    """How a fused epilogue operand of a product flattened to [rows, N] is indexed at (i, j):
    an operand of the output's own shape by i * N + j, one broadcast over leading dims only
    (a bias, a positional table: its shape a suffix of the output's) by that flat index
    modulo its size, a run-time size where it is symbolic (`names`: the dims' C names; without
    them, only whether it can be indexed); None for another broadcast (it would need the
    output's coordinates)."""
    shape = tuple(graph.types[value].shape)
    while shape and not isinstance(shape[0], Dim) and shape[0] == 1:
        shape = shape[1:]
    if shape and shape != tuple(out[len(out) - len(shape):]):
        return None
    # the output's own size: its other dims are static 1s (a residual [seq, H] of an output
    # [1, seq, H], both stripped of the leading 1 or not)
    if shape and all(not isinstance(d, Dim) and d == 1 for d in out[:len(out) - len(shape)]):
        return f"i * {n} + j"
    if has_dims(shape):  # a table of `seq` rows added to every batch's rows
        return "" if names is None else f"(i * {n} + j) % {c_size(numel(shape), names)}"
    size = int(numel(shape))
    return "j" if size == n else "0" if size == 1 else f"(i * {n} + j) % {size}"


def _symbolic_matmul_applies(node: Node, graph: Graph) -> bool:
    """A MatMul whose symbolic dims are all in A's rows (A[..., K] @ B[K, N], B a constant the
    weights file packs, K and N numbers), with no prologue and epilogue operands that are a
    bias or the output's own shape: one GEMM of M = the rows of A, read at run time."""
    if not node_is_symbolic(node, graph) or node.ann.prologue or not gemm.packs_constant(node, graph):
        return False
    a, b = (graph.types[v].shape for v in node.inputs[:2])
    if len(a) < 2 or len(b) != 2 or has_dims(b) or isinstance(a[-1], Dim):
        return False
    out = graph.types[node.outputs[0]].shape
    epilogue = registry.fused_inputs(node)[1]
    return all(_rows_epilogue_index(graph, v, out, int(b[1])) is not None for v in epilogue)


def _symbolic_matmul_params(isa: str):  # noqa: ANN202 (a closure per ISA)
    def params(node: Node, graph: Graph, op: Params) -> Params:
        """The packed GEMM planned for the upper bound of M (its row block, panels, task
        split), with M, the row blocks and the task count read at run time."""
        a, b = (graph.types[v].shape for v in node.inputs[:2])
        rows, k, n = numel(a[:-1]), int(a[-1]), int(b[1])
        dtype = graph.types[node.outputs[0]].dtype
        g = gemm.plan(isa, dtype.c_type, dtype.itemsize, int(rows), n, k, 1, {},
                      min_rows=gemm.MATMUL_MIN_ROWS)
        names = dim_names(graph)
        epilogue = registry.fused_inputs(node)[1]
        out = graph.types[node.outputs[0]].shape
        exprs = [f"E{e}[{_rows_epilogue_index(graph, v, out, n, names)}]"
                 for e, v in enumerate(epilogue)]
        program = render_program(node.ann.epilogue, exprs, [graph.types[v].dtype for v in epilogue],
                                 "acc") if node.ann.epilogue else []
        return {"gemm": g, "M_c": c_size(rows, names), "parallel": g["parallel"],
                "parallel_if": _rows_parallel_if(g, n * k),
                "rows_epilogue": program, "rows_result": program[-1].dst if program else "acc"}
    return params


def _rows_parallel_if(g: dict[str, Any], nk: int) -> str:
    """The C condition under which a run of the GEMM over a symbolic M goes to threads: gemm.plan's
    rule for a static M (2 tasks or more, each of TASK_FLOPS / 2 at least; a streaming plan's
    whole product TASK_FLOPS), evaluated with the run's M and task count. A small run of a plan
    sized for large bounds then runs on the calling thread, as a static plan of its shape would."""
    tasks = f"row_blocks * {g['NB']}"
    flops = f"2 * M * INT64_C({nk})"
    if g["static"]:
        return f"{tasks} >= 2 && {flops} >= {gemm.TASK_FLOPS}"
    return f"{tasks} >= 2 && {flops} / ({tasks}) >= {gemm.TASK_FLOPS // 2}"


def symbolic_matmul_candidate(isa: str) -> KernelCandidate:
    """The packed GEMM with constant B over a symbolic number of rows (matmul_packed_rows.c.j2)."""
    return KernelCandidate("matmul_packed_const_rows", "matmul_packed_rows.c.j2",
                           _symbolic_matmul_applies, cost_factor=0.25, stores_once=True,
                           takes_epilogue=True, params=_symbolic_matmul_params(isa),
                           constant_panels=_packed_b(isa), symbolic_dims=True)


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


def _static_rows(node: Node, graph: Graph) -> bool:
    """A row kernel's node whose symbolic dims are all in its row count (outer): the row and
    its stride static."""
    if not node_is_symbolic(node, graph):
        return False
    op = registry.get(node.op).kernel_params(node, graph)
    return not any(isinstance(op.get(key), Dim) for key in ("row", "inner"))


def _run_time_rows(params: Params, node: Node, graph: Graph, op: Params) -> Params:
    """`params` (row_split's, at the upper bound of the row count) with the row count and the
    task count read at run time."""
    names = dim_names(graph)
    out = {**params, "outer": c_size(op["outer"], names)}  # type: ignore[arg-type]
    if int(params["tasks"]) > 1:  # type: ignore[call-overload]
        out["tasks"] = run_time_tasks(op["outer"], int(params["rows_per_task"]), names)  # type: ignore[arg-type, call-overload]
    return out


def _strided_copy_dims(node: Node, graph: Graph) -> bool:
    """A Transpose or Slice with symbolic dims (loop bounds, strides and a Slice's first
    element over them read at run time). A Slice's ranges are the op's rule's (checked
    against concrete instances at import, issue #15's rails); its starts, ends and steps must
    be constants."""
    if not node_is_symbolic(node, graph):
        return False
    if node.op == "Slice":
        return all(v in graph.constants for v in node.inputs[1:] if v)
    return True


def _strided_copy_loops_dims(node: Node, graph: Graph, op: Params) -> Params:
    """_strided_copy_loops with symbolic loop bounds, strides and base as C over the run-time
    dims."""
    names = dim_names(graph)
    shape = graph.types[node.outputs[0]].shape
    dims, sets = coalesce(shape, [contiguous_strides(shape), list(op["in_strides"])])  # type: ignore[call-overload]
    return {"dims": [c_size(d, names) for d in dims], "base": c_size(op["base"], names),  # type: ignore[arg-type]
            "in_index": index_expression([f"i{d}" for d in range(len(dims))], sets[1], names)}


def _gather_dims(node: Node, graph: Graph) -> bool:
    """A Gather with symbolic dims whose rows (the data's elements after the axis) are static:
    an embedding lookup of a batch of token ids, or transformers' mask gathered from a
    [batch*seq, 1] table by computed indices; the index count, the outer count and the axis's
    size (the index bound) are read at run time."""
    if not node_is_symbolic(node, graph):
        return False
    return not has_dims((registry.get(node.op).kernel_params(node, graph)["inner"],))  # type: ignore[arg-type]


def _gather_count(node: Node, graph: Graph, op: Params) -> Params:
    names = dim_names(graph)
    return {key: c_size(op[key], names) for key in ("count", "outer", "axis_dim")}  # type: ignore[arg-type]


def _range_dims(node: Node, graph: Graph) -> bool:
    """A Range whose bounds are attributes (bind_shapes wrote them) with a symbolic count and
    integer elements: an iota over `batch` or `seq`."""
    if node.present_inputs() or not node_is_symbolic(node, graph):
        return False
    values = [node.attrs.get(key) for key in ("start", "delta")]
    return (not graph.types[node.outputs[0]].dtype.is_float
            and all(isinstance(v, int) for v in values))


def _range_params(node: Node, graph: Graph, op: Params) -> Params:
    """start + i * delta for i below the run-time count (Dims through Dim.to_c)."""
    names = dim_names(graph)
    return {"count": c_size(graph.types[node.outputs[0]].shape[0], names),
            "start": c_size(node.attrs["start"], names),  # type: ignore[arg-type]
            "delta": c_size(node.attrs["delta"], names)}  # type: ignore[arg-type]


def computed_here(node: Node, graph: Graph) -> list[DimBounds]:
    """The dims `node` computes at run time (issue #15, point 2), in its outputs' order."""
    found: dict[str, DimBounds] = {}
    for value in node.outputs:
        if value:
            for name, bounds in computed_dims([graph.types[value].shape]).items():
                if bounds.computed == node.name:
                    found.setdefault(name, bounds)
    return list(found.values())


def _range_runtime(node: Node, graph: Graph) -> bool:
    """A Range with tensor operands whose count is a dim it computes (start or limit from
    input values); not float16 (its arithmetic runs in double and stores the element type)."""
    dims = computed_here(node, graph)
    return (len(node.present_inputs()) == 3 and len(dims) == 1
            and graph.types[node.outputs[0]].dtype is not DType.F16)


def _range_runtime_params(node: Node, graph: Graph, op: Params) -> Params:
    (dim,) = computed_here(node, graph)
    return {"count_c": dim_names(graph)[dim.name], "bound": dim.hi}


def _slice_runtime(node: Node, graph: Graph) -> bool:
    """A Slice whose starts or ends are tensors read at run time (axes and steps constants)."""
    inputs = node.inputs
    return ("starts" not in node.attrs and len(inputs) >= 3 and bool(computed_here(node, graph))
            and (inputs[1] not in graph.constants or inputs[2] not in graph.constants)
            and all(inputs[i] in graph.constants for i in (3, 4) if len(inputs) > i and inputs[i]))


def _pad_runtime(node: Node, graph: Graph) -> bool:
    """A Pad whose pads are a tensor read at run time (axes and constant value constants)."""
    inputs = node.inputs
    return ("pads" not in node.attrs and bool(computed_here(node, graph))
            and inputs[1] not in graph.constants
            and all(inputs[i] in graph.constants for i in (2, 3) if len(inputs) > i and inputs[i]))


def _split_runtime_params(node: Node, graph: Graph, op: Params) -> Params:
    """Each output's computed size (its C name in the dims) and whether the model uses it."""
    names = dim_names(graph)
    axis = registry.normalize_axis(node.int_attr("axis", 0), graph.types[node.inputs[0]].rank, node)
    parts = [(index, names[str(graph.types[out].shape[axis])]) if out else (index, "")
             for index, out in enumerate(node.outputs)]
    # each size's bound where below the axis (sizes from declared values): refused past it
    highs = [(index, high) for index, out in enumerate(node.outputs) if out
             for high in [int(graph.types[out].shape[axis])]  # a Dim: its upper bound
             if high < int(op["axis_dim"])]  # type: ignore[call-overload]
    return {"parts": parts, "highs": highs}


def _topk_static_rows(node: Node, graph: Graph) -> bool:
    """A TopK whose symbolic dims (of its data) all precede the axis: its rows are static."""
    shape = graph.types[node.inputs[0]].shape
    axis = registry.normalize_axis(node.int_attr("axis", -1), len(shape), node)
    return not has_dims(shape[axis:])


def _topk_dims(node: Node, graph: Graph) -> bool:
    """A TopK over a symbolic outer count (a batch) with a constant K."""
    return node_is_symbolic(node, graph) and not computed_here(node, graph) \
        and _topk_static_rows(node, graph)


def _topk_runtime(node: Node, graph: Graph) -> bool:
    """A TopK whose K is a tensor read at run time: the one dim it computes, over rows of a
    static size (the outer count may be symbolic)."""
    inputs = node.inputs
    return (len(inputs) > 1 and bool(inputs[1]) and inputs[1] not in graph.constants
            and len(computed_here(node, graph)) == 1 and _topk_static_rows(node, graph))


def _topk_outer(node: Node, graph: Graph, op: Params) -> Params:
    """The row count over the run-time dims, and K as C: a number, or a dim read at the entry
    (K from a graph input with --input-values: a value dim), checked against the row at run
    time where its bound passes it (status 6; the order array holds one row)."""
    k = op["k"]
    return {**_run_time_outer(graph, op), "k": c_size(k, dim_names(graph)),  # type: ignore[arg-type]
            "check_k": isinstance(k, Dim) and int(k) > int(op["row"])}  # type: ignore[call-overload]


def _topk_runtime_params(node: Node, graph: Graph, op: Params) -> Params:
    (dim,) = computed_here(node, graph)
    return {**_topk_outer(node, graph, op), "count_c": dim_names(graph)[dim.name], "k": "k_run"}


def _topk_axis_dims(node: Node, graph: Graph) -> bool:
    """A TopK along a symbolic axis (or with symbolic dims after it), K a constant."""
    return not _topk_static_rows(node, graph) and not computed_here(node, graph)


def _topk_axis_runtime(node: Node, graph: Graph) -> bool:
    """A TopK along a symbolic axis whose K is a tensor read at run time."""
    inputs = node.inputs
    return (len(inputs) > 1 and bool(inputs[1]) and inputs[1] not in graph.constants
            and len(computed_here(node, graph)) == 1 and not _topk_static_rows(node, graph))


def _topk_axis_params(node: Node, graph: Graph, op: Params) -> Params:
    """topk.c.j2's row geometry over the run-time dims: the row length, the elements after the
    axis and a row's stride as C expressions, the order array sized for the row's upper bound
    (at most MAX_ROW: the op's rule refuses longer)."""
    names = dim_names(graph)

    def c(value: object) -> str:
        text = c_size(value, names)  # type: ignore[arg-type]
        return text if text.isdigit() else f"({text})"

    row, inner, k = op["row"], op["inner"], op["k"]
    # a constant K past the shortest row the bounds allow: refused at run time (status 6)
    short = not isinstance(k, Dim) and isinstance(row, Dim) and row.bounds()[0] < int(k)  # type: ignore[call-overload]
    return {"outer": c(op["outer"]), "row": c(row), "inner": c(inner),
            "stride": c(row * inner), "row_max": int(row),  # type: ignore[operator, call-overload]
            "k": c(k), "check_k": short}


def _topk_axis_runtime_params(node: Node, graph: Graph, op: Params) -> Params:
    """The same with K read at run time (topk_runtime.c.j2 checks it against the row)."""
    (dim,) = computed_here(node, graph)
    return {**_topk_axis_params(node, graph, op), "count_c": dim_names(graph)[dim.name],
            "k": "k_run", "check_k": False}  # topk_runtime.c.j2 checks K itself


def _written_dims(node: Node, graph: Graph, axes: list[int]) -> Params:
    """Per axis of `axes`: the output size's upper bound, and (axis, C name) of each that is a
    dim this node computes, which its kernel writes into the run-time dims."""
    names = dim_names(graph)
    out = graph.types[node.outputs[0]].shape
    mine = {d.name for d in computed_here(node, graph)}
    written = [[axis, names[str(out[axis])]] for axis in axes
               if isinstance(out[axis], Dim) and str(out[axis]) in mine]
    return {"bounds": [int(out[axis]) for axis in axes], "written": written}


def _runtime_shape_params(node: Node, graph: Graph, op: Params) -> Params:
    """The input's sizes over the run-time dims, the bounds and the dims the kernel writes."""
    names = dim_names(graph)
    in_dims = [c_size(d, names) for d in graph.types[node.inputs[0]].shape]
    return {"in_dims": in_dims, **_written_dims(node, graph, list(op["axes"]))}  # type: ignore[call-overload]


def _nonzero_params(node: Node, graph: Graph, op: Params) -> Params:
    """The input's sizes over the run-time dims; the count (output axis 1) it writes."""
    return _runtime_shape_params(node, graph, {"axes": [1]})


def _matmul_dims_params(node: Node, graph: Graph, op: Params) -> Params:
    """matmul_naive_dims.c.j2's sizes and batch strides as C over the run-time dims."""
    names = dim_names(graph)
    batch = list(op["batch"])  # type: ignore[call-overload]
    m, n = op["M"], op["N"]
    c_strides = [m * n * numel(tuple(batch[d + 1:])) for d in range(len(batch))]  # type: ignore[operator]
    return {**_matmul_coords(node, graph, op),
            "batch_c": [c_size(d, names) for d in batch],
            "a_strides_c": [c_size(s, names) for s in op["a_batch_strides"]],  # type: ignore[attr-defined]
            "b_strides_c": [c_size(s, names) for s in op["b_batch_strides"]],  # type: ignore[attr-defined]
            "c_strides_c": [c_size(s, names) for s in c_strides],
            **{f"{key}_c": c_size(op[key], names) for key in ("M", "N", "K")}}  # type: ignore[arg-type]


def _gather_elements_dims_params(node: Node, graph: Graph, op: Params) -> Params:
    """gather_elements_dims.c.j2's sizes and strides as C over the run-time dims."""
    names = dim_names(graph)
    data = graph.types[node.inputs[0]].shape
    return {"dims_c": [c_size(d, names) for d in op["dims"]],  # type: ignore[attr-defined]
            "data_dims_c": [c_size(d, names) for d in data],
            "axis_dim_c": c_size(op["axis_dim"], names),  # type: ignore[arg-type]
            "in_strides_c": [c_size(s, names) for s in op["in_strides"]]}  # type: ignore[attr-defined]


def _dim_values_params(node: Node, graph: Graph, op: Params) -> Params:
    """Each element of a pyc.DimValues as C over the run-time dims."""
    names = dim_names(graph)
    return {"values": [c_size(v, names) for v in node.attrs["values"]]}  # type: ignore[union-attr, arg-type]


def _reduce_loops_dims(node: Node, graph: Graph, op: Params) -> Params:
    """_reduce_loops with symbolic loop bounds, strides, row length and count (ReduceMean's
    divisor) as C over the run-time dims."""
    names = dim_names(graph)
    params = _reduce_loops(node, graph, op)
    shape: tuple[int, ...] = tuple(op["in_shape"])  # type: ignore[call-overload, arg-type]
    dims, sets = coalesce(shape, [contiguous_strides(shape), list(op["out_strides"])])  # type: ignore[call-overload]
    coords = [f"i{d}" for d in range(len(dims))]
    return {**params, "dims": [c_size(d, names) for d in dims],
            "in_index": index_expression(coords, sets[0], names),
            "out_index": index_expression(coords, sets[1], names),
            "sum_rows": c_size(params["sum_rows"], names) if params["sum_rows"] else 0,  # type: ignore[arg-type]
            "count": c_size(op["count"], names)}  # type: ignore[arg-type]


def _concat_dims(node: Node, graph: Graph) -> bool:
    """A Concat whose symbolic dims are all before its axis: the chunks static, the number of
    outer rows read at run time."""
    if not node_is_symbolic(node, graph):
        return False
    op = registry.get(node.op).kernel_params(node, graph)
    return not has_dims((op["row"], *op["chunks"]))  # type: ignore[arg-type, misc]


def _concat_dims_params(node: Node, graph: Graph, op: Params) -> Params:
    return {**_concat_skips(node, graph, op),
            "outer": c_size(op["outer"], dim_names(graph))}  # type: ignore[arg-type]


def _copy_bytes(node: Node, graph: Graph, op: Params) -> Params:
    """The bytes a copy moves, over the run-time dims."""
    out = graph.types[node.outputs[0]]
    return {"bytes_c": c_size(out.numel * out.dtype.itemsize, dim_names(graph))}


def _if_select_bytes(node: Node, graph: Graph, op: Params) -> Params:
    """The bytes each output of a pyc.If copies (over the run-time dims where symbolic)."""
    names = dim_names(graph)
    count = len(node.outputs)

    def size(value: str) -> str:
        return c_size(graph.types[value].numel * graph.types[value].dtype.itemsize, names)

    copies = [(index, size(node.inputs[1 + index]), size(node.inputs[1 + count + index]))
              for index, out in enumerate(node.outputs) if out]
    # the dims this If computes: each the taken branch's size of its output axis
    writes = []
    computed = {d.name for d in computed_here(node, graph)}
    for index, out in enumerate(node.outputs):
        shapes = [graph.types[v].shape for v in (out, node.inputs[1 + index],
                                                 node.inputs[1 + count + index])] if out else []
        for dim, then_dim, else_dim in zip(*shapes):
            if isinstance(dim, Dim) and str(dim) in computed:
                writes.append((names[str(dim)], c_size(then_dim, names), c_size(else_dim, names)))
    return {"copies": copies, "writes": writes}


def _if_select_symbolic(node: Node, graph: Graph) -> bool:
    """A pyc.If over symbolic dims that computes none itself (its branches agree on sizes)."""
    return node_is_symbolic(node, graph) and not computed_here(node, graph)


def _run_time_outer(graph: Graph, op: Params) -> Params:
    """A row kernel's serial row count over the run-time dims."""
    return {"outer": c_size(op["outer"], dim_names(graph))}  # type: ignore[arg-type]


def _softmax_rows_dims(node: Node, graph: Graph, op: Params) -> Params:
    return _run_time_rows(_softmax_rows(node, graph, op), node, graph, op)


def _layernorm_rows_dims(node: Node, graph: Graph, op: Params) -> Params:
    return _run_time_rows(_layernorm_rows(node, graph, op), node, graph, op)


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

# the tile GEMM macro (codegen_templates/c/gemm.j2) blocks registers in 4x16 tiles
GEMM_TILES = (Tunable("tile_rows", (4,), "rows of C per register block"),
              Tunable("tile_cols", (16,), "columns of C per register block (the vector width)"))
CONV_DIRECT = KernelCandidate("conv2d_direct", "conv2d.c.j2", lambda n, g: not n.ann.prologue,
                              cost_factor=4.0, takes_epilogue=True, params=_direct_conv_params)
CONV_TRANSPOSE_DIRECT = KernelCandidate("conv_transpose2d_direct", "conv_transpose2d.c.j2")
STRIDED_COPY = KernelCandidate("strided_copy", "strided_copy.c.j2", params=_strided_copy_loops)
STRIDED_COPY_DIMS = KernelCandidate("strided_copy_dims", "strided_copy.c.j2", _strided_copy_dims,
                                    params=_strided_copy_loops_dims, symbolic_dims=True)
REDUCE = KernelCandidate("reduce_strided", "reduce.c.j2", params=_reduce_loops)
REDUCE_DIMS = KernelCandidate("reduce_strided_dims", "reduce.c.j2", node_is_symbolic,
                              params=_reduce_loops_dims, symbolic_dims=True)

# the largest max-pool window whose interior loop is unrolled (kh, kw)
POOL_UNROLLED_WINDOW = 49
# ... and its AVX-512 path computes this many windows of a row at once (ResNet-50's stem pool
# on 64 x 112 x 112 ran scalar maxss: 0.16 ms against onnxruntime's 0.11 at 2 threads)
POOL_LANES = 16


def _pool_params(node: Node, graph: Graph, op: Params) -> Params:
    """Threads, and for 2-D max pools under MLAS's vector rule the interior: the output rows
    [oh_lo, oh_hi) and columns [ow_lo, ow_hi) whose windows lie inside the input and left of
    its last W % 4 columns (where the rule compares with ge), which run without bounds checks."""
    params: Params = {"parallel": worth_threads(node, graph), "interior": None,
                      "whole_window": _whole_window(op)}
    if op.get("is_max") and op.get("rule") == "mlas_vector" and op.get("column_from_first_row") \
            and int(op["KH"]) * int(op["KW"]) <= POOL_UNROLLED_WINDOW:  # type: ignore[call-overload]
        g = int_params(op, ("H", "W", "OH", "OW", "KH", "KW", "SH", "SW", "PH", "PW"))
        last = g["W"] // 4 * 4  # columns compared with gt
        oh_lo, ow_lo = -(-g["PH"] // g["SH"]), -(-g["PW"] // g["SW"])
        oh_hi = min(g["OH"], (g["H"] - g["KH"] + g["PH"]) // g["SH"] + 1)
        ow_hi = min(g["OW"], (last - g["KW"] + g["PW"]) // g["SW"] + 1)
        if oh_hi > oh_lo and ow_hi > ow_lo:
            params["interior"] = {"oh_lo": oh_lo, "oh_hi": oh_hi, "ow_lo": ow_lo, "ow_hi": ow_hi,
                                  "vector_last": _pool_vector_last(node, graph, g)}
    return params


def _whole_window(op: Params) -> bool:
    """An average pool whose one window is its whole input (ResNet-50's 7x7 AveragePool, a
    global average): a plain sum over the input in the window loops' order, without their
    bounds checks (0.04 ms against onnxruntime's 0.015 at 2 threads)."""
    g = int_params(op, ("D", "H", "W", "OD", "OH", "OW", "KD", "KH", "KW", "DD", "DH", "DW",
                        "PD", "PH", "PW", "PD_end", "PH_end", "PW_end"))
    return not op.get("is_max") and (g["OD"], g["OH"], g["OW"]) == (1, 1, 1) \
        and (g["KD"], g["KH"], g["KW"]) == (g["D"], g["H"], g["W"]) \
        and (g["DD"], g["DH"], g["DW"]) == (1, 1, 1) \
        and not any(g[k] for k in ("PD", "PH", "PW", "PD_end", "PH_end", "PW_end"))


def _pool_vector_last(node: Node, graph: Graph, g: dict[str, int]) -> int | None:
    """The last output column that starts a block of 16 AVX-512 windows (float32, strides 1
    and 2 along W) whose loads (16 or 32 elements from each window column) stay inside the
    input row; None where no block fits or the pool is another type (scalar loop)."""
    if graph.types[node.outputs[0]].dtype is not DType.F32 or g["SW"] not in (1, 2):
        return None
    # a block at ow loads row elements ow*SW - PW + kw .. + 16*SW - 1 for kw < KW
    last = (g["W"] - g["KW"] + g["PW"] - POOL_LANES * g["SW"] + 1) // g["SW"]
    return last if last >= 0 else None


POOL = KernelCandidate("pool_direct", "pool.c.j2", params=_pool_params)
# each row is read completely (max, sum; mean, variance) before the row is written
SOFTMAX = KernelCandidate("softmax_rows", "softmax.c.j2", inplace_input=0, params=_softmax_rows)
# ... and over a symbolic number of rows (issue #15)
SOFTMAX_DIMS = KernelCandidate("softmax_rows_dims", "softmax.c.j2", _static_rows, inplace_input=0,
                               params=_softmax_rows_dims, symbolic_dims=True)
CUMULATIVE = KernelCandidate("cumulative_rows", "cumsum.c.j2")
ARGREDUCE = KernelCandidate("argreduce_rows", "argreduce.c.j2", params=_input_ctype("in_ctype", 0))
ARGREDUCE_DIMS = KernelCandidate("argreduce_rows_dims", "argreduce.c.j2", _static_rows,
                                 params=lambda n, g, op: {**_input_ctype("in_ctype", 0)(n, g, op),
                                                          **_run_time_outer(g, op)},
                                 symbolic_dims=True)
RESIZE = KernelCandidate("resize_tables", "resize.c.j2",
                         lambda n, g: registry.get(n.op).static_tables(n, g))  # type: ignore[attr-defined]


def _resize_runtime(node: Node, graph: Graph) -> bool:
    """A Resize / Upsample whose index tables cannot be built at compile time (symbolic dims,
    or scales / sizes computed at run time: issue #15), other than the integer nearest
    upsampling resize_nearest_dims covers; not antialiased filters (compile-time tables only),
    tf_crop_and_resize with a constant crop window."""
    opdef = registry.get(node.op)
    return (not opdef.static_tables(node, graph)  # type: ignore[attr-defined]
            and not spatial_dims.resize_applies(node, graph)
            and not node.int_attr("antialias", 0)
            and (opdef.coordinate_mode(node) != "tf_crop_and_resize"  # type: ignore[attr-defined]
                 or node.inputs[1] in graph.constants)
            and graph.types[node.outputs[0]].dtype in (DType.F32, DType.F64))


def _resize_runtime_params(node: Node, graph: Graph, op: Params) -> Params:
    """The sizes as C over the run-time dims; for each output size this node computes, its
    bound and the C name it writes; each scale as C (the operand's element, or a constant)."""
    names = dim_names(graph)
    mine = {d.name for d in computed_here(node, graph)}
    axes = []
    for a in op["axes"]:  # type: ignore[attr-defined]
        out = a["out"]
        computed = isinstance(out, Dim) and str(out) in mine
        scale = a["scale"]
        axes.append({**a, "in_c": c_size(a["in"], names), "out_c": c_size(out, names),
                     "computed": computed, "bound": int(out),
                     "written": names[str(out)] if computed else "",
                     "scale_c": f"{float(scale)!r}f" if scale is not None
                     else f"(float)X{op['operand']}[{a['j']}]"})
    offsets, taps = _resize_table_offsets(op), int(op["taps"])  # type: ignore[call-overload]
    # tf_crop_and_resize: a byte per output index, whether it lies outside the input, after
    # the indices (offsets / taps: one per index)
    flags = offsets[-1] * (4 + (_out_itemsize(node, graph) if taps > 1 else 0))
    return {"axes": axes, "offsets": offsets[:-1], "weights_size": offsets[-1] if taps > 1 else 0,
            "flags_at": flags, "flag_offsets": [o // taps for o in offsets[:-1]]}


def _out_itemsize(node: Node, graph: Graph) -> int:
    return graph.types[node.outputs[0]].dtype.itemsize


def _resize_table_offsets(op: Params) -> list[int]:
    """Where each axis's taps start in resize_runtime's tables (in entries; an axis left as it
    is has none), then the entries of all: `taps` per output index up to the axis's bound."""
    offsets, total = [], 0
    for a in op["axes"]:  # type: ignore[attr-defined]
        offsets.append(total)
        if a["kind"] != "same":
            total += int(a["out"]) * int(op["taps"])  # type: ignore[call-overload]
    return [*offsets, total]


def _resize_runtime_workspace(node: Node, graph: Graph) -> int:
    """The tables' bytes: an int32 index and (linear, cubic) a weight of the element type per
    entry."""
    op = registry.get(node.op).kernel_params(node, graph)
    entries, taps = _resize_table_offsets(op)[-1], int(op["taps"])  # type: ignore[call-overload]
    weight = _out_itemsize(node, graph) if taps > 1 else 0
    flags = entries // taps if op["coords"] == "tf_crop_and_resize" else 0
    return entries * (4 + weight) + flags


RECURRENT = KernelCandidate(
    "recurrent_rows", "recurrent.c.j2",
    # canonicalize transposes the weights into the layout the kernel reads
    applies=lambda node, graph: bool(node.attrs.get("weights_transposed")),
    workspace=_recurrent_workspace, restrict_pointers=False)


def _each(ops: tuple[str, ...], *candidates: KernelCandidate) -> dict[str, tuple[KernelCandidate, ...]]:
    return {op: candidates for op in ops}


def cpu_kernels(isa: str, with_winograd: bool = True) -> dict[str, tuple[KernelCandidate, ...]]:
    """The candidate table for code using `isa` (gemm.ISAS: avx512, avx2, vector), with or
    without Winograd convs (`pyc build --no-winograd`: the candidate is listed but never
    applies, so an artifact's recorded choice is found by name either way); one table per ISA
    and option, so a candidate is the same object wherever it is looked up."""
    return _cpu_kernels(isa, with_winograd)


@functools.cache
def _cpu_kernels(isa: str, with_winograd: bool) -> dict[str, tuple[KernelCandidate, ...]]:
    return spatial_dims.with_spatial_dims(batch_loop.with_batch_loops({
        **STATIC_KERNELS, "Conv": conv_candidates(isa, with_winograd),
        "MatMul": matmul_candidates(isa), "pyc.ConvBlocked": (blocked.conv_candidate(isa),),
        "ConvTranspose": transpose_candidates(isa), "pyc.Attention": attention_candidates(isa)}),
        isa)


# op -> its candidates, cheapest-first is not implied (select_kernels compares costs); the
# GEMM candidates are those of the portable ISA here, the target's ISA in CpuTarget.kernels
STATIC_KERNELS: dict[str, tuple[KernelCandidate, ...]] = {
    "Conv": conv_candidates(gemm.PORTABLE_ISA),
    "MatMul": matmul_candidates(gemm.PORTABLE_ISA),
    "ConvTranspose": transpose_candidates(gemm.PORTABLE_ISA),
    "Transpose": (STRIDED_COPY, STRIDED_COPY_DIMS),
    "Slice": (STRIDED_COPY, STRIDED_COPY_DIMS,
              KernelCandidate("slice_runtime", "slice_runtime.c.j2", _slice_runtime,
                              params=_runtime_shape_params, symbolic_dims=True,
                              writes_dims=True)),
    "Concat": (KernelCandidate("concat_blocks", "concat.c.j2", params=_concat_skips),
               KernelCandidate("concat_blocks_dims", "concat.c.j2", _concat_dims,
                               params=_concat_dims_params, symbolic_dims=True)),
    "Gather": (KernelCandidate("gather_rows", "gather.c.j2"),
               KernelCandidate("gather_rows_dims", "gather.c.j2", _gather_dims,
                               params=_gather_count, symbolic_dims=True)),
    "Range": (KernelCandidate("range_dims", "range.c.j2", _range_dims, params=_range_params,
                              symbolic_dims=True),
              KernelCandidate("range_runtime", "range_runtime.c.j2", _range_runtime,
                              params=_range_runtime_params, symbolic_dims=True,
                              writes_dims=True)),
    "pyc.DimValues": (KernelCandidate("dim_values", "dim_values.c.j2",
                                      params=_dim_values_params, symbolic_dims=True),),
    "GatherElements": (KernelCandidate("gather_elements", "gather_elements.c.j2"),
                       KernelCandidate("gather_elements_dims", "gather_elements_dims.c.j2",
                                       node_is_symbolic, params=_gather_elements_dims_params,
                                       symbolic_dims=True)),
    "NonZero": (KernelCandidate("nonzero_count", "nonzero.c.j2", lambda n, g: bool(computed_here(n, g)),
                                params=_nonzero_params, symbolic_dims=True, writes_dims=True),),
    "GatherND": (KernelCandidate("gather_nd", "gather_nd.c.j2"),),
    "ScatterElements": (KernelCandidate("scatter_elements", "scatter_elements.c.j2"),),
    "ScatterND": (KernelCandidate("scatter_nd", "scatter_nd.c.j2"),),
    "Pad": (KernelCandidate("pad_gather", "pad.c.j2"),
            KernelCandidate("pad_runtime", "pad_runtime.c.j2", _pad_runtime,
                            params=_runtime_shape_params, symbolic_dims=True, writes_dims=True)),
    # Tile whose repeats are a tensor read at run time (decomposed otherwise)
    "Tile": (KernelCandidate("tile_runtime", "tile_runtime.c.j2",
                             lambda n, g: bool(computed_here(n, g)), params=_runtime_shape_params,
                             symbolic_dims=True, writes_dims=True),),
    # Split whose sizes are a tensor read at run time (decomposed into Slices otherwise)
    "Split": (KernelCandidate("split_runtime", "split_runtime.c.j2",
                              lambda n, g: bool(computed_here(n, g)), params=_split_runtime_params,
                              symbolic_dims=True, writes_dims=True),),
    "TopK": (KernelCandidate("topk_insertion", "topk.c.j2"),
             KernelCandidate("topk_rows_dims", "topk.c.j2", _topk_dims, params=_topk_outer,
                             symbolic_dims=True),
             KernelCandidate("topk_runtime", "topk_runtime.c.j2", _topk_runtime,
                             params=_topk_runtime_params, symbolic_dims=True, writes_dims=True),
             # along a symbolic axis (a sequence): row length and stride read at run time
             KernelCandidate("topk_axis_dims", "topk.c.j2", _topk_axis_dims,
                             params=_topk_axis_params, symbolic_dims=True),
             KernelCandidate("topk_axis_runtime", "topk_runtime.c.j2", _topk_axis_runtime,
                             params=_topk_axis_runtime_params, symbolic_dims=True,
                             writes_dims=True)),
    **_each(("AveragePool", "MaxPool"), POOL),
    **_each(("Softmax", "LogSoftmax", "Hardmax"), SOFTMAX, SOFTMAX_DIMS),
    "LayerNormalization": (KernelCandidate("layernorm_rows", "layernorm.c.j2", inplace_input=0,
                                           params=_layernorm_rows),
                           KernelCandidate("layernorm_rows_dims", "layernorm.c.j2", _static_rows,
                                           inplace_input=0, params=_layernorm_rows_dims,
                                           symbolic_dims=True)),
    "InstanceNormalization": (KernelCandidate("instancenorm_rows", "instancenorm.c.j2"),),
    # its in-place path (a ring of saved inputs) is slower: only memory_first takes it
    "LRN": (KernelCandidate("lrn_channels", "lrn.c.j2", params=_lrn_in_place, inplace_input=0,
                            inplace_slower=True),),
    **_each(("CumSum", "CumProd"), CUMULATIVE),
    **_each(("ArgMax", "ArgMin"), ARGREDUCE, ARGREDUCE_DIMS),
    **_each(("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
             "ReduceL2", "ReduceSumSquare", "ReduceLogSum"), REDUCE, REDUCE_DIMS),
    "ReduceLogSumExp": (KernelCandidate("reduce_strided", "reduce.c.j2", workspace=_sums_workspace,
                                        params=_reduce_loops),),
    **_each(("Resize", "Upsample"), RESIZE,
            KernelCandidate("resize_runtime", "resize_runtime.c.j2", _resize_runtime,
                            params=_resize_runtime_params, workspace=_resize_runtime_workspace,
                            workspace_fixed=True, symbolic_dims=True, writes_dims=True)),
    **_each(("LSTM", "GRU", "RNN"), RECURRENT),
    "pyc.Elementwise": (KernelCandidate("elementwise_loop", "elementwise.c.j2"),
                        # its loop bounds and strides over symbolic dims read at run time
                        KernelCandidate("elementwise_loop_dims", "elementwise.c.j2",
                                        node_is_symbolic, symbolic_dims=True)),
    "pyc.Attention": attention_candidates(gemm.PORTABLE_ISA),
    # a run-time If: copies the taken branch's outputs (the other branch did not run)
    "pyc.If": (KernelCandidate("if_select", "if_select.c.j2", params=_if_select_bytes,
                               restrict_pointers=False),
               KernelCandidate("if_select_dims", "if_select.c.j2", _if_select_symbolic,
                               params=_if_select_bytes, symbolic_dims=True,
                               restrict_pointers=False),
               # ... whose branches differ in sizes: it writes the taken branch's into the dims
               KernelCandidate("if_select_sizes", "if_select.c.j2",
                               lambda n, g: bool(computed_here(n, g)), params=_if_select_bytes,
                               symbolic_dims=True, writes_dims=True, restrict_pointers=False)),
    # a run-time If's branch that could not be compiled: taking it stops the run
    "pyc.Unreachable": (KernelCandidate("unreachable", "unreachable.c.j2"),),
    "pyc.Copy": (KernelCandidate("memcpy", "copy.c.j2"),
                 KernelCandidate("memcpy_dims", "copy.c.j2", node_is_symbolic, params=_copy_bytes,
                                 symbolic_dims=True)),
    # the blocked layout (passes/assign_layouts.py): the conv's table is the target's ISA's
    "pyc.ConvBlocked": (blocked.conv_candidate(gemm.PORTABLE_ISA),),
    "pyc.Reorder": (blocked.REORDER,),
    "pyc.PoolBlocked": (blocked.POOL,),
}
# ... with the loops over images of a symbolic batch (batch_loop.py)
# ... and the kernels over symbolic spatial dims (spatial_dims.py)
CPU_KERNELS: dict[str, tuple[KernelCandidate, ...]] = spatial_dims.with_spatial_dims(
    batch_loop.with_batch_loops(STATIC_KERNELS), gemm.PORTABLE_ISA)
