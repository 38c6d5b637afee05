"""Issue #15, point 2: Reshape and Expand whose shape operand is *computed* at run time from a
graph input's values (an Add / Mul / Concat on a declared int64 input, not the input itself
nor a constant), and the torch-export chain Shape -> Gather -> Unsqueeze -> Concat -> Reshape
over symbolic dims. A Reshape's -1 over such a target is an entry dim (computed by the entry
point before any kernel runs: numel over the other target dims); element counts that match only
for some values, and Expand target dims that must be 1 or the input's, are checked there (a run
breaking them is refused with PYC-E041, where onnxruntime fails too). Checked against
onnxruntime on fresh random inputs at values across the declared bounds (extremes and 1), in
the three memory modes, output buffers poisoned with NaN. (Resize sizes computed at run time:
test_resize_runtime.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.ir.symbolic import entry_source, parse_input_shapes
from tests.dynamic.checks import runs_and_refusals_match_onnxruntime, runs_match_onnxruntime
from tests.helpers import init, make_model, rand, write_model

MODES = ["latency_first", "balanced", "memory_first"]
I64 = TensorProto.INT64
RTOL, ATOL = 1e-6, 1e-6  # elementwise float32 in onnxruntime's order


def _value_info(name: str, shape: list[int | str], elem: int = TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


# ---------------------------------------------------------------- Reshape to s + 1


def _reshape_plus_one(tmp_path: Path) -> Path:
    """y = sigmoid(reshape(x * 2, s + 1)): x[24], the target s + 1 (s declared 0..23)."""
    nodes = [helper.make_node("Add", ["s", "one"], ["target"], name="target"),
             helper.make_node("Mul", ["x", "two"], ["x2"], name="double"),
             helper.make_node("Reshape", ["x2", "target"], ["r"], name="reshape_to_target"),
             helper.make_node("Sigmoid", ["r"], ["y"], name="sigmoid")]
    model = make_model(nodes, [_value_info("x", [24]), _value_info("s", [2], I64)],
                       [_value_info("y", ["a", "b"])],
                       [init("one", np.array([1, 1], np.int64)),
                        init("two", np.array(2.0, np.float32))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_reshape_to_a_target_computed_from_input_values(tmp_path: Path, mode: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = _reshape_plus_one(tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"s": (0, 23)})
    assert [str(d) for d in result.graph.types["y"].shape] == ["val_s_0 + 1", "val_s_1 + 1"]
    assert "sizes equal" in (result.artifact / "src" / "model.c").read_text()
    rng = np.random.default_rng()
    feeds = [{"x": rand(rng, 24), "s": np.array(s, np.int64)}
             for s in ([0, 23], [23, 0], [1, 11], [2, 7], [3, 5], [5, 3])]
    refused = [{"x": rand(rng, 24), "s": np.array(s, np.int64)} for s in ([3, 3], [23, 23])]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, RTOL, ATOL)


# ---------------------------------------------------------------- Reshape to [2s, -1]


def _reshape_minus_one(tmp_path: Path) -> Path:
    """y = reshape(x[B, 12], concat(s * 2, -1)) + 1: the -1 is B * 12 / (2 s), an entry dim."""
    nodes = [helper.make_node("Mul", ["s", "two"], ["rows"], name="rows"),
             helper.make_node("Concat", ["rows", "minus_one"], ["target"], name="target", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["r"], name="reshape_rows"),
             helper.make_node("Add", ["r", "onef"], ["y"], name="plus_one")]
    model = make_model(nodes, [_value_info("x", ["B", 12]), _value_info("s", [1], I64)],
                       [_value_info("y", ["rows", "cols"])],
                       [init("two", np.array([2], np.int64)),
                        init("minus_one", np.array([-1], np.int64)),
                        init("onef", np.array(1.0, np.float32))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_reshape_minus_one_over_a_computed_target(tmp_path: Path, mode: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = _reshape_minus_one(tmp_path)
    shapes, _ = parse_input_shapes(["x=B:1..4,12"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes,
                           input_values={"s": (1, 6)})
    cols = result.graph.types["y"].shape[1]
    (bounds,) = cols.dims().values()
    assert entry_source(bounds) == "reshape_rows" and bounds.hi == 4 * 12 // 2
    rng = np.random.default_rng()
    feeds = [{"x": rand(rng, b, 12), "s": np.array([s], np.int64)}
             for b, s in ((1, 1), (1, 6), (4, 1), (4, 6), (2, 3), (3, 2), (4, 4), (1, 2))]
    refused = [{"x": rand(rng, b, 12), "s": np.array([s], np.int64)}
               for b, s in ((1, 5), (1, 4), (3, 4))]  # 2s does not divide B * 12
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, RTOL, ATOL)


# ---------------------------------------------------------------- Expand to s + [1, 0]


def _expand_computed(tmp_path: Path) -> Path:
    """y = expand(x[1, 4], s + [1, 0]) * 3: rows s[0] + 1, columns s[1] (1 or 4)."""
    nodes = [helper.make_node("Add", ["s", "bump"], ["target"], name="target"),
             helper.make_node("Expand", ["x", "target"], ["e"], name="expand_rows"),
             helper.make_node("Mul", ["e", "three"], ["y"], name="times_three")]
    model = make_model(nodes, [_value_info("x", [1, 4]), _value_info("s", [2], I64)],
                       [_value_info("y", ["rows", 4])],
                       [init("bump", np.array([1, 0], np.int64)),
                        init("three", np.array(3.0, np.float32))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_expand_to_a_shape_computed_from_input_values(tmp_path: Path, mode: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = _expand_computed(tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"s": (0, 9)})
    assert [str(d) for d in result.graph.types["y"].shape] == ["val_s_0 + 1", "4"]
    rng = np.random.default_rng()
    feeds = [{"x": rand(rng, 1, 4), "s": np.array(s, np.int64)}
             for s in ([0, 4], [9, 4], [0, 1], [9, 1], [4, 4])]
    refused = [{"x": rand(rng, 1, 4), "s": np.array(s, np.int64)} for s in ([3, 0], [9, 3])]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, RTOL, ATOL)


def _filled_times_x(tmp_path: Path) -> Path:
    """y = constant_of_shape(s + [1, 0], 0.5) * x[1, 4]: a binary broadcast of a shape from
    input values against a static one. onnxruntime takes s[1] of 1 or 4, and so does PyC (the
    fill is read with a run-time stride, 0 where s[1] is 1: test_runtime_broadcast.py); other
    sizes are refused (E041), as onnxruntime refuses them."""
    nodes = [helper.make_node("Add", ["s", "bump"], ["target"], name="target"),
             helper.make_node("ConstantOfShape", ["target"], ["half"], name="fill",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
             helper.make_node("Mul", ["half", "x"], ["y"], name="scale_rows")]
    model = make_model(nodes, [_value_info("x", [1, 4]), _value_info("s", [2], I64)],
                       [_value_info("y", ["rows", 4])], [init("bump", np.array([1, 0], np.int64))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_binary_broadcast_of_a_shape_computed_from_input_values(
        tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _filled_times_x(tmp_path)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"s": (0, 9)})
    assert [str(d) for d in result.graph.types["y"].shape] == ["val_s_0 + 1", "4"]
    rng = np.random.default_rng()
    feeds = [{"x": rand(rng, 1, 4), "s": np.array(s, np.int64)}
             for s in ([0, 4], [9, 4], [3, 4], [2, 1], [0, 1], [9, 1])]
    refused = [{"x": rand(rng, 1, 4), "s": np.array(s, np.int64)} for s in ([3, 0], [9, 2])]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, refused, monkeypatch, RTOL, ATOL)
    with pyc_cli.load(result.artifact) as model, pytest.raises(PycError) as narrower:
        model.run({"x": rand(rng, 1, 4), "s": np.array([2, 3], np.int64)})
    assert narrower.value.code == "E041" and "broadcast" in (narrower.value.hint or "")


# an Expand whose broadcast depends on the sizes (an input dim that may be 1 against a target
# dim from input values) was refused here with E051; it now runs, decided at entry:
# tests/dynamic/test_runtime_broadcast.py::test_expand_whose_broadcast_depends_on_the_sizes


# ---------------------------------------------------------------- Pad by s - 1


def _pad_computed(tmp_path: Path, mode: str) -> Path:
    """y = pad(x[3, 5], s - 1) + 1: pads -1..3 (a -1 crops), computed from s (declared 0..4)."""
    nodes = [helper.make_node("Sub", ["s", "one"], ["pads"], name="pads"),
             helper.make_node("Pad", ["x", "pads"], ["p"], name="pad_x", mode=mode),
             helper.make_node("Add", ["p", "onef"], ["y"], name="plus_one")]
    model = make_model(nodes, [_value_info("x", [3, 5]), _value_info("s", [4], I64)],
                       [_value_info("y", ["h", "w"])],
                       [init("one", np.array([1, 1, 1, 1], np.int64)),
                        init("onef", np.array(1.0, np.float32))])
    return write_model(model, tmp_path)


@pytest.mark.parametrize("pad_mode", ["constant", "edge"])
@pytest.mark.parametrize("mode", MODES)
def test_pad_by_pads_computed_from_input_values(tmp_path: Path, mode: str, pad_mode: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = _pad_computed(tmp_path, pad_mode)
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_values={"s": (0, 4)})
    assert [int(d) for d in result.graph.types["y"].shape] == [3 + 3 + 3, 5 + 3 + 3]  # bounds
    rng = np.random.default_rng()
    feeds = [{"x": rand(rng, 3, 5), "s": np.array(s, np.int64)}
             for s in ([1, 1, 1, 1], [0, 0, 0, 0], [4, 4, 4, 4], [0, 4, 2, 1], [3, 0, 1, 2])]
    runs_and_refusals_match_onnxruntime(path, result.artifact, feeds, [], monkeypatch, RTOL, ATOL)


# ---------------------------------------------------------------- refusals


def test_reshape_target_that_may_be_zero_is_refused(tmp_path: Path) -> None:
    """A target element whose declared values include 0 (ONNX: copy the input's dim) is not a
    size the entry point can check: refused with a hint to narrow --input-values."""
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape_s")]
    model = make_model(nodes, [_value_info("x", [24]), _value_info("s", [2], I64)],
                       [_value_info("y", ["a", "b"])])
    path = write_model(model, tmp_path)
    with pytest.raises(PycError) as refused:
        pyc_cli.build(path, tmp_path / "art", input_values={"s": (0, 24)})
    assert refused.value.code == "E051" and "reshape_s" in str(refused.value.where)
    assert "--input-values" in (refused.value.hint or "")


def test_reshape_over_a_size_a_kernel_computes_is_refused(tmp_path: Path) -> None:
    """NonZero's count is known only once its kernel ran; a Reshape whose element counts
    match only for some counts cannot be checked at entry: refused, naming the node."""
    nodes = [helper.make_node("NonZero", ["x"], ["idx"], name="nonzero"),
             helper.make_node("Cast", ["idx"], ["idxf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Reshape", ["idxf", "two_by"], ["y"], name="reshape_idx")]
    model = make_model(nodes, [_value_info("x", [6])], [_value_info("y", [2, "n"])],
                       [init("two_by", np.array([2, -1], np.int64))])
    path = write_model(model, tmp_path)
    with pytest.raises(PycError) as refused:
        pyc_cli.build(path, tmp_path / "art")
    assert refused.value.code == "E051" and "reshape_idx" in str(refused.value.where)
    assert "traceback" not in str(refused.value).lower()


# ---------------------------------------------------------------- the torch-export chain


def _torch_chain(tmp_path: Path) -> Path:
    """What an export with dynamic axes holds: x[B, S, 8] split into 2 heads by
    reshape(x, concat(B, S, 2, 4)) from Shape/Gather/Unsqueeze, transposed, merged back with
    concat(shape[:2], -1); the tokens merged (reshape to concat(B * S, 8)) through a MatMul;
    a bias expanded to concat(B, 1, 8)."""
    rng = np.random.default_rng(3)
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"], name="shape"),
        helper.make_node("Gather", ["sh", "i0"], ["b"], name="batch_of", axis=0),
        helper.make_node("Gather", ["sh", "i1"], ["s"], name="seq_of", axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["bu"], name="batch_1d"),
        helper.make_node("Unsqueeze", ["s", "ax0"], ["su"], name="seq_1d"),
        helper.make_node("Concat", ["bu", "su", "c2", "c4"], ["heads"], name="heads", axis=0),
        helper.make_node("Reshape", ["x", "heads"], ["xh"], name="split_heads"),
        helper.make_node("Transpose", ["xh"], ["t"], name="heads_first", perm=[0, 2, 1, 3]),
        helper.make_node("Shape", ["t"], ["sh2"], name="shape_t"),
        helper.make_node("Slice", ["sh2", "z", "two1"], ["bh"], name="lead"),
        helper.make_node("Concat", ["bh", "m1"], ["merged"], name="merged", axis=0),
        helper.make_node("Reshape", ["t", "merged"], ["heads_out"], name="merge_heads"),
        helper.make_node("Mul", ["b", "s"], ["tokens"], name="tokens"),
        helper.make_node("Unsqueeze", ["tokens", "ax0"], ["tu"], name="tokens_1d"),
        helper.make_node("Concat", ["tu", "c8"], ["flat"], name="flat", axis=0),
        helper.make_node("Reshape", ["x", "flat"], ["rows"], name="flatten_tokens"),
        helper.make_node("MatMul", ["rows", "w"], ["proj"], name="project"),
        helper.make_node("Concat", ["bu", "c1", "c8"], ["bias_shape"], name="bias_shape", axis=0),
        helper.make_node("Expand", ["bias", "bias_shape"], ["bias_b"], name="expand_bias"),
        helper.make_node("Add", ["x", "bias_b"], ["biased"], name="add_bias"),
    ]
    inits = [init("i0", np.array(0, np.int64)), init("i1", np.array(1, np.int64)),
             init("ax0", np.array([0], np.int64)), init("c1", np.array([1], np.int64)),
             init("c2", np.array([2], np.int64)), init("c4", np.array([4], np.int64)),
             init("c8", np.array([8], np.int64)), init("z", np.array([0], np.int64)),
             init("two1", np.array([2], np.int64)), init("m1", np.array([-1], np.int64)),
             init("w", rand(rng, 8, 8, scale=0.3)), init("bias", rand(rng, 1, 1, 8))]
    outputs = [_value_info("heads_out", ["B", 2, "K"]), _value_info("proj", ["N", 8]),
               _value_info("biased", ["B", "S", 8])]
    return write_model(make_model(nodes, [_value_info("x", ["B", "S", 8])], outputs, inits),
                       tmp_path, "torch_chain.onnx")


@pytest.mark.parametrize("mode", MODES)
def test_torch_export_shape_chain_over_symbolic_dims(tmp_path: Path, mode: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = _torch_chain(tmp_path)
    shapes, _ = parse_input_shapes(["x=B:1..4,S:1..16,8"])
    result = pyc_cli.build(path, tmp_path / "art", mode=mode, input_shapes=shapes)
    assert [str(d) for d in result.graph.types["proj"].shape] == ["B*S", "8"]
    assert not any(n.op == "Shape" for n in result.graph.nodes)  # the chains were bound
    runs_match_onnxruntime(path, result.artifact, lambda r, b, s: {"x": rand(r, b, s, 8)},
                           [(1, 1), (4, 16), (1, 16), (4, 1), (2, 7), (3, 10)], 1e-5, 1e-5,
                           monkeypatch)
