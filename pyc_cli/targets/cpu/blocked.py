"""The CPU kernels of the blocked channel layout (ops/layout.py; passes/assign_layouts.py
chooses where it runs): the layout reorder, the blocked direct convolution
(conv2d_blocked.c.j2) and the blocked pools. A block is one vector of the ISA (16 float32
lanes on AVX-512, 8 on AVX2, 4 on NEON and the portable vectors): a pixel's channels of one
block are one vector load or store."""

from __future__ import annotations

import functools

from ...ir.graph import Graph, Node
from ...ir.types import DType
from ...ops import registry
from ...planning import weights
from ..kernel import KernelCandidate
from . import gemm
from .team import planned_team

Params = dict[str, object]

# tasks the conv's split aims at: 4 a thread of the planned team (8 on the 2-core CI-class
# machine), for the guided schedule to even out
CONV_TASKS_PER_THREAD = 4
# the cost of the blocked conv per flop (cost units: kernels.py, the implicit GEMM's 0.25 a
# flop at full lanes; about 21.6 M units a millisecond on one Zen 4 core, from the implicit
# GEMM's 1.19 ms on ResNet-50's 64 -> 256 1x1 on 56x56). Measured there at 1 thread (medians
# of 3 interleaved rounds of 10 runs, 6 Dec): 0.19-0.21 units a flop on ResNet-50's 1x1 convs
# and 0.187 on its 3x3 ones (~115 GFLOP/s), 1.02-1.29x faster than the implicit, strided and
# pixel-major GEMMs and 0.5-0.8x Winograd's speed on the 3x3 stride-1 convs
BLOCKED_COST = 0.19
# cost units a reorder costs per element: a load and a store, one side strided (measured
# 0.1-0.2 ns an element on ResNet-50's maps at 1 thread, both directions lanes innermost)
REORDER_COST = 4.0
# a stride-1 conv whose output map has at least this many pixels: the implicit GEMM's vectors
# over pixels are full there, and the blocked conv measured 0.79-1.04x its speed on ResNet-50's
# 56x56 and 28x28 1x1 convs with a fused epilogue (1.28x without: its epilogue runs per lane
# from a tile), so it is priced a little above the implicit GEMM (BLOCKED_LARGE_MAP_COST)
BLOCKED_LARGE_MAP = 28 * 28
BLOCKED_LARGE_MAP_COST = 0.26
# a reorder goes to threads from this many elements (~50 us on one core)
REORDER_PARALLEL_ELEMENTS = 128 * 1024


def block_lanes(isa: str, itemsize: int = 4) -> int:
    """Channels per block for float32 code on `isa`: one vector."""
    return gemm.lanes(isa, itemsize)


def _vectors(isa: str, blocks: int) -> int:
    """Blocks of output channels per panel: 2 (one broadcast feeds 2 FMAs) where they pair."""
    return 2 if blocks % 2 == 0 else 1


def register_rows(isa: str, vectors: int) -> int:
    """The most pixels a register block holds: accumulators, the V weight vectors and the
    broadcast fill the registers (AVX-512 and NEON 32, AVX2 and the vectors 16), at most 14."""
    return min(14, (gemm.ISAS[isa].registers - vectors - 1) // vectors)


def column_segments(v: dict[str, int], most: int) -> list[dict[str, object]]:
    """An output row in register blocks of at most `most` pixels (as few blocks as that
    allows, all but the last of one size), as segments: runs of blocks whose taps all read
    inside the input (`count` blocks from column `first`, a loop), and single border blocks
    with, per kw, the rows of the block whose tap reads inside (`valid`): a border pixel
    skips the taps that read padding, not its register block."""
    ow = v["OW"]
    blocks = -(-ow // most)
    size = -(-ow // blocks)
    segments: list[dict[str, object]] = []
    for first in range(0, ow, size):
        rows = min(size, ow - first)
        valid = [[r for r in range(rows)
                  if 0 <= (first + r) * v["SW"] - v["PW"] + kw * v["DW"] < v["W"]]
                 for kw in range(v["KW"])]
        clean = all(len(taps) == rows for taps in valid)
        last = segments[-1] if segments else None
        if clean and last is not None and last["loop"] and last["R"] == rows:
            last["count"] = int(last["count"]) + 1  # type: ignore[call-overload]
            continue
        segments.append({"loop": clean, "first": first, "count": 1, "R": rows,
                         "valid": valid})
    return segments


def conv_geometry(isa: str, node: Node, graph: Graph) -> Params:
    op = registry.get(node.op).kernel_params(node, graph)
    v = {k: int(op[k]) for k in ("N", "C", "OC", "H", "W", "OH", "OW", "KH", "KW", "SH", "SW",  # type: ignore[call-overload]
                                 "DH", "DW", "PH", "PW", "BL")}
    bl = v["BL"]
    ocb = v["OC"] // bl
    vectors = _vectors(isa, ocb)
    panels = ocb // vectors
    flops = registry.get(node.op).flops(node, graph)
    # the larger of an image's input and the weights is read once: panels inside a row where
    # the input is larger (each row's input stays in cache while every panel passes; ResNet-50's
    # 256 -> 64 1x1 on 56x56 re-streamed its 3.2 MB input once a panel), else panels outside
    inner = v["C"] * v["H"] * v["W"] > v["OC"] * v["C"] * v["KH"] * v["KW"]
    outer = 1 if inner else panels
    # row blocks: enough tasks for the team where the work allows (each >= ~50 us)
    wanted = max(1, min(CONV_TASKS_PER_THREAD * planned_team(), flops // gemm.TASK_FLOPS))
    ohb = max(1, min(v["OH"], -(-wanted // (v["N"] * outer))))
    rh = -(-v["OH"] // ohb)
    ohb = -(-v["OH"] // rh)
    tasks = v["N"] * outer * ohb
    return {"CB": v["C"] // bl, "OCB": ocb, "V": vectors, "NR": vectors * bl, "panels": panels,
            "segments": column_segments(v, register_rows(isa, vectors)), "panels_inner": inner,
            "OHB": ohb, "RH": rh, "tasks": tasks,
            "parallel": tasks >= 2 and flops >= gemm.PARALLEL_MIN_FLOPS}


def _conv_applies(isa: str):  # noqa: ANN202 (a closure per ISA)
    def applies(node: Node, graph: Graph) -> bool:
        """float32 in blocks of the ISA's lanes, no prologue, the weight a constant only this
        conv reads (the weights file holds it packed)."""
        x = graph.types[node.inputs[0]]
        return x.dtype is DType.F32 and x.shape[-1] == block_lanes(isa) \
            and not node.ann.prologue and gemm.sole_constant_reader(node, graph, 1)
    return applies


def _conv_params(isa: str):  # noqa: ANN202 (a closure per ISA)
    def params(node: Node, graph: Graph, op: Params) -> Params:
        return {**conv_geometry(isa, node, graph), "vops": gemm.vector_ops(isa, "float", 4),
                # the epilogue's coordinates: the blocked output's [N, OC/BL, OH, OW, BL]; it
                # runs over a row's pixels and lanes as one run, owl = ow * BL + l, by which an
                # operand of the output's layout is indexed (whole vectors)
                "out_coords": ["n", "ocb", "oh", "ow", "l"], "flat_coords": ["ow", "l", "owl"]}
    return params


def _conv_transform(isa: str):  # noqa: ANN202 (a closure per ISA)
    def transform(node: Node, graph: Graph, index: int) -> str | None:
        if index != 1:
            return None
        g = conv_geometry(isa, node, graph)
        return weights.conv_blocked_name(block_lanes(isa), int(g["NR"]))  # type: ignore[call-overload]
    return transform


def _conv_cost_scale(node: Node, graph: Graph) -> float:
    """BLOCKED_LARGE_MAP_COST / BLOCKED_COST on a large map of a stride-1 conv, else 1."""
    op = registry.get(node.op).kernel_params(node, graph)
    v = {k: int(op[k]) for k in ("OH", "OW", "SH", "SW")}  # type: ignore[call-overload]
    large = v["OH"] * v["OW"] >= BLOCKED_LARGE_MAP and (v["SH"], v["SW"]) == (1, 1)
    return BLOCKED_LARGE_MAP_COST / BLOCKED_COST if large else 1.0


@functools.cache  # one object per ISA: the target's table and CPU_KERNELS share it
def conv_candidate(isa: str) -> KernelCandidate:
    return KernelCandidate(
        "conv2d_blocked", "conv2d_blocked.c.j2", _conv_applies(isa), BLOCKED_COST,
        takes_epilogue=True, params=_conv_params(isa), cost_scale=_conv_cost_scale,
        constant_transform=_conv_transform(isa))


def _reorder_params(node: Node, graph: Graph, op: Params) -> Params:
    return {"parallel": graph.types[node.outputs[0]].numel >= REORDER_PARALLEL_ELEMENTS
            and int(op["N"]) * int(op["CB"]) >= 2}  # type: ignore[call-overload]


REORDER = KernelCandidate("reorder_blocks", "reorder.c.j2", cost_factor=REORDER_COST,
                          params=_reorder_params)


# the blocked pool vectorizes over a block's lanes: about a quarter of the plain pool's
# scalar cost an output (against pool_direct's 1 a flop-equivalent)
POOL_COST = 0.25


def _pool_applies(node: Node, graph: Graph) -> bool:
    """A 2-D pool with one output whose window is not the whole input (MaxPool's mlas_global
    rule reduces lanes of a flat input, which a blocked layout does not keep)."""
    op = registry.get(node.op).kernel_params(node, graph)
    return graph.types[node.inputs[0]].rank == 5 and len([o for o in node.outputs if o]) == 1 \
        and op.get("rule") != "mlas_global"


def _pool_params(node: Node, graph: Graph, op: Params) -> Params:
    return {"parallel": registry.get(node.op).flops(node, graph) * 4 >= gemm.PARALLEL_MIN_FLOPS
            and int(op["N"]) * int(op["C"]) // int(op["BL"]) >= 2}  # type: ignore[call-overload]


POOL = KernelCandidate("pool_blocked", "pool_blocked.c.j2", _pool_applies, POOL_COST,
                       params=_pool_params)
