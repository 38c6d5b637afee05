"""Every CPU kernel candidate, forced by a tuning database, computes what its op's numpy
reference computes, on odd sizes (1, primes, tails past the 4x16 GEMM tile). The candidate list
comes from the target's table, so a new candidate without a case here fails the coverage test."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import pyc_cli
from pyc_cli.frontend.onnx_import import import_model
from pyc_cli.ir.annotations import KernelChoice
from pyc_cli.ops import registry
from pyc_cli.ops.norm import RowwiseSoftmax
from pyc_cli.passes.tuning import KernelSignature
from pyc_cli.targets.cpu.kernels import CPU_KERNELS

F, I64 = TensorProto.FLOAT, TensorProto.INT64
RTOL, ATOL = 1e-4, 1e-5  # float32 sums in another order than numpy's float64 references


@dataclass(frozen=True)
class Case:
    candidate: str
    op: str
    inputs: tuple[tuple[int, ...], ...]  # float inputs (graph inputs, random normal)
    attrs: dict = field(default_factory=dict)
    constants: tuple[np.ndarray, ...] = ()  # operands after the float inputs (initializers)
    outputs: int = 1
    chain: tuple[str, ...] = ()  # unary ops after the node (to make a fused elementwise loop)
    order: str = ""  # operand order, "f" a float input and "c" a constant (default: floats first)


def i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


CASES = [
    Case("matmul_tiles", "MatMul", ((1, 13), (13, 17))),
    Case("matmul_tiles", "MatMul", ((3, 7, 19), (19, 33))),
    Case("matmul_naive", "MatMul", ((5, 1), (1, 3))),
    Case("matmul_packed", "MatMul", ((2, 7, 19), (19, 33))),
    Case("matmul_packed", "MatMul", ((3, 1, 13), (3, 13, 17))),
    Case("matmul_packed_const", "MatMul", ((7, 31),),
         constants=(np.random.default_rng(5).standard_normal((31, 17)).astype(np.float32),)),
    Case("matmul_packed_const", "MatMul", ((2, 1, 13),),
         constants=(np.random.default_rng(6).standard_normal((2, 13, 33)).astype(np.float32),)),
    Case("matmul_naive", "MatMul", ((2, 7, 13), (2, 13, 5))),
    Case("conv2d_im2col_gemm", "Conv", ((1, 5, 11, 7), (8, 5, 3, 3)), {"pads": [1, 1, 1, 1]}),
    Case("conv2d_im2col_gemm", "Conv", ((2, 9, 9, 13), (17, 9, 1, 1))),
    Case("conv2d_direct", "Conv", ((1, 6, 7, 5), (6, 1, 3, 3)), {"group": 6, "strides": [2, 1]}),
    Case("conv2d_depthwise", "Conv", ((1, 6, 7, 5), (6, 1, 3, 3)), {"group": 6, "strides": [2, 1]}),
    Case("conv2d_depthwise", "Conv", ((2, 3, 5, 19), (3, 1, 5, 3)),
         {"group": 3, "pads": [2, 1, 2, 1], "dilations": [1, 2]}),
    Case("conv2d_direct", "Conv", ((1, 5, 11, 7), (8, 5, 3, 3)), {"pads": [1, 1, 1, 1]}),
    Case("conv2d_dots", "Conv", ((2, 7, 3, 3), (11, 7, 3, 3)), {"pads": [1, 0, 0, 1]}),
    Case("conv2d_dots", "Conv", ((1, 8, 9), (6, 4, 5)), {"group": 2, "strides": [3]}),
    Case("conv_transpose2d_direct", "ConvTranspose", ((1, 3, 5, 7), (3, 2, 3, 3)),
         {"strides": [2, 2]}),
    Case("pool_direct", "MaxPool", ((1, 3, 11, 7),), {"kernel_shape": [3, 2], "strides": [2, 2]}),
    Case("pool_direct", "AveragePool", ((2, 3, 7, 13),),
         {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 0}),
    Case("softmax_rows", "Softmax", ((3, 1, 17),), {"axis": -1}),
    Case("softmax_rows", "LogSoftmax", ((5, 13),), {"axis": 1}),
    Case("layernorm_rows", "LayerNormalization", ((3, 13), (13,), (13,)), {"axis": -1}),
    Case("instancenorm_rows", "InstanceNormalization", ((2, 3, 7, 5), (3,), (3,))),
    Case("lrn_channels", "LRN", ((1, 7, 5, 3),), {"size": 3}),
    Case("reduce_strided", "ReduceSum", ((3, 7, 11),), {"keepdims": 0}, (i64(1),)),
    Case("reduce_strided", "ReduceMax", ((13, 1, 5),), {"keepdims": 1}, (i64(0),)),
    Case("argreduce_rows", "ArgMax", ((7, 13),), {"axis": 1}),
    Case("cumulative_rows", "CumSum", ((5, 17),), {}, (i64(1),)),
    Case("topk_insertion", "TopK", ((3, 19),), {"axis": -1}, (i64(5),), outputs=2),
    Case("strided_copy", "Transpose", ((3, 5, 7),), {"perm": [2, 0, 1]}),
    Case("strided_copy", "Slice", ((7, 13),), {}, (i64(1, 2), i64(6, 13), i64(0, 1), i64(2, 3))),
    Case("concat_blocks", "Concat", ((3, 5), (3, 7)), {"axis": 1}),
    Case("gather_rows", "Gather", ((11, 5),), {"axis": 0}, (i64(0, 10, 3, 3),)),
    Case("gather_elements", "GatherElements", ((5, 7),), {"axis": 1},
         (np.array([[0, 6], [1, 1], [6, 2], [3, 3], [0, 5]], np.int64),)),
    Case("gather_nd", "GatherND", ((5, 7, 3),), {}, (np.array([[0, 6], [4, 1]], np.int64),)),
    Case("scatter_elements", "ScatterElements", ((5, 7), (5, 2)), {"axis": 1},
         (np.array([[0, 6], [1, 2], [6, 2], [3, 4], [0, 5]], np.int64),), order="fcf"),
    Case("scatter_nd", "ScatterND", ((5, 7), (2, 7)), {}, (np.array([[4], [1]], np.int64),),
         order="fcf"),
    Case("pad_gather", "Pad", ((3, 5),), {"mode": "reflect"}, (i64(1, 2, 1, 3),)),
    Case("resize_tables", "Resize", ((1, 2, 5, 7),), {"mode": "linear"},
         (np.array([], np.float32), np.array([1, 1, 2, 0.5], np.float32))),
    Case("recurrent_rows", "GRU", ((5, 2, 3), (1, 3 * 7, 3), (1, 3 * 7, 7)), {"hidden_size": 7}),
    Case("elementwise_loop", "Add", ((3, 13), (13,)), chain=("Relu", "Sigmoid")),
    Case("memcpy", "Identity", ((7, 3),)),
]


class ForcedChoice:
    """A tuning database that names one candidate for every node of one op."""

    def __init__(self, op: str, candidate: str) -> None:
        self.op, self.candidate = op, candidate

    def lookup(self, signature: KernelSignature) -> KernelChoice | None:
        return KernelChoice(self.candidate) if signature.op == self.op else None


def _model(case: Case, rng: np.random.Generator) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    feeds = {f"x{i}": rng.standard_normal(shape).astype(np.float32)
             for i, shape in enumerate(case.inputs)}
    inits = [numpy_helper.from_array(v, f"c{i}") for i, v in enumerate(case.constants)]
    floats, consts = iter(feeds), iter(t.name for t in inits)
    order = case.order or "f" * len(feeds) + "c" * len(inits)
    names = [next(floats) if kind == "f" else next(consts) for kind in order]
    outs = [f"y{i}" for i in range(case.outputs)]
    nodes = [helper.make_node(case.op, names, outs, name="node", **case.attrs)]
    for k, op in enumerate(case.chain):
        nodes.append(helper.make_node(op, [outs[0]], [f"z{k}"], name=f"chain{k}"))
        outs[0] = f"z{k}"
    graph = helper.make_graph(nodes, "candidate",
                              [helper.make_tensor_value_info(n, F, v.shape) for n, v in feeds.items()],
                              [onnx.ValueInfoProto(name=o) for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model, strict_mode=True), feeds  # output types


def _reference(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each node of the imported graph run by its op's numpy reference."""
    graph = import_model(path)
    values: dict[str, np.ndarray] = {**graph.constants, **feeds}
    for node in graph.nodes:
        opdef = registry.get(node.op)
        inputs = [values[i] if i else None for i in node.inputs]
        results = opdef.evaluate_at(node, inputs, graph.opset) \
            if isinstance(opdef, RowwiseSoftmax) else opdef.evaluate(node, inputs)
        values.update((name, np.asarray(v)) for name, v in zip(node.outputs, results) if name)
    return values


# candidates of ops that only fusion makes, tested against numpy float64 where named
ELSEWHERE = {"attention_rows": "tests/targets/cpu/test_attention_kernel.py",
             # per ISA (masked loads: AVX2, AVX-512), whatever this machine has
             "conv2d_implicit_gemm": "tests/targets/cpu/test_implicit_conv.py",
             "conv2d_strided_gemm": "tests/targets/cpu/test_strided_conv.py",
             "conv2d_pixel_gemm": "tests/targets/cpu/test_pixel_conv.py",
             "conv2d_winograd": "tests/targets/cpu/test_winograd.py",
             "conv_transpose2d_gemm": "tests/targets/cpu/test_implicit_conv.py",
             # the blocked layout's kernels, on the blocked tensors only the layout pass makes
             **{name: "tests/targets/cpu/test_blocked_layout.py"
                for name in ("conv2d_blocked", "pool_blocked", "reorder_blocks")},
             # a run-time If's branch that could not be compiled: it only stops the run
             "unreachable": "tests/dynamic/test_unreachable_branch.py",
             # nodes with symbolic dims only (issue #15), against onnxruntime at many shapes
             "matmul_packed_const_rows": "tests/dynamic/test_dynamic_mlp.py",
             **{name: "tests/dynamic/test_dynamic_rows.py"
                for name in ("elementwise_loop_dims", "softmax_rows_dims", "layernorm_rows_dims",
                             "strided_copy_dims", "gather_rows_dims", "attention_rows_dims",
                             "concat_blocks_dims", "memcpy_dims", "reduce_strided_dims",
                             "argreduce_rows_dims")},
             # what bind_shapes leaves of a Shape subgraph: Range of a run-time count, dims
             # read as data (transformers' mask construction)
             **{name: "tests/dynamic/test_dynamic_shape_ops.py"
                for name in ("range_dims", "dim_values")},
             **{name: "tests/dynamic/test_dynamic_rows.py"
                for name in ("conv_batch_loop", "convtranspose_batch_loop", "maxpool_batch_loop",
                             "averagepool_batch_loop", "instancenormalization_batch_loop",
                             "lrn_batch_loop")},
             # symbolic spatial dims (OCR widths, det's H and W), against onnxruntime
             **{name: "tests/dynamic/test_dynamic_spatial.py"
                for name in ("conv2d_dims", "conv_transpose2d_dims", "pool_dims", "concat_dims",
                             "resize_nearest_dims")},
             # sizes computed at run time from input values (issue #15, point 2)
             **{name: "tests/dynamic/test_data_dependent.py"
                for name in ("range_runtime", "pad_runtime", "slice_runtime", "nonzero_count",
                             "topk_runtime", "split_runtime", "topk_rows_dims")},
             # Resize / Upsample by scales or sizes known at run time, or over symbolic dims
             "resize_runtime": "tests/dynamic/test_resize_runtime.py",
             # Tile by repeats computed from float input values (no value dims)
             "tile_runtime": "tests/dynamic/test_value_operands.py",
             # TopK along a symbolic axis, K constant or from an input
             **{name: "tests/dynamic/test_topk_symbolic_axis.py"
                for name in ("topk_axis_dims", "topk_axis_runtime")},
             # an If whose condition is known only at run time, against onnxruntime with both
             # condition values (static shapes and a symbolic batch)
             **{name: "tests/dynamic/test_run_time_if.py"
                for name in ("if_select", "if_select_dims", "if_select_sizes")},
             # the 2-D AffineGrid node tests (value dims), in the conformance suite
             **{name: "tests/ops/test_conformance.py"
                for name in ("gather_elements_dims", "matmul_naive_dims")}}


def test_every_cpu_candidate_has_a_case() -> None:
    declared = {c.name for candidates in CPU_KERNELS.values() for c in candidates}
    assert declared - {case.candidate for case in CASES} == set(ELSEWHERE)
    assert all((Path(__file__).parents[3] / path).is_file() for path in ELSEWHERE.values())


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.candidate}-{c.op}-{len(c.inputs[0])}d")
def test_candidate_matches_the_op_reference(case: Case, tmp_path: Path,
                                            rng: np.random.Generator) -> None:
    model, feeds = _model(case, rng)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    op = "pyc.Elementwise" if case.chain else ("pyc.Copy" if case.op == "Identity" else case.op)
    result = pyc_cli.build(path, tmp_path / "a", tuning=ForcedChoice(op, case.candidate))
    chosen = {n.ann.kernel.candidate for n in result.graph.nodes
              if n.op == op and n.ann.kernel is not None}
    assert chosen == {case.candidate}, "the forced candidate is the one that runs"
    expected = _reference(path, feeds)
    with pyc_cli.load(tmp_path / "a") as compiled:
        got = compiled.run(feeds)
    for name, value in got.items():
        want = expected[name]
        assert value.shape == want.shape, name
        if value.dtype.kind in "iub":
            np.testing.assert_array_equal(value, want, err_msg=name)
        else:
            np.testing.assert_allclose(value, want, rtol=RTOL, atol=ATOL, err_msg=name)
