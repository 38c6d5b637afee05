"""Prepared, decision-free contexts for the CPU target's kernel templates.

Templates receive a `KernelCall` and only loop over it: every number, index expression and
operand is computed here, so `codegen_templates/` holds no logic of its own.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np

from ...ir.ewprogram import Instr, is_literal, literal_parts, tensor_operand
from ...ir.graph import Graph, Node
from ...ir.run_dims import c_size, dim_names
from ...ir.symbolic import Dim, DimLike, RunTimeStride, has_dims, known_at_entry, numel
from ...ir.types import DType, TensorType
from ...ops import registry
from ...ops.movement import contiguous_strides
from ..kernel import KernelCandidate


@dataclass
class Operand:
    param: str  # C parameter name inside the kernel (X0, X1, Y, E0...)
    ctype: str
    is_output: bool = False
    restrict: bool = True


@dataclass
class ScalarInstr:
    """One program instruction with operands already rendered as target expressions."""

    dst: str
    op: str
    ctype: str
    dtype: str
    a: list[str]
    attrs: dict[str, object]
    a_dtypes: list[str] = field(default_factory=list)  # each operand's dtype ("" when unknown)
    a_literal: list[bool] = field(default_factory=list)  # each operand: an inlined literal?
    a_ctypes: list[str] = field(default_factory=list)  # each operand's C type ("" when unknown)


@dataclass
class KernelCall:
    index: int
    fn: str
    template: str
    kernel: str
    op: str
    operands: list[Operand]
    params: dict[str, object]
    out_ctype: str
    out_numel: int
    epilogue: list[ScalarInstr] = field(default_factory=list)
    result: str = "acc"
    prologue: list[ScalarInstr] = field(default_factory=list)
    prologue_result: str = ""
    args: list[str] = field(default_factory=list)  # call-site pointer expressions, operand order
    # entry checks of nodes inside a run-time If branch, checked (where the run takes the
    # branch) before this call / after it (the last call): abi.branch_checks
    checks: list[dict[str, str]] = field(default_factory=list)
    checks_after: list[dict[str, str]] = field(default_factory=list)
    restrict: str = "restrict "  # empty when the output overwrites an input (in place)
    # the kernel reads the model's run-time dims (issue #15) from a `dims` parameter
    dims: bool = False
    # ... and writes the dims its node computes into it (KernelCandidate.writes_dims)
    writes_dims: bool = False
    # C condition under which the call runs (a branch of a run-time If); empty: always
    guard: str = ""


def c_literal(dtype: DType, value: float | int) -> str:
    if dtype is DType.BF16:  # its bits (a C struct on the CPU, a float on CUDA: PYC_BF16)
        bits = int(np.asarray(float(value), np.float32).astype(ml_dtypes.bfloat16).view(np.uint16))
        return f"PYC_BF16(0x{bits:04x}u)"
    if dtype.is_float:
        number = float(value)
        if math.isnan(number):
            return "NAN"
        if math.isinf(number):
            return "INFINITY" if number > 0 else "(-INFINITY)"
        text = repr(number)
        return f"{text}f" if dtype is DType.F32 else text
    if dtype is DType.BOOL:
        return "1" if value else "0"
    number = int(value)
    if dtype is DType.I64:
        # the most negative int64 has no literal of its own in C
        return "(-INT64_C(9223372036854775807) - 1)" if number == -(2**63) else f"INT64_C({number})"
    if dtype in (DType.U32, DType.U64):
        return f"UINT64_C({number})" if dtype is DType.U64 else f"{number}u"
    return str(number)


def c_params(value: object) -> object:
    """Kernel params with every typed number (`registry.Scalar`, also inside lists and dicts)
    printed as a C literal; containers without one are returned as they are."""
    if isinstance(value, registry.Scalar):
        return c_literal(value.dtype, value.value)
    if isinstance(value, list):
        items = [c_params(v) for v in value]
        return items if any(a is not b for a, b in zip(items, value)) else value
    if isinstance(value, dict):
        entries = {k: c_params(v) for k, v in value.items()}
        return entries if any(entries[k] is not value[k] for k in value) else value
    return value


Stride = DimLike | RunTimeStride


def index_expression(coords: list[str], strides: list[Stride],
                     names: Mapping[str, str] | None = None) -> str:
    """`c0*s0 + c1*s1 ...` with zero strides dropped; "0" when all are zero. A symbolic stride
    (a Dim) is written over the run-time dims `names` (run_dims.c_names), a RunTimeStride as
    its conditional."""
    terms = [c if _is_one(s) else f"{c}*{_stride_c(s, names)}"
             for c, s in zip(coords, strides)
             if isinstance(s, (Dim, RunTimeStride)) or s != 0]
    return " + ".join(terms) if terms else "0"


def _stride_c(stride: Stride, names: Mapping[str, str] | None) -> str:
    return str(stride) if names is None else c_size(stride, names)


def _is_one(stride: Stride) -> bool:
    return not isinstance(stride, (Dim, RunTimeStride)) and stride == 1


def run_time_tasks(count: DimLike, per_task: int, names: Mapping[str, str]) -> str | int:
    """ceil(count / per_task) as a C expression where `count` is symbolic (an int otherwise)."""
    if not isinstance(count, Dim):
        return -(-int(count) // per_task)
    return f"(({c_size(count, names)} + {per_task - 1}) / {per_task})"


def broadcast_strides(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> list[Stride]:
    """Element strides of `shape` when read at the coordinates of `out_shape` (0 = broadcast;
    a RunTimeStride where a symbolic dim other than the output's may be 1 at run time)."""
    padded = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    strides = contiguous_strides(padded)
    return [RunTimeStride(d, s) if isinstance(d, Dim) and d != o
            else 0 if d == 1 and o != 1 else s for d, o, s in zip(padded, out_shape, strides)]


def render_program(program: list[Instr], operand_expr: list[str], operand_types: list[DType],
                   acc: str) -> list[ScalarInstr]:
    """Instructions with rendered operands. Each tensor operand is loaded once, into a const
    local, before the instruction that first reads it: a load is never inside a conditional
    (Where's arms), which GCC 12 vectorized at -O3 with 512-bit masked loads that read the
    wrong elements (fuzz seed 468933627); unconditional loads let it blend instead."""
    rendered: list[ScalarInstr] = []
    loaded: dict[int, str] = {}
    local_dtypes: dict[str, DType] = {}
    for instr in program:
        args, arg_dtypes, arg_ctypes = [], [], []
        literal_args = [is_literal(arg) for arg in instr.args]
        for arg in instr.args:
            k = tensor_operand(arg)
            if is_literal(arg):
                args.append(c_literal(*literal_parts(arg)))
                arg_dtypes.append(literal_parts(arg)[0].value)
                arg_ctypes.append(literal_parts(arg)[0].c_type)
            elif k is not None:
                if k not in loaded:
                    loaded[k] = f"in{k}_v"
                    dtype = operand_types[k]
                    rendered.append(ScalarInstr(loaded[k], "Load", dtype.c_type, dtype.value,
                                                [operand_expr[k]], {}))
                args.append(loaded[k])
                arg_dtypes.append(operand_types[k].value)
                arg_ctypes.append(operand_types[k].c_type)
            else:
                args.append(acc if arg == "acc" else arg)
                known = local_dtypes.get(arg)
                arg_dtypes.append(known.value if known else "")
                arg_ctypes.append(known.c_type if known else "")
        # float attributes are emitted as C literals (a NaN or infinite alpha is NAN / INFINITY,
        # not Python's "nan" / "inf", which C does not know)
        attrs: dict[str, object] = {k: c_literal(DType.F64, v) if type(v) is float else v
                                    for k, v in instr.attrs.items()}
        for key in ("min", "max"):
            if key in attrs:
                attrs[f"{key}_c"] = c_literal(DType.F64, float(instr.attrs[key]))  # type: ignore[arg-type]
        rendered.append(ScalarInstr(instr.dst, instr.op, instr.dtype.c_type, instr.dtype.value,
                                    args, attrs, arg_dtypes, literal_args, arg_ctypes))
        local_dtypes[instr.dst] = instr.dtype
    return rendered


# Kernels whose epilogue is a loop of its own over contiguous outputs, where named bounds pay
# (PP-OCR rec at 1 thread: depthwise convs 7-9% faster, implicit-GEMM convs 1-17%). Not the
# GEMM-like kernels that run their epilogue inside the register tiles' loop nest: there the
# bounds, no longer constants GCC can reload, stay live in two vector registers across the
# micro-kernel, and GCC spilled its B vectors instead (pixel convs 2x slower, im2col 1.35x).
# The blocked conv's and Winograd's epilogue loops (vectorized) gained nothing measurable from
# them on ResNet-50's ReLU epilogues (0.99-1.02), so they are left out too.
NAMED_BOUNDS_TEMPLATES = frozenset({"conv2d_depthwise.c.j2", "conv2d_implicit.c.j2",
                                    "elementwise.c.j2"})


def name_constant_bounds(call: KernelCall) -> None:
    """Name each constant float bound of a Clip (given, or the type's limit) and Relu's zero in
    the call's programs (attrs lo_name / hi_name): kernel.c.j2 defines them once per kernel,
    opaque to the compiler, so that GCC vectorizes the clamps as max / min instructions (with a
    constant it sees, GCC 12 emits compares and blends: c/scalar_ops.j2's Clip says why).
    Only in NAMED_BOUNDS_TEMPLATES."""
    if call.template not in NAMED_BOUNDS_TEMPLATES:
        return
    for scope, program in (("e", call.epilogue), ("p", call.prologue)):
        for instr in program:
            if instr.dtype not in ("f32", "f64") or instr.op not in ("Clip", "Relu"):
                continue
            sides = ("lo", "hi") if instr.op == "Clip" else ("lo",)
            for side, key in zip(sides, ("min_arg", "max_arg")):
                index = int(instr.attrs.get(key, -1))  # type: ignore[call-overload]
                if index < 0 or instr.a_literal[index]:
                    instr.attrs[f"{side}_name"] = f"pyc_{scope}{instr.dst}_{side}"


def coalesce(out_shape: tuple[int, ...], stride_sets: Sequence[Sequence[Stride]]
             ) -> tuple[list[int], list[list[Stride]]]:
    """Merge adjacent dims that every operand walks contiguously, so loops nest less deeply
    (never across a run-time stride: whether it is contiguous is known at run time only)."""
    dims = list(out_shape)
    sets = [list(s) for s in stride_sets]
    d = len(dims) - 2
    while d >= 0:
        if not any(isinstance(x, RunTimeStride) for s in sets for x in s[d:d + 2]) and \
                all(s[d] == s[d + 1] * dims[d + 1] for s in sets):  # type: ignore[operator]
            dims[d] *= dims[d + 1]
            del dims[d + 1]
            for s in sets:
                s[d] = s[d + 1]
                del s[d + 1]
        d -= 1
    return dims, sets


# ---------------------------------------------------------------- parallel tasks

# Parallel tasks (the threading contract: each at least ~50 us of work, else one thread):
# a row kernel's task covers at least this many elements (softmax ~0.35 ns an element,
# layernorm ~0.15, on one core of the reference machine) ...
SOFTMAX_TASK_ELEMENTS = 128 * 1024
LAYERNORM_TASK_ELEMENTS = 256 * 1024
# ... an elementwise task at least this many output bytes, and an elementwise loop runs on
# threads only from ELEMENTWISE_PARALLEL_BYTES on (a cheap program is bound by memory, ~10 GB/s)
ELEMENTWISE_TASK_BYTES = 64 * 1024
ELEMENTWISE_PARALLEL_BYTES = 1024 * 1024


def row_split(rows: int, row: int, min_elements: int) -> dict[str, object]:
    """Whole rows as equal tasks of at least `min_elements` each (as many as fit); `parallel`
    when there are two or more (PYC_PARALLEL_FOR)."""
    tasks = max(1, min(rows, rows * row // max(1, min_elements)))
    rows_per_task = -(-rows // tasks) if rows else 1
    tasks = -(-rows // rows_per_task) if rows else 0
    return {"tasks": tasks, "rows_per_task": rows_per_task, "parallel": tasks >= 2}


def elementwise_split(dims: list[int], itemsize: int) -> dict[str, object]:
    """The outermost loop of an elementwise nest cut into blocks of at least
    ELEMENTWISE_TASK_BYTES of output, as parallel tasks when the whole loop is large enough.
    Symbolic dims count at their upper bounds (the split is the one for the largest shape; the
    caller reads the task count at run time from the block)."""
    inner = int(math.prod(dims[1:]))
    total = int(math.prod(dims)) * itemsize
    if total < ELEMENTWISE_PARALLEL_BYTES:
        return {"tasks": 1, "block": dims[0], "parallel": False}
    block = max(1, -(-ELEMENTWISE_TASK_BYTES // (inner * itemsize)))
    tasks = -(-dims[0] // block)
    return {"tasks": tasks, "block": block, "parallel": tasks >= 2}


# ---------------------------------------------------------------- per-kind preparation


def elementwise_params(graph: Graph, node: Node, names: Mapping[str, str] | None = None
                       ) -> tuple[dict[str, object], list[ScalarInstr], str]:
    """The loop nest's dims, index expressions and task split; with `names` (a kernel reading
    run-time dims), symbolic dims, strides and the task count are C expressions over them."""
    out_type = graph.types[node.outputs[0]]
    shape = out_type.shape
    stride_sets = [contiguous_strides(shape)] + [
        broadcast_strides(graph.types[v].shape, shape) for v in node.inputs]
    dims, sets = coalesce(shape, stride_sets)
    coords = [f"i{d}" for d in range(len(dims))]
    exprs = [f"X{k}[{index_expression(coords, s, names)}]" for k, s in enumerate(sets[1:])]
    types = [graph.types[v].dtype for v in node.inputs]
    program = render_program(node.ann.program, exprs, types, "")
    dims = dims or [1]  # a scalar: one iteration, its index expressions are all "0"
    params = {"dims": dims, "out_index": index_expression(coords, sets[0], names),
              **elementwise_split(dims, out_type.dtype.itemsize)}
    if names is not None:  # sized for the upper bounds, looping to the run-time sizes
        params["dims"] = [c_size(d, names) for d in dims]
        if int(params["tasks"]) > 1:  # type: ignore[call-overload]
            params["tasks"] = run_time_tasks(dims[0], int(params["block"]), names)  # type: ignore[call-overload]
        variants = _innermost_variants(node, sets[1:], coords, types, names)
        if variants:
            params["variants"] = variants
        # an operand dim a kernel computed earlier in this run (NonZero's count), against an
        # output dim known at entry: the entry point could not check it, this kernel does
        late = [f"{c_size(d, names)} == 1 || {c_size(d, names)} == {c_size(o, names)}"
                for v in node.inputs for d, o in zip(reversed(graph.types[v].shape),
                                                      reversed(shape))
                if isinstance(d, Dim) and d != o and not known_at_entry([d])]
        if late:
            params["run_checks"] = list(dict.fromkeys(late))
    return params, program, program[-1].dst


# at most this many distinct run-time strides along the innermost loop get a loop of their own
# per case (2^count loops): more stay conditional in the index expressions
MAX_VERSIONED_STRIDES = 2


def _innermost_variants(node: Node, sets: list[list[Stride]], coords: list[str],
                        types: list[DType], names: Mapping[str, str]) -> list[dict[str, object]]:
    """Where an operand's innermost stride is a RunTimeStride (a dim that may be 1 at run
    time), the loop nest once per case of those dims (1: stride 0, else the plain stride), so
    each loop has constant innermost strides that the compiler vectorizes; the run picks the
    one its sizes take. [] where no innermost stride is run-time, or more than
    MAX_VERSIONED_STRIDES distinct ones are."""
    sizes = list(dict.fromkeys(s[-1].size for s in sets if s and isinstance(s[-1], RunTimeStride)))
    if not sizes or len(sizes) > MAX_VERSIONED_STRIDES:
        return []
    variants: list[dict[str, object]] = []
    for case in itertools.product((True, False), repeat=len(sizes)):
        ones = {size for size, one in zip(sizes, case) if one}
        fixed = [s[:-1] + [_fixed(s[-1], ones)] if s else s for s in sets]
        exprs = [f"X{k}[{index_expression(coords, s, names)}]" for k, s in enumerate(fixed)]
        program = render_program(node.ann.program, exprs, types, "")
        cond = " && ".join(f"{c_size(size, names)} {'==' if one else '!='} 1"
                           for size, one in zip(sizes, case))
        variants.append({"cond": cond, "program": program, "result": program[-1].dst})
    return variants


def _fixed(stride: Stride, ones: set[Dim]) -> Stride:
    """An innermost RunTimeStride as the constant it is where its size is 1 (`ones`) or not."""
    if not isinstance(stride, RunTimeStride):
        return stride
    return 0 if stride.size in ones else stride.stride


def _fused_program(graph: Graph, lines: list[Instr], operands: list[str], prefix: str,
                   shape: tuple[int, ...], coords: list[str], acc: str,
                   flat: list[str] | None = None, names: Mapping[str, str] | None = None
                   ) -> tuple[list[ScalarInstr], str]:
    """Render a fused program whose tensor operands (kernel parameters prefix0, prefix1, ...)
    are read at `coords`, the coordinates of a tensor of `shape`, through broadcast strides.
    `flat` = [outer, inner, name]: the kernel also has `name` = outer * extent(inner) + inner,
    which an operand contiguous over both dims is indexed by (an index affine in it)."""
    def index(value: str) -> str:
        strides = broadcast_strides(graph.types[value].shape, shape)
        if flat is not None:
            outer, inner = coords.index(flat[0]), coords.index(flat[1])
            s_outer, s_inner = strides[outer], strides[inner]
            if not isinstance(s_inner, RunTimeStride) and \
                    not isinstance(s_outer, RunTimeStride) and s_inner and \
                    s_outer == s_inner * shape[inner]:
                kept = [(c, s) for d, (c, s) in enumerate(zip(coords, strides))
                        if d not in (outer, inner)] + [(flat[2], s_inner)]
                return index_expression([c for c, _ in kept], [s for _, s in kept], names)
        return index_expression(coords, strides, names)

    exprs = [f"{prefix}{k}[{index(v)}]" for k, v in enumerate(operands)]
    types = [graph.types[v].dtype for v in operands]
    program = render_program(lines, exprs, types, acc)
    return program, program[-1].dst


def epilogue_program(graph: Graph, node: Node, coords: list[str],
                     shape: tuple[int, ...] | None = None, flat: list[str] | None = None,
                     names: Mapping[str, str] | None = None) -> tuple[list[ScalarInstr], str]:
    """The program a kernel applies to each accumulator (`acc`) as it stores an output (or, where
    `shape` says, an intermediate of that shape: attention's scores); `flat` as in
    _fused_program."""
    lines = node.ann.epilogue
    if not lines:
        return [], "acc"
    return _fused_program(graph, lines, registry.fused_inputs(node)[1], "E",
                          shape or graph.types[node.outputs[0]].shape, coords, "acc", flat,
                          names)


def prologue_program(graph: Graph, node: Node, coords: list[str], flat: list[str] | None = None,
                     names: Mapping[str, str] | None = None) -> tuple[list[ScalarInstr], str]:
    """The elementwise program a kernel applies to its input 0 as it reads it, with operands
    indexed at the input's coordinates; `flat` and `names` as in _fused_program."""
    lines = node.ann.prologue
    if not lines:
        return [], ""
    return _fused_program(graph, lines, registry.fused_inputs(node)[2], "P",
                          graph.types[node.inputs[0]].shape, coords, "", flat, names)


def operands_for(graph: Graph, node: Node) -> list[Operand]:
    own, epilogue, prologue = registry.fused_inputs(node)
    inplace = node.ann.inplace_operand
    operands = []
    for k, value in enumerate(own):
        if value:
            operands.append(Operand(f"X{k}", graph.types[value].dtype.c_type,
                                    restrict=inplace is None))
    for k, value in enumerate(epilogue):
        operands.append(Operand(f"E{k}", graph.types[value].dtype.c_type, restrict=inplace is None))
    for k, value in enumerate(prologue):
        operands.append(Operand(f"P{k}", graph.types[value].dtype.c_type))
    for k, value in enumerate(node.outputs):
        if value:
            name = "Y" if k == 0 else f"Y{k}"
            operands.append(Operand(name, graph.types[value].dtype.c_type, True,
                                    restrict=inplace is None))
    return operands


def operand_values(graph: Graph, node: Node) -> list[tuple[str, str]]:
    """(kernel parameter, value) of each pointer operand, as operands_for names them."""
    own, epilogue, prologue = registry.fused_inputs(node)
    pairs = [(f"X{k}", v) for k, v in enumerate(own) if v]
    pairs += [(f"E{k}", v) for k, v in enumerate(epilogue)]
    pairs += [(f"P{k}", v) for k, v in enumerate(prologue)]
    return pairs + [("Y" if k == 0 else f"Y{k}", v) for k, v in enumerate(node.outputs) if v]


def image_kernel_call(graph: Graph, node: Node, candidate: KernelCandidate) -> KernelCall:
    """The static kernel of one image (targets/cpu/batch_loop.py), `graph` typing the node's
    values as one image; its function is named after the loop's (kernel_call)."""
    call = kernel_call(graph, node, 0, candidate)
    if candidate.workspace is not None:  # as CpuTarget.kernel_calls gives the loop its WS
        ctype = graph.types[node.outputs[0]].dtype.c_type
        call.operands.append(Operand("WS", ctype, is_output=True))
    if not candidate.restrict_pointers:
        call.restrict = ""
        for operand in call.operands:
            operand.restrict = False
    return call


def kernel_call(graph: Graph, node: Node, index: int, candidate: KernelCandidate) -> KernelCall:
    opdef = registry.get(node.op)
    out_type: TensorType = graph.types[node.outputs[0]]
    call = KernelCall(index, f"k{index}_{node.op.split('.')[-1].lower()}", candidate.template,
                      node.ann.kernel_name, node.op, operands_for(graph, node), {},
                      out_type.dtype.c_type, out_type.numel, dims=candidate.symbolic_dims,
                      writes_dims=candidate.writes_dims)
    names = dim_names(graph) if candidate.symbolic_dims else None
    if names is not None:  # a size some templates print (reduce.c.j2's output loops)
        call.out_numel = c_size(out_type.numel, names)  # type: ignore[assignment]
    if node.ann.inplace_operand is not None:
        call.restrict = ""
    if node.op == "pyc.Elementwise":
        call.params, call.epilogue, call.result = elementwise_params(graph, node, names)
        return call
    params = opdef.kernel_params(node, graph)
    params.update(candidate.template_params(node, graph, params))
    image = params.get("image_call")
    if isinstance(image, KernelCall):  # a loop over images: its static kernel and strides
        image.fn = f"{call.fn}_image"
        params["image_strides"] = {param: int(numel(graph.types[v].shape[1:]))
                                   for param, v in operand_values(graph, node)
                                   if has_dims(graph.types[v].shape)}
    params.update(node.ann.kernel.params if node.ann.kernel is not None else {})
    call.params = {key: c_params(value) for key, value in params.items()}
    call.params.setdefault("itemsize", out_type.dtype.itemsize)
    coords = call.params.get("out_coords")
    if coords is not None:
        shape = call.params.get("epilogue_shape")
        flat = call.params.get("flat_coords")
        call.epilogue, call.result = epilogue_program(
            graph, node, list(coords), tuple(shape) if shape is not None else None,  # type: ignore[arg-type]
            list(flat) if flat else None, names)  # type: ignore[call-overload, arg-type]
    in_coords = call.params.get("in_coords")
    if in_coords is not None:
        flat_in = call.params.get("flat_in_coords")
        call.prologue, call.prologue_result = prologue_program(
            graph, node, list(in_coords), list(flat_in) if flat_in else None, names)  # type: ignore[arg-type, call-overload]
    return call

