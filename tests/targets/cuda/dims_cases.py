"""Models whose sizes are known at run time only, for the CUDA target (issues #14, #15): sizes a
node computes from input values (NonZero's count, TopK's K, Tile's repeats and Range's count
from inputs, Slice's starts and ends), value dims (elements of an input with declared values:
Range to them, a Reshape to them whose element count the entry checks) read by the kernels after
it, and symbolic input dims (`--input-shape x=batch:1..9`). Each case: the model, how it is
built, the feeds of its runs (fresh random values each call; the sizes at 0 and at their bound
among them), the feeds a run refuses (a size past its bound: PYC-E041, where onnxruntime fails
or would write past the bound), and the kernel each op runs (the decision log's
`select_kernel`). Shared by the emulated tests (test_cuda_dims.py) and the GPU tests
(test_cuda_gpu.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from helpers import init, make_model, write_model
from onnx import TensorProto, helper

F32, I64 = TensorProto.FLOAT, TensorProto.INT64
Feeds = dict[str, np.ndarray]
FeedsFor = Callable[[np.random.Generator], Feeds]


def _vi(name: str, shape: list[object], dtype: int = F32) -> object:
    return helper.make_tensor_value_info(name, dtype, shape)


@dataclass(frozen=True)
class DimsCase:
    name: str
    make: Callable[[Path], Path]  # writes the ONNX model into the folder, returns its path
    runs: tuple[FeedsFor, ...]  # each run's feeds
    refused: tuple[FeedsFor, ...] = ()  # runs refused with PYC-E041
    kernels: dict[str, str] = field(default_factory=dict)  # op -> its CUDA kernel
    input_shapes: dict[str, tuple[object, ...]] | None = None
    input_values: dict[str, tuple[float, float]] | None = None


def _sparse(shape: tuple[int, ...], share: float) -> FeedsFor:
    """x of `shape` whose elements are non-zero with probability `share` (0: all zero, 1: none)."""
    def feeds(rng: np.random.Generator) -> Feeds:
        x = rng.standard_normal(shape) + np.sign(rng.standard_normal(shape)) * 0.5
        return {"x": (x * (rng.random(shape) < share)).astype(np.float32)}
    return feeds


def _nonzero_chain(folder: Path) -> Path:
    """idx = NonZero(x[4, 5]); y = float(idx^T) * scale; s = ReduceSum(y, 0), m = ReduceMean(y,
    0): the count (0..20) computed by NonZero, read by the Transpose, the fused Cast * scale and
    the reductions (an empty mean is 0, as onnxruntime gives)."""
    nodes = [helper.make_node("NonZero", ["x"], ["idx"]),
             helper.make_node("Transpose", ["idx"], ["t"], perm=[1, 0]),
             helper.make_node("Cast", ["t"], ["tf"], to=F32),
             helper.make_node("Mul", ["tf", "scale"], ["y"]),
             helper.make_node("ReduceSum", ["y", "zero"], ["s"], keepdims=1),
             helper.make_node("ReduceMean", ["y"], ["m"], axes=[0], keepdims=0)]
    model = make_model(nodes, [_vi("x", [4, 5])],
                       [_vi("idx", [2, "n"], I64), _vi("y", ["n", 2]), _vi("s", [1, 2]),
                        _vi("m", [2])],
                       [init("scale", np.array([0.5, 3.0], np.float32)),
                        init("zero", np.array([0], np.int64))])
    return write_model(model, folder)


def _nonzero_batch(folder: Path) -> Path:
    """NonZero over a symbolic batch (x [batch:1..9, 5]): an input dim and a computed one."""
    nodes = [helper.make_node("NonZero", ["x"], ["idx"]),
             helper.make_node("Transpose", ["idx"], ["t"], perm=[1, 0]),
             helper.make_node("Cast", ["t"], ["tf"], to=F32),
             helper.make_node("Mul", ["tf", "scale"], ["y"]),
             helper.make_node("Relu", ["x"], ["r"])]
    model = make_model(nodes, [_vi("x", ["batch", 5])],
                       [_vi("y", ["n", 2]), _vi("idx", [2, "n"], I64), _vi("r", ["batch", 5])],
                       [init("scale", np.array([0.5, 3.0], np.float32))])
    return write_model(model, folder)


def _topk_k(folder: Path) -> Path:
    """v, i = TopK(x[3, 10, 2], k, axis 1); y = v * scale: K (0..10) read at run time."""
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1),
             helper.make_node("Mul", ["v", "scale"], ["y"])]
    model = make_model(nodes, [_vi("x", [3, 10, 2]), _vi("k", [1], I64), _vi("scale", [])],
                       [_vi("y", [3, "n", 2]), _vi("i", [3, "n", 2], I64)])
    return write_model(model, folder)


def _topk_feeds(k: int) -> FeedsFor:
    def feeds(rng: np.random.Generator) -> Feeds:
        return {"x": rng.standard_normal((3, 10, 2)).astype(np.float32),
                "k": np.array([k], np.int64),
                "scale": np.array(rng.uniform(0.5, 2.0), np.float32)}
    return feeds


def _tile_cast(folder: Path) -> Path:
    """y = tile(x[2, 3], concat([2], int64(f))) * 2, f declared 0..4: the repeats of axis 1 cast
    from a float, so that axis (0..12) is a dim tile_runtime computes."""
    nodes = [helper.make_node("Cast", ["f"], ["fi"], to=I64),
             helper.make_node("Concat", ["two", "fi"], ["r"], axis=0),
             helper.make_node("Tile", ["x", "r"], ["t"], name="tile_cast"),
             helper.make_node("Mul", ["t", "twof"], ["y"])]
    model = make_model(nodes, [_vi("x", [2, 3]), _vi("f", [1])], [_vi("y", [4, "b"])],
                       [init("two", np.array([2], np.int64)),
                        init("twof", np.array(2.0, np.float32))])
    return write_model(model, folder)


def _tile_feeds(f: float) -> FeedsFor:
    def feeds(rng: np.random.Generator) -> Feeds:
        return {"x": rng.standard_normal((2, 3)).astype(np.float32),
                "f": np.array([f], np.float32)}
    return feeds


def _range_float(folder: Path) -> Path:
    """y = range(0.5, n, 0.75) + x[1], n declared 0..10: at most 13 elements, computed by
    range_runtime."""
    nodes = [helper.make_node("Range", ["start", "n", "delta"], ["r"], name="range_f"),
             helper.make_node("Add", ["r", "x"], ["y"])]
    model = make_model(nodes, [_vi("x", [1]), _vi("n", [])], [_vi("y", ["k"])],
                       [init("start", np.array(0.5, np.float32)),
                        init("delta", np.array(0.75, np.float32))])
    return write_model(model, folder)


def _range_feeds(n: float) -> FeedsFor:
    def feeds(rng: np.random.Generator) -> Feeds:
        return {"x": rng.standard_normal(1).astype(np.float32), "n": np.array(n, np.float32)}
    return feeds


def _slice_batch(folder: Path) -> Path:
    """y = relu(x[batch:1..6, 7][starts:ends:steps]), starts and ends from inputs, steps 1 and
    -2: an input dim, then the dims slice_runtime computes."""
    nodes = [helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"])]
    model = make_model(nodes, [_vi("x", ["batch", 7]), _vi("starts", [2], I64),
                               _vi("ends", [2], I64)], [_vi("y", ["a", "b"])],
                       [init("axes", np.array([0, 1], np.int64)),
                        init("steps", np.array([1, -2], np.int64))])
    return write_model(model, folder)


def _slice_feeds(batch: int, starts: list[int], ends: list[int]) -> FeedsFor:
    def feeds(rng: np.random.Generator) -> Feeds:
        return {"x": rng.standard_normal((batch, 7)).astype(np.float32),
                "starts": np.array(starts, np.int64), "ends": np.array(ends, np.int64)}
    return feeds


def _mlp_batch(folder: Path) -> Path:
    """A two-layer MLP (MatMul + bias + Relu, MatMul + bias, Softmax) over a symbolic batch:
    x [batch:1..8, 16] -> [batch, 10]."""
    rng = np.random.default_rng(7)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["a"]),
             helper.make_node("MatMul", ["a", "w2"], ["o"]),
             helper.make_node("Add", ["o", "b2"], ["ob"]),
             helper.make_node("Softmax", ["ob"], ["y"], axis=-1)]
    model = make_model(nodes, [_vi("x", ["batch", 16])], [_vi("y", ["batch", 10])],
                       [init("w1", rng.standard_normal((16, 32)).astype(np.float32) * 0.3),
                        init("b1", rng.standard_normal(32).astype(np.float32)),
                        init("w2", rng.standard_normal((32, 10)).astype(np.float32) * 0.3),
                        init("b2", rng.standard_normal(10).astype(np.float32))])
    return write_model(model, folder)


def _rows_batch_seq(folder: Path) -> Path:
    """y = softmax(layernorm(x @ w + b)) over x [batch:1..3, seq:1..7, 16]: a batched MatMul and
    row kernels whose row count (batch x seq) is known at run time only."""
    rng = np.random.default_rng(11)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Add", ["h", "b"], ["hb"]),
             helper.make_node("LayerNormalization", ["hb", "gamma", "beta"], ["n"], axis=-1),
             helper.make_node("Softmax", ["n"], ["y"], axis=-1)]
    model = make_model(nodes, [_vi("x", ["batch", "seq", 16])], [_vi("y", ["batch", "seq", 12])],
                       [init("w", rng.standard_normal((16, 12)).astype(np.float32) * 0.3),
                        init("b", rng.standard_normal(12).astype(np.float32)),
                        init("gamma", rng.uniform(0.5, 1.5, 12).astype(np.float32)),
                        init("beta", rng.standard_normal(12).astype(np.float32))])
    return write_model(model, folder)


def _seq_feeds(batch: int, seq: int) -> FeedsFor:
    def feeds(rng: np.random.Generator) -> Feeds:
        return {"x": rng.standard_normal((batch, seq, 16)).astype(np.float32)}
    return feeds


def _rows_run_time_length(folder: Path) -> Path:
    """Row kernels whose rows are known at run time only, over x [a:1..3, n:1..70, m:1..5]:
    Softmax along n (n elements m apart: the row and its stride at run time), LayerNormalization
    over the last axis (m long, its scale and bias the Slice of m of a constant), LogSoftmax
    over the last two axes (n x m long)."""
    rng = np.random.default_rng(12)
    nodes = [helper.make_node("Softmax", ["x"], ["s"], axis=1),
             helper.make_node("Shape", ["x"], ["shape"], start=2),
             helper.make_node("Slice", ["gamma_all", "zero", "shape"], ["gamma"]),
             helper.make_node("Slice", ["beta_all", "zero", "shape"], ["beta"]),
             helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["ln"], axis=-1),
             helper.make_node("LogSoftmax", ["x"], ["ls"], axis=-1),
             helper.make_node("Reshape", ["x", "flat"], ["x2"]),
             helper.make_node("LogSoftmax", ["x2"], ["l2"], axis=-1)]
    model = make_model(nodes, [_vi("x", ["a", "n", "m"])],
                       [_vi("s", ["a", "n", "m"]), _vi("ln", ["a", "n", "m"]),
                        _vi("ls", ["a", "n", "m"]), _vi("l2", ["a", "k"])],
                       [init("gamma_all", rng.uniform(0.5, 1.5, 5).astype(np.float32)),
                        init("beta_all", rng.standard_normal(5).astype(np.float32)),
                        init("zero", np.array([0], np.int64)),
                        init("flat", np.array([0, -1], np.int64))])
    return write_model(model, folder)


def _anm_feeds(a: int, n: int, m: int) -> FeedsFor:
    def feeds(rng: np.random.Generator) -> Feeds:
        return {"x": (rng.standard_normal((a, n, m)) * 3).astype(np.float32)}
    return feeds


def _concat_run_time(folder: Path) -> Path:
    """Concat along an axis whose chunks are run-time sizes (a [b:1..3, n:1..9, 4] and c
    [b, m:1..6, 4] along axis 1) and along the last axis after a symbolic one, then a Relu
    reading the result."""
    nodes = [helper.make_node("Concat", ["a", "c"], ["ac"], axis=1),
             helper.make_node("Concat", ["a", "a"], ["aa"], axis=-1),
             helper.make_node("Relu", ["ac"], ["y"])]
    model = make_model(nodes, [_vi("a", ["b", "n", 4]), _vi("c", ["b", "m", 4])],
                       [_vi("y", ["b", "nm", 4]), _vi("aa", ["b", "n", 8])])
    return write_model(model, folder)


def _concat_feeds(b: int, n: int, m: int) -> FeedsFor:
    def feeds(rng: np.random.Generator) -> Feeds:
        return {"a": rng.standard_normal((b, n, 4)).astype(np.float32),
                "c": rng.standard_normal((b, m, 4)).astype(np.float32)}
    return feeds


def _embedding_batch(folder: Path) -> Path:
    """y = relu(table[ids]) over ids [batch:1..4, 3] (an embedding of a symbolic batch) and
    z = sum of y over the batch."""
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("Gather", ["table", "ids"], ["g"], axis=0),
             helper.make_node("Relu", ["g"], ["y"]),
             helper.make_node("ReduceSum", ["y", "zero"], ["z"], keepdims=0)]
    model = make_model(nodes, [_vi("ids", ["batch", 3], I64)],
                       [_vi("y", ["batch", 3, 8]), _vi("z", [3, 8])],
                       [init("table", rng.standard_normal((10, 8)).astype(np.float32)),
                        init("zero", np.array([0], np.int64))])
    return write_model(model, folder)


def _ids_feeds(batch: int) -> FeedsFor:
    def feeds(rng: np.random.Generator) -> Feeds:
        return {"ids": rng.integers(-10, 10, (batch, 3)).astype(np.int64)}
    return feeds


def _batch_feeds(batch: int, width: int = 16) -> FeedsFor:
    def feeds(rng: np.random.Generator) -> Feeds:
        return {"x": rng.standard_normal((batch, width)).astype(np.float32)}
    return feeds


def _range_values(folder: Path) -> Path:
    """y = sin(float(Range(start, limit, 2)) * scale), start declared -10..10 and limit 0..64:
    limit is a value dim (read from its data before the run), the count (0..37) a dim
    range_runtime computes."""
    nodes = [helper.make_node("Range", ["start", "limit", "two"], ["r"]),
             helper.make_node("Cast", ["r"], ["rf"], to=F32),
             helper.make_node("Mul", ["rf", "scale"], ["s"]),
             helper.make_node("Sin", ["s"], ["y"])]
    model = make_model(nodes, [_vi("start", [], I64), _vi("limit", [], I64), _vi("scale", [])],
                       [_vi("y", ["n"])], [init("two", np.array(2, np.int64))])
    return write_model(model, folder)


def _range_values_feeds(start: int, limit: int) -> FeedsFor:
    def feeds(rng: np.random.Generator) -> Feeds:
        return {"start": np.array(start, np.int64), "limit": np.array(limit, np.int64),
                "scale": np.array(rng.uniform(0.1, 1.0), np.float32)}
    return feeds


def _reshape_values(folder: Path) -> Path:
    """y = relu(reshape(x[24], s + 1)), s declared 0..23: value dims (s's elements) in the
    target, whose element count (24 == (s0 + 1) (s1 + 1)) is checked before the first kernel."""
    nodes = [helper.make_node("Add", ["s", "one"], ["shape"]),
             helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape_s"),
             helper.make_node("Relu", ["r"], ["y"])]
    model = make_model(nodes, [_vi("x", [24]), _vi("s", [2], I64)], [_vi("y", ["a", "b"])],
                       [init("one", np.array([1, 1], np.int64))])
    return write_model(model, folder)


def _reshape_feeds(s: list[int]) -> FeedsFor:
    def feeds(rng: np.random.Generator) -> Feeds:
        return {"x": rng.standard_normal(24).astype(np.float32), "s": np.array(s, np.int64)}
    return feeds


GENERIC_PREFIX = "cuda_generic_"
CASES = (
    DimsCase("nonzero_chain", _nonzero_chain,
             (_sparse((4, 5), 0.5), _sparse((4, 5), 0.0), _sparse((4, 5), 1.0),
              _sparse((4, 5), 0.2)),
             kernels={"NonZero": GENERIC_PREFIX + "nonzero_count",
                      "Transpose": "cuda_strided_copy_dims",
                      "pyc.Elementwise": "cuda_elementwise_dims",
                      "ReduceSum": "cuda_reduce_block_dims"}),
    DimsCase("nonzero_batch", _nonzero_batch,
             (_sparse((1, 5), 0.5), _sparse((9, 5), 1.0), _sparse((4, 5), 0.0),
              _sparse((7, 5), 0.3)),
             kernels={"NonZero": GENERIC_PREFIX + "nonzero_count",
                      "Transpose": "cuda_strided_copy_dims"},
             input_shapes={"x": ("batch:1..9", 5)}),
    DimsCase("topk_k", _topk_k, (_topk_feeds(3), _topk_feeds(0), _topk_feeds(10), _topk_feeds(1)),
             (_topk_feeds(11), _topk_feeds(-1)),
             kernels={"TopK": GENERIC_PREFIX + "topk_runtime",
                      "pyc.Elementwise": "cuda_elementwise_dims"}),
    DimsCase("tile_cast", _tile_cast, (_tile_feeds(2.7), _tile_feeds(0.0), _tile_feeds(4.0)),
             (_tile_feeds(5.0),), kernels={"Tile": GENERIC_PREFIX + "tile_runtime"},
             input_values={"f": (0.0, 4.0)}),
    DimsCase("range_float", _range_float,
             (_range_feeds(7.7), _range_feeds(0.0), _range_feeds(10.0), _range_feeds(1.26)),
             (_range_feeds(11.0),), kernels={"Range": GENERIC_PREFIX + "range_runtime",
                                             "pyc.Elementwise": "cuda_elementwise_dims"},
             input_values={"n": (0.0, 10.0)}),
    DimsCase("range_values", _range_values,
             (_range_values_feeds(0, 10), _range_values_feeds(-10, 64), _range_values_feeds(3, 3),
              _range_values_feeds(7, 1), _range_values_feeds(-3, 0), _range_values_feeds(9, 64)),
             (_range_values_feeds(-20, 64), _range_values_feeds(0, 65)),
             kernels={"Range": GENERIC_PREFIX + "range_runtime"},
             input_values={"start": (-10, 10), "limit": (0, 64)}),
    DimsCase("reshape_values", _reshape_values,
             (_reshape_feeds([3, 5]), _reshape_feeds([0, 23]), _reshape_feeds([23, 0]),
              _reshape_feeds([1, 11])),
             (_reshape_feeds([4, 4]), _reshape_feeds([24, 0])),
             kernels={"pyc.Elementwise": "cuda_elementwise_dims"},
             input_values={"s": (0, 23)}),
    DimsCase("slice_batch", _slice_batch,
             (_slice_feeds(6, [0, 6], [6, -8]), _slice_feeds(3, [1, 5], [2, 0]),
              _slice_feeds(1, [0, -1], [9, -9]), _slice_feeds(5, [-2, 100], [-100, 2]),
              _slice_feeds(4, [-9, 3], [2, 3])),
             kernels={"Slice": GENERIC_PREFIX + "slice_runtime"},
             input_shapes={"x": ("batch:1..6", 7)}),
    DimsCase("mlp_batch", _mlp_batch,
             (_batch_feeds(1), _batch_feeds(8), _batch_feeds(3)),
             kernels={"MatMul": "cuda_matmul_tiled_dims", "Softmax": "cuda_softmax_block_dims"},
             input_shapes={"x": ("batch:1..8", 16)}),
    DimsCase("embedding_batch", _embedding_batch, (_ids_feeds(1), _ids_feeds(4), _ids_feeds(2)),
             kernels={"Gather": "cuda_gather_dims", "ReduceSum": "cuda_reduce_block_dims"},
             input_shapes={"ids": ("batch:1..4", 3)}),
    DimsCase("rows_batch_seq", _rows_batch_seq,
             (_seq_feeds(1, 1), _seq_feeds(3, 7), _seq_feeds(2, 5)),
             kernels={"LayerNormalization": "cuda_layernorm_block_dims",
                      "Softmax": "cuda_softmax_block_dims"},
             input_shapes={"x": ("batch:1..3", "seq:1..7", 16)}),
    DimsCase("rows_run_time_length", _rows_run_time_length,
             (_anm_feeds(1, 1, 1), _anm_feeds(3, 70, 5), _anm_feeds(2, 33, 3), _anm_feeds(1, 64, 4)),
             kernels={"Softmax": "cuda_softmax_block_dims",
                      "LayerNormalization": "cuda_layernorm_block_dims",
                      "LogSoftmax": "cuda_softmax_block_dims"},
             input_shapes={"x": ("a:1..3", "n:1..70", "m:1..5")}),
    DimsCase("concat_run_time", _concat_run_time,
             (_concat_feeds(1, 1, 1), _concat_feeds(3, 9, 6), _concat_feeds(2, 4, 1)),
             kernels={"Concat": "cuda_concat_dims"},
             input_shapes={"a": ("b:1..3", "n:1..9", 4), "c": ("b", "m:1..6", 4)}),
)
