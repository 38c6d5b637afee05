"""One-node models of every op the CUDA target runs through the generic kernel (the CPU target's
kernel body on one GPU thread, targets/cuda/kernels.py: GENERIC_BODIES) or the parallel
kernels that took some of them over (Pad, ArgMax / ArgMin, float32 InstanceNormalization,
Resize / Upsample, TopK, LSTM / GRU / RNN), plus the element types the float32 CUDA kernels
leave to it (float64 Softmax, MaxPool and MatMul, integer reductions),
shared by the emulated tests
(test_cuda_generic.py) and the GPU tests (test_cuda_gpu.py). Each case makes fresh random
weights and inputs per call; indices are drawn inside their range (negative ones included)
where the op defines them, and scatter indices without duplicates where the op's result would
depend on the order of updates. References: onnxruntime, except CumProd (onnxruntime 1.23 has
no kernel for it) and float64 InstanceNormalization (nor for that): numpy in float64 (that one
at rtol 1e-10, atol 1e-12). Tolerances: float32 rtol 1e-4, atol 1e-5 (recurrent cells,
resizes and normalisations atol 1e-4: sums in another order than onnxruntime's); integer
outputs exactly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from helpers import init, rand
from onnx import TensorProto, helper

Feeds = dict[str, np.ndarray]
F32, F64, I32, I64 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT64
GENERIC = "cuda_generic"


@dataclass(frozen=True)
class GenericCase:
    name: str
    op: str  # the node under test
    kernel: str  # the CUDA kernel its node must get
    make: Callable[[np.random.Generator], onnx.ModelProto]
    feeds: Callable[[np.random.Generator], Feeds]
    rtol: float = 1e-4
    atol: float = 1e-5
    # None: onnxruntime; else the expected outputs (by name) from the feeds and the model
    reference: Callable[[Feeds, onnx.ModelProto], dict[str, np.ndarray]] | None = field(
        default=None, compare=False)


def one_node(op: str, inputs: list[tuple[str, tuple[int, ...], int]], outputs: list[str],
             inits: list[onnx.TensorProto] | None = None, opset: int = 18,
             **attrs: object) -> onnx.ModelProto:
    """A model of one `op` node over graph inputs (name, shape, element type) and initializers
    (their names follow the inputs in the node's input list; "" skips an optional input); the
    outputs' types come from ONNX shape inference."""
    inits = inits or []
    names = [name for name, _, _ in inputs]
    node_inputs = names + [t.name for t in inits]
    node = helper.make_node(op, node_inputs, outputs, **attrs)
    return graph_model([node], inputs, outputs, [t for t in inits if t.name], opset)


def graph_model(nodes: list[onnx.NodeProto], inputs: list[tuple[str, tuple[int, ...], int]],
                outputs: list[str], inits: list[onnx.TensorProto], opset: int = 18,
                name: str = "generic") -> onnx.ModelProto:
    """A checked model of `nodes` over graph inputs (name, shape, element type) and
    initializers; the outputs' types come from ONNX shape inference."""
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, t, list(s))
                                            for n, s, t in inputs],
                              [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None)
                               for o in outputs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="pyc-tests")
    model.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    onnx.checker.check_model(model)
    return model


def normal(**shapes: tuple[int, ...]) -> Callable[[np.random.Generator], Feeds]:
    return lambda rng: {name: rand(rng, *shape) for name, shape in shapes.items()}


def i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


# ---------------------------------------------------------------- the cases

def _argmin_ints(rng: np.random.Generator) -> Feeds:
    return {"x": rng.integers(-3, 4, (4, 9), dtype=np.int64)}  # ties: select_last_index decides


def _conv_transpose(rng: np.random.Generator) -> onnx.ModelProto:
    return one_node("ConvTranspose", [("x", (1, 3, 5, 6), F32)], ["y"],
                    [init("w", rand(rng, 3, 4, 3, 3, scale=0.3)), init("b", rand(rng, 4))],
                    strides=[2, 2], pads=[1, 0, 1, 1], output_padding=[1, 0])


def _cumprod_reference(feeds: Feeds, model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Inclusive product along axis 1, reversed: numpy in float64."""
    x = feeds["x"].astype(np.float64)
    return {"y": np.flip(np.cumprod(np.flip(x, 1), axis=1), 1)}


def _gather_elements_feeds(rng: np.random.Generator) -> Feeds:
    return {"x": rand(rng, 4, 5), "i": rng.integers(-5, 5, (4, 3), dtype=np.int64)}


def _gather_nd_feeds(rng: np.random.Generator) -> Feeds:
    rows = rng.integers(-3, 3, (2, 3, 1))
    cols = rng.integers(-4, 4, (2, 3, 1))
    return {"x": rand(rng, 3, 4, 5), "i": np.concatenate([rows, cols], -1).astype(np.int64)}


def _gather_nd_batch_feeds(rng: np.random.Generator) -> Feeds:
    return {"x": rand(rng, 2, 3, 4), "i": rng.integers(0, 3, (2, 2, 1), dtype=np.int64)}


def _scatter_elements_feeds(rng: np.random.Generator) -> Feeds:
    # each column a permutation of the rows: no element is written twice
    idx = np.stack([rng.permutation(4) for _ in range(5)], 1).astype(np.int64)
    return {"x": rand(rng, 4, 5), "i": idx, "u": rand(rng, 4, 5)}


def _scatter_add_feeds(rng: np.random.Generator) -> Feeds:
    return {"x": rand(rng, 4, 5), "i": rng.integers(-4, 4, (3, 5), dtype=np.int64),
            "u": rand(rng, 3, 5)}


def _scatter_nd_feeds(rng: np.random.Generator) -> Feeds:
    return {"x": rand(rng, 4, 5, 6), "i": rng.permutation(4)[:3].reshape(3, 1).astype(np.int64),
            "u": rand(rng, 3, 5, 6)}


def _recurrent(op: str, hidden: int, seq: int, batch: int, size: int, directions: int,
               gates: int, **attrs: object) -> Callable[[np.random.Generator], onnx.ModelProto]:
    def make(rng: np.random.Generator) -> onnx.ModelProto:
        d, h = directions, hidden
        weights = [init("w", rand(rng, d, gates * h, size, scale=0.4)),
                   init("r", rand(rng, d, gates * h, h, scale=0.4)),
                   init("b", rand(rng, d, 2 * gates * h, scale=0.2))]
        states = [("h0", (d, batch, h), F32)] + ([("c0", (d, batch, h), F32)] if op == "LSTM" else [])
        outputs = ["y", "y_h"] + (["y_c"] if op == "LSTM" else [])
        model = one_node(op, [("x", (seq, batch, size), F32)], outputs, weights, hidden_size=h,
                         direction="bidirectional" if d == 2 else "forward", **attrs)
        # the optional sequence_lens is skipped: initial states follow it in the input list
        node = model.graph.node[0]
        node.input[:] = ["x", "w", "r", "b", "", *[name for name, _, _ in states]]
        model.graph.input.extend([helper.make_tensor_value_info(n, t, list(s)) for n, s, t in states])
        onnx.checker.check_model(model)
        return model
    return make


def _recurrent_feeds(op: str, hidden: int, seq: int, batch: int, size: int,
                     directions: int) -> Callable[[np.random.Generator], Feeds]:
    def feeds(rng: np.random.Generator) -> Feeds:
        out = {"x": rand(rng, seq, batch, size), "h0": rand(rng, directions, batch, hidden, scale=0.5)}
        if op == "LSTM":
            out["c0"] = rand(rng, directions, batch, hidden, scale=0.5)
        return out
    return feeds


def _instance_norm_reference(feeds: Feeds, model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """numpy in float64 (onnxruntime has no float64 InstanceNormalization)."""
    from onnx import numpy_helper

    scale, bias = (numpy_helper.to_array(t) for t in model.graph.initializer)
    x = feeds["x"]
    mean = x.mean(axis=2, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=2, keepdims=True)
    return {"y": (x - mean) / np.sqrt(var + 1e-5) * scale[None, :, None] + bias[None, :, None]}


def _f64(*shape: int) -> Callable[[np.random.Generator], Feeds]:
    return lambda rng: {"x": rng.standard_normal(shape)}


CASES: list[GenericCase] = [
    GenericCase("argmax", "ArgMax", "cuda_argreduce",
                lambda rng: one_node("ArgMax", [("x", (3, 5, 7), F32)], ["y"], axis=1, keepdims=1),
                normal(x=(3, 5, 7))),
    GenericCase("argmin_int64_last", "ArgMin", "cuda_argreduce",
                lambda rng: one_node("ArgMin", [("x", (4, 9), I64)], ["y"], axis=-1, keepdims=0,
                                     select_last_index=1), _argmin_ints),
    GenericCase("conv_transpose", "ConvTranspose", GENERIC, _conv_transpose,
                normal(x=(1, 3, 5, 6)), atol=1e-4),
    GenericCase("cumsum_reverse_exclusive", "CumSum", GENERIC,
                lambda rng: one_node("CumSum", [("x", (4, 6), F32)], ["y"], [init("a", i64(1))],
                                     exclusive=1, reverse=1), normal(x=(4, 6))),
    GenericCase("cumprod_reverse", "CumProd", GENERIC,
                lambda rng: one_node("CumProd", [("x", (3, 5), F32)], ["y"], [init("a", i64(1))],
                                     reverse=1, opset=26), normal(x=(3, 5)),
                reference=_cumprod_reference),
    GenericCase("gather_elements", "GatherElements", GENERIC,
                lambda rng: one_node("GatherElements", [("x", (4, 5), F32), ("i", (4, 3), I64)],
                                     ["y"], axis=1), _gather_elements_feeds),
    GenericCase("gather_nd", "GatherND", GENERIC,
                lambda rng: one_node("GatherND", [("x", (3, 4, 5), F32), ("i", (2, 3, 2), I64)],
                                     ["y"]), _gather_nd_feeds),
    GenericCase("gather_nd_batch_dims", "GatherND", GENERIC,
                lambda rng: one_node("GatherND", [("x", (2, 3, 4), F32), ("i", (2, 2, 1), I64)],
                                     ["y"], batch_dims=1), _gather_nd_batch_feeds),
    GenericCase("scatter_elements", "ScatterElements", GENERIC,
                lambda rng: one_node("ScatterElements", [("x", (4, 5), F32), ("i", (4, 5), I64),
                                                         ("u", (4, 5), F32)], ["y"], axis=0),
                _scatter_elements_feeds),
    GenericCase("scatter_elements_add", "ScatterElements", GENERIC,
                lambda rng: one_node("ScatterElements", [("x", (4, 5), F32), ("i", (3, 5), I64),
                                                         ("u", (3, 5), F32)], ["y"], axis=0,
                                     reduction="add"), _scatter_add_feeds),
    GenericCase("scatter_nd", "ScatterND", GENERIC,
                lambda rng: one_node("ScatterND", [("x", (4, 5, 6), F32), ("i", (3, 1), I64),
                                                   ("u", (3, 5, 6), F32)], ["y"]),
                _scatter_nd_feeds),
    GenericCase("hardmax", "Hardmax", GENERIC,
                lambda rng: one_node("Hardmax", [("x", (3, 7), F32)], ["y"], axis=-1),
                normal(x=(3, 7))),
    GenericCase("instance_norm", "InstanceNormalization", "cuda_instancenorm_block",
                lambda rng: one_node("InstanceNormalization", [("x", (2, 3, 5, 4), F32)], ["y"],
                                     [init("s", rand(rng, 3)), init("b", rand(rng, 3))]),
                normal(x=(2, 3, 5, 4)), atol=1e-4),
    GenericCase("instance_norm_wide", "InstanceNormalization", "cuda_instancenorm_block",
                lambda rng: one_node("InstanceNormalization", [("x", (1, 2, 33, 31), F32)], ["y"],
                                     [init("s", rand(rng, 2)), init("b", rand(rng, 2))],
                                     epsilon=1e-3),
                normal(x=(1, 2, 33, 31)), atol=1e-4),
    GenericCase("instance_norm_float64", "InstanceNormalization", GENERIC,
                lambda rng: one_node("InstanceNormalization", [("x", (2, 3, 5), F64)], ["y"],
                                     [init("s", rng.standard_normal(3)), init("b", rng.standard_normal(3))]),
                _f64(2, 3, 5), rtol=1e-10, atol=1e-12, reference=_instance_norm_reference),
    GenericCase("lrn", "LRN", GENERIC,
                lambda rng: one_node("LRN", [("x", (2, 6, 5, 5), F32)], ["y"], size=3,
                                     alpha=0.01, beta=0.75, bias=1.0),
                normal(x=(2, 6, 5, 5)), atol=1e-4),
    GenericCase("pad_reflect", "Pad", "cuda_pad",
                lambda rng: one_node("Pad", [("x", (2, 3, 5), F32)], ["y"],
                                     [init("p", i64(0, 2, 3, 0, 1, 4))], mode="reflect"),
                normal(x=(2, 3, 5))),
    GenericCase("pad_edge", "Pad", "cuda_pad",
                lambda rng: one_node("Pad", [("x", (3, 4), F32)], ["y"],
                                     [init("p", i64(2, 0, 1, 3))], mode="edge"),
                normal(x=(3, 4))),
    GenericCase("pad_wrap", "Pad", "cuda_pad",
                lambda rng: one_node("Pad", [("x", (1, 3, 4), F32)], ["y"],
                                     [init("p", i64(0, 1, 2, 0, 2, 5))], mode="wrap", opset=19),
                normal(x=(1, 3, 4))),
    GenericCase("pad_constant_crop_int64", "Pad", "cuda_pad",
                lambda rng: one_node("Pad", [("x", (3, 6), I64)], ["y"],
                                     [init("p", i64(1, -2, 2, 1)), init("v", np.array(7, np.int64))]),
                lambda rng: {"x": rng.integers(-100, 100, (3, 6), dtype=np.int64)}),
    GenericCase("reduce_log_sum_exp", "ReduceLogSumExp", GENERIC,
                lambda rng: one_node("ReduceLogSumExp", [("x", (3, 4, 5), F32)], ["y"],
                                     [init("a", i64(1))], keepdims=1),
                normal(x=(3, 4, 5))),
    GenericCase("resize_linear", "Resize", "cuda_resize",
                lambda rng: one_node("Resize", [("x", (1, 2, 5, 6), F32)], ["y"],
                                     [init("", np.zeros(0, np.float32)),
                                      init("s", np.array([1, 1, 2, 1.5], np.float32))],
                                     mode="linear"),
                normal(x=(1, 2, 5, 6)), atol=1e-4),
    GenericCase("resize_nearest_sizes", "Resize", "cuda_resize",
                lambda rng: one_node("Resize", [("x", (1, 2, 5, 6), F32)], ["y"],
                                     [init("", np.zeros(0, np.float32)), init("", np.zeros(0, np.float32)),
                                      init("z", i64(1, 2, 7, 9))], mode="nearest",
                                     coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
                normal(x=(1, 2, 5, 6))),
    GenericCase("resize_cubic", "Resize", "cuda_resize",
                lambda rng: one_node("Resize", [("x", (1, 1, 6, 5), F32)], ["y"],
                                     [init("", np.zeros(0, np.float32)),
                                      init("s", np.array([1, 1, 1.5, 2], np.float32))],
                                     mode="cubic"),
                normal(x=(1, 1, 6, 5)), atol=1e-4),
    GenericCase("upsample", "Upsample", "cuda_resize",
                lambda rng: one_node("Upsample", [("x", (1, 2, 3, 4), F32)], ["y"],
                                     [init("s", np.array([1, 1, 2, 3], np.float32))], opset=9,
                                     mode="nearest"),
                normal(x=(1, 2, 3, 4))),
    GenericCase("topk", "TopK", "cuda_topk_rows",
                lambda rng: one_node("TopK", [("x", (3, 10), F32)], ["v", "i"], [init("k", i64(4))]),
                normal(x=(3, 10))),
    GenericCase("topk_smallest_middle", "TopK", "cuda_topk_rows",
                lambda rng: one_node("TopK", [("x", (4, 6, 5), F32)], ["v", "i"], [init("k", i64(3))],
                                     axis=1, largest=0), normal(x=(4, 6, 5))),
    GenericCase("lstm", "LSTM", "cuda_recurrent_block", _recurrent("LSTM", 6, 5, 2, 4, 1, 4),
                _recurrent_feeds("LSTM", 6, 5, 2, 4, 1), atol=1e-4),
    GenericCase("gru_bidirectional", "GRU", "cuda_recurrent_block",
                _recurrent("GRU", 5, 4, 3, 3, 2, 3, linear_before_reset=1),
                _recurrent_feeds("GRU", 5, 4, 3, 3, 2), atol=1e-4),
    GenericCase("rnn", "RNN", "cuda_recurrent_block", _recurrent("RNN", 4, 3, 2, 3, 1, 1),
                _recurrent_feeds("RNN", 4, 3, 2, 3, 1), atol=1e-4),
    # element types the float32 CUDA kernels leave to the generic kernel
    GenericCase("softmax_float64", "Softmax", GENERIC,
                lambda rng: one_node("Softmax", [("x", (3, 9), F64)], ["y"]), _f64(3, 9)),
    GenericCase("maxpool_float64", "MaxPool", GENERIC,
                lambda rng: one_node("MaxPool", [("x", (1, 2, 7, 7), F64)], ["y"],
                                     kernel_shape=[3, 3], strides=[2, 2]), _f64(1, 2, 7, 7)),
    GenericCase("matmul_float64", "MatMul", GENERIC,
                lambda rng: one_node("MatMul", [("x", (2, 4, 5), F64)], ["y"],
                                     [init("w", rng.standard_normal((5, 3)))]), _f64(2, 4, 5)),
    GenericCase("reduce_max_int64", "ReduceMax", GENERIC,
                lambda rng: one_node("ReduceMax", [("x", (3, 4, 5), I64)], ["y"],
                                     [init("a", i64(2))], keepdims=0),
                lambda rng: {"x": rng.integers(-1000, 1000, (3, 4, 5), dtype=np.int64)}),
    GenericCase("reduce_sum_int32", "ReduceSum", GENERIC,
                lambda rng: one_node("ReduceSum", [("x", (3, 4, 5), I32)], ["y"],
                                     [init("a", i64(0, 2))], keepdims=1),
                lambda rng: {"x": rng.integers(-1000, 1000, (3, 4, 5), dtype=np.int32)}),
]

# the generic kernels' status: an index out of range (feeds whose index input holds one)
OUT_OF_RANGE: dict[str, Callable[[np.random.Generator], Feeds]] = {
    "gather_elements": lambda rng: {**_gather_elements_feeds(rng),
                                    "i": np.array([[0, 1, 2], [3, 5, 0], [0, 0, 0], [1, 1, 1]], np.int64)},
    "gather_nd": lambda rng: {**_gather_nd_feeds(rng),
                              "i": np.array([[[0, 0], [1, 1], [2, 2]], [[0, 0], [-4, 0], [0, 0]]], np.int64)},
    "scatter_nd": lambda rng: {**_scatter_nd_feeds(rng), "i": np.array([[0], [4], [1]], np.int64)},
    "scatter_elements_add": lambda rng: {**_scatter_add_feeds(rng),
                                         "i": np.full((3, 5), -5, np.int64)},
}
