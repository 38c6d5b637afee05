"""Regression tests for defects found by differential fuzzing against onnxruntime.

One test per defect, named after it; each builds a small model with onnx.helper and, where
values matter, compares PyC with onnxruntime on fresh random inputs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import init, make_model, vinfo, write_model
from onnx import TensorProto, helper

import pyc_cli
from pyc_cli.errors import PycError


def ort_outputs(model_path: Path, feeds: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """onnxruntime's outputs as (name, value) in graph order (a name may repeat)."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return list(zip(names, session.run(None, feeds)))


def build_and_run(path: Path, tmp_path: Path, feeds: dict[str, np.ndarray],
                  **build_args: object) -> tuple[Path, dict[str, np.ndarray]]:
    artifact = pyc_cli.build(path, tmp_path / "artifact", **build_args).artifact  # type: ignore[arg-type]
    with pyc_cli.load(artifact) as model:
        return artifact, model.run(feeds)


def assert_matches_ort(path: Path, tmp_path: Path, feeds: dict[str, np.ndarray],
                       rtol: float = 1e-5, atol: float = 1e-6, **build_args: object) -> Path:
    """Build, run and compare every output (names, order, shapes, dtypes, values) with ORT."""
    artifact, got = build_and_run(path, tmp_path, feeds, **build_args)
    expected = ort_outputs(path, feeds)
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert [o["name"] for o in manifest["outputs"]] == [name for name, _ in expected]
    for name, want in expected:
        assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
        np.testing.assert_allclose(got[name], want, rtol=rtol, atol=atol, err_msg=name)
    return artifact


# ---------------------------------------------------------------- 1: output names


def test_outputs_keep_onnx_names_and_order(tmp_path: Path, rng: np.random.Generator) -> None:
    """An input returned as an output came back as `copy_<input>_out`; also an initializer
    returned as an output, one value returned twice, and an output another node consumes."""
    weight = rng.standard_normal((2, 3)).astype(np.float32)
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Add", ["y", "w"], ["z"])]
    outputs = [vinfo(n, (2, 3)) for n in ("x", "y", "w", "y", "z")]
    model = make_model(nodes, [vinfo("x", (2, 3))], outputs, [init("w", weight)])
    path = write_model(model, tmp_path)
    feeds = {"x": rng.standard_normal((2, 3)).astype(np.float32)}
    artifact = assert_matches_ort(path, tmp_path, feeds, rtol=0, atol=0)
    names = ("x", "y", "w", "y", "z")
    header_names = (artifact / "src" / "model.c").read_text()
    assert "copy_" not in header_names.split("io_names")[1].split(";")[0]
    for name in names:
        assert f'"{name}"' in header_names


# ---------------------------------------------------------------- 7: dim_value -1


def test_negative_dim_value_is_symbolic(tmp_path: Path, rng: np.random.Generator) -> None:
    """PaddlePaddle exports declare dynamic dims as dim_value -1 (input, output, value_info);
    --input-shape x=1,3,4,6 was refused as not fitting [-1,3,?,?]."""
    weight = rng.standard_normal((5, 3, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    model = make_model(nodes, [vinfo("x", (-1, 3, None, None))], [vinfo("y", (-1, 5, -1, -1))],
                       [init("w", weight)])
    model.graph.value_info.append(vinfo("c", (-1, 5, -1, -1)))
    path = write_model(model, tmp_path)
    feeds = {"x": rng.standard_normal((1, 3, 4, 6)).astype(np.float32)}
    assert_matches_ort(path, tmp_path, feeds, input_shapes={"x": (1, 3, 4, 6)})
    with pytest.raises(PycError) as shape_error:
        pyc_cli.build(path, tmp_path / "wrong", input_shapes={"x": (1, 4, 4, 6)})
    assert shape_error.value.code == "E006" and "[?,3,?,?]" in shape_error.value.what
    with pytest.raises(PycError) as missing:
        pyc_cli.build(path, tmp_path / "unfixed")
    assert missing.value.code == "E005" and "dim0" in missing.value.what


PP_OCR_CLS = Path("/tmp/rapid/whl/rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")


@pytest.mark.skipif(not PP_OCR_CLS.is_file(), reason="the PP-OCR classifier is not downloaded "
                    "(pip download rapidocr-onnxruntime --no-deps -d /tmp/rapid; unzip the wheel)")
def test_negative_dim_value_pp_ocr_classifier(tmp_path: Path, rng: np.random.Generator) -> None:
    feeds = {"x": rng.standard_normal((1, 3, 48, 192)).astype(np.float32)}
    assert_matches_ort(PP_OCR_CLS, tmp_path, feeds, rtol=1e-4, atol=1e-5,
                       input_shapes={"x": (1, 3, 48, 192)})


# ---------------------------------------------------------------- 2: zero-size dims


def _int64(values: list[int]) -> np.ndarray:
    return np.array(values, np.int64)


INT64_MAX = 2**63 - 1
# name -> (nodes, graph inputs {name: shape}, initializers, opset); every output is "z"
ZERO_SIZE_CASES = {
    # Constant + Slice: an end of INT64_MAX with a negative step runs to the axis start (ORT)
    "slice_end_sentinel": ([helper.make_node("Constant", [], ["c"], value=helper.make_tensor(
        "c", TensorProto.FLOAT, [7, 1, 2], np.arange(14, dtype=np.float32))),
        helper.make_node("Slice", ["c", "s", "e", "a", "t"], ["y"]),
        helper.make_node("Add", ["y", "x"], ["z"])], {"x": (7, 1, 2)},
        {"s": _int64([0]), "e": _int64([INT64_MAX]), "a": _int64([1]), "t": _int64([-1])}, 17),
    "slice_of_empty_axis": ([helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["z"])],
                            {"x": (3, 0, 2)}, {"s": _int64([-10]), "e": _int64([INT64_MAX]),
                                               "a": _int64([1]), "t": _int64([-1])}, 17),
    "concat_with_empty": ([helper.make_node("Concat", ["x", "y"], ["z"], axis=1)],
                          {"x": (2, 0, 3), "y": (2, 2, 3)}, {}, 17),
    "reshape_copies_zero": ([helper.make_node("Reshape", ["x", "s"], ["z"])],
                            {"x": (6, 2, 0, 78)}, {"s": _int64([6, 0, 0, 78])}, 17),
    "reshape_allowzero": ([helper.make_node("Reshape", ["x", "s"], ["z"], allowzero=1)],
                          {"x": (6, 2, 0, 78)}, {"s": _int64([6, 0, 2, 78])}, 17),
    "expand_to_zero": ([helper.make_node("Expand", ["x", "s"], ["z"])], {"x": (1, 3)},
                       {"s": _int64([0, 3])}, 17),
    "broadcast_with_zero": ([helper.make_node("Add", ["x", "y"], ["z"])],
                            {"x": (6, 2, 1, 5), "y": (6, 1, 0, 5)}, {}, 17),
    "reduce_mean_empty_axis": ([helper.make_node("ReduceMean", ["x", "a"], ["z"], keepdims=1)],
                               {"x": (2, 0, 3)}, {"a": _int64([1])}, 18),
    "reduce_max_empty_axis": ([helper.make_node("ReduceMax", ["x", "a"], ["z"], keepdims=0)],
                              {"x": (2, 0, 3)}, {"a": _int64([1])}, 18),
    "matmul_empty_inner": ([helper.make_node("MatMul", ["x", "y"], ["z"])],
                           {"x": (2, 0), "y": (0, 3)}, {}, 17),
    "softmax_of_empty": ([helper.make_node("Softmax", ["x"], ["z"], axis=1)], {"x": (2, 0, 3)},
                         {}, 17),
}


@pytest.mark.parametrize("case", sorted(ZERO_SIZE_CASES))
def test_zero_size_dims_match_onnxruntime(case: str, tmp_path: Path,
                                          rng: np.random.Generator) -> None:
    """Shapes with a 0 dim (or ORT's slice sentinels) disagreed with ORT ([7,0,2] vs [7,1,2],
    [0] vs [1]); every kernel must also run on 0-element tensors."""
    nodes, inputs, initializers, opset = ZERO_SIZE_CASES[case]
    graph_inputs = [vinfo(n, s) for n, s in inputs.items()]
    inits = [init(k, v) for k, v in initializers.items()]
    probe = helper.make_model(helper.make_graph(nodes, "probe", graph_inputs, [vinfo("z", None)],
                                                inits), opset_imports=[helper.make_opsetid("", opset)])
    probe.ir_version = 8  # the output shape is what onnxruntime computes
    expected = ort_outputs(write_model(probe, tmp_path, "probe.onnx"),
                           {n: np.zeros(s, np.float32) for n, s in inputs.items()})
    model = make_model(nodes, graph_inputs, [vinfo("z", expected[0][1].shape)], inits, opset=opset)
    path = write_model(model, tmp_path)
    feeds = {n: rng.standard_normal(s).astype(np.float32) for n, s in inputs.items()}
    assert_matches_ort(path, tmp_path, feeds)


def test_zero_size_dims_invalid_models_are_refused(tmp_path: Path) -> None:
    """Where ORT refuses a zero-size case (ArgMax over an empty axis, Reshape with 0 and -1 under
    allowzero), PyC gives PYC-E009 instead of a shape."""
    cases = [
        ([helper.make_node("ArgMax", ["x"], ["z"], axis=1)], (2, 0, 3)),
        ([helper.make_node("Reshape", ["x", "s"], ["z"], allowzero=1)], (2, 0, 3)),
    ]
    for index, (nodes, shape) in enumerate(cases):
        model = make_model(nodes, [vinfo("x", shape)], [vinfo("z", [])],
                           [init("s", _int64([-1, 0]))] if nodes[0].op_type == "Reshape" else [])
        with pytest.raises(PycError) as refused:
            pyc_cli.build(write_model(model, tmp_path, f"bad{index}.onnx"), tmp_path / f"a{index}")
        assert refused.value.code == "E009", refused.value


# ---------------------------------------------------------------- 3: Tile over zero-size dims


def test_tile_over_zero_size_dim(tmp_path: Path, rng: np.random.Generator) -> None:
    """Tile of [0,13,8,9] was refused (false PYC-E009 'cannot reshape [0,13,8,9] to [1,0,...]'):
    the decomposition's Reshape read its literal 0 as 'copy the input dim'."""
    nodes = [helper.make_node("Tile", ["x", "r"], ["t"]),
             helper.make_node("Tile", ["y", "r"], ["u"])]
    model = make_model(nodes, [vinfo("x", (0, 13, 8, 9)), vinfo("y", (2, 1, 3, 1))],
                       [vinfo("t", (0, 26, 8, 27)), vinfo("u", (4, 2, 3, 3))],
                       [init("r", _int64([2, 2, 1, 3]))])
    path = write_model(model, tmp_path)
    feeds = {"x": np.zeros((0, 13, 8, 9), np.float32),
             "y": rng.standard_normal((2, 1, 3, 1)).astype(np.float32)}
    assert_matches_ort(path, tmp_path, feeds, rtol=0, atol=0)


# ---------------------------------------------------------------- 4: no tracebacks from pyc build


def _node(op: str, inputs: list[str], **attrs: object) -> list:
    return [helper.make_node(op, inputs, ["z"], **attrs)]


F32, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
# name -> (nodes, inputs [(name, shape, elem type)], initializers); each is invalid ONNX that
# onnxruntime refuses too, and used to crash PyC (IndexError, ValueError, E090, gcc failure)
INVALID_MODELS = {
    "softmax_of_scalar": (_node("Softmax", ["x"]), [("x", (), F32)], {}),
    "argmax_of_scalar": (_node("ArgMax", ["x"]), [("x", (), F32)], {}),
    "gather_of_scalar": (_node("Gather", ["x", "i"]), [("x", (), F32)], {"i": _int64(0)}),
    "cumsum_of_scalar": (_node("CumSum", ["x", "a"]), [("x", (), F32)], {"a": _int64(0)}),
    "pad_of_scalar": (_node("Pad", ["x", "p"]), [("x", (), F32)], {"p": _int64([])}),
    "flatten_axis_past_rank": (_node("Flatten", ["x"]), [("x", (), F32)], {}),
    "global_pool_of_rank_2": (_node("GlobalAveragePool", ["x"]), [("x", (1, 4), F32)], {}),
    "batchnorm_stats_mismatch": (_node("BatchNormalization", ["x", "s", "b", "m", "v"]),
                                 [("x", (2, 1, 4, 4), F32)],
                                 {k: np.ones(3, np.float32) for k in "sbmv"}),
    "gemm_bias_of_rank_3": (_node("Gemm", ["x", "w", "c"]), [("x", (2, 3), F32)],
                            {"w": np.ones((3, 4), np.float32), "c": np.ones((2, 1, 4), np.float32)}),
    "add_of_mixed_dtypes": (_node("Add", ["x", "c"]), [("x", (), F32)], {"c": _int64(2)}),
    "eyelike_of_rank_1": (_node("EyeLike", ["x"]), [("x", (3,), F32)], {}),
    "onehot_values_of_3": (_node("OneHot", ["i", "d", "v"]), [("i", (2,), I64)],
                           {"d": _int64(3), "v": np.ones(3, np.float32)}),
}


@pytest.mark.parametrize("case", sorted(INVALID_MODELS))
def test_build_never_shows_a_traceback(case: str, tmp_path: Path) -> None:
    """Invalid models crashed `pyc build` (need at least one array to stack, tuple index out of
    range, IR verification failed after canonicalize on an Add); each is now PYC-E009."""
    from click.testing import CliRunner

    from pyc_cli.cli.main import main

    nodes, inputs, initializers = INVALID_MODELS[case]
    model = make_model(nodes, [vinfo(n, s, t) for n, s, t in inputs], [vinfo("z", [])],
                       [init(k, v) for k, v in initializers.items()])
    path = write_model(model, tmp_path)
    result = CliRunner().invoke(main, ["build", str(path), "-o", str(tmp_path / "a")],
                                catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "PYC-E009:" in result.output and "Traceback" not in result.output, result.output


def test_build_never_shows_a_traceback_valid_models_build(tmp_path: Path,
                                                          rng: np.random.Generator) -> None:
    """The valid neighbours of those models build and match onnxruntime: rank-0 and 1-D inputs,
    a scalar initializer added to a rank-0 input, bool/int operands, a hand-written LayerNorm
    whose gamma and beta broadcast the output to a higher rank."""
    ln_nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[-1]),
                helper.make_node("Sub", ["x", "m"], ["d"]), helper.make_node("Mul", ["d", "d"], ["q"]),
                helper.make_node("ReduceMean", ["q"], ["v"], axes=[-1]),
                helper.make_node("Add", ["v", "e"], ["ve"]), helper.make_node("Sqrt", ["ve"], ["s"]),
                helper.make_node("Div", ["d", "s"], ["y"]), helper.make_node("Mul", ["y", "g"], ["yg"]),
                helper.make_node("Add", ["yg", "b"], ["ln"])]
    nodes = ln_nodes + [
        helper.make_node("Add", ["c", "r"], ["scalar_sum"]),
        helper.make_node("MatMul", ["x", "x"], ["dot"]),
        helper.make_node("ArgMax", ["x"], ["arg"], keepdims=0),
        helper.make_node("Transpose", ["r"], ["r_t"]),
        helper.make_node("And", ["flag", "mask"], ["both"]),
        helper.make_node("Add", ["n", "k"], ["int_sum"]),
    ]
    outputs = [vinfo("ln", (1, 1, 4)), vinfo("scalar_sum", ()), vinfo("dot", ()),
               vinfo("arg", (), I64), vinfo("r_t", ()), vinfo("both", (3,), BOOL),
               vinfo("int_sum", (2,), I64)]
    model = make_model(nodes, [vinfo("x", (4,)), vinfo("r", ()), vinfo("flag", (), BOOL),
                               vinfo("n", (), I64)], outputs,
                       [init("e", np.array(1e-5, np.float32)), init("g", rng.random((1, 4), np.float32)),
                        init("b", rng.random((1, 1, 4), np.float32)), init("c", np.array(2.5, np.float32)),
                        init("mask", np.array([True, False, True])), init("k", _int64([3, -4]))],
                       opset=13)
    path = write_model(model, tmp_path)
    feeds = {"x": rng.standard_normal(4).astype(np.float32),
             "r": np.asarray(rng.standard_normal(), np.float32), "flag": np.array(True),
             "n": np.asarray(rng.integers(-50, 50), np.int64)}
    assert_matches_ort(path, tmp_path, feeds)


# ---------------------------------------------------------------- 6: refused by onnxruntime


def _external_weight_model(tmp_path: Path, weight: np.ndarray, length: int) -> Path:
    """x + w, with w's bytes in weights.bin and its external_data length set to `length`."""
    (tmp_path / "weights.bin").write_bytes(weight.tobytes())
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=list(weight.shape),
                         data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "weights.bin"), ("offset", "0"), ("length", str(length))):
        tensor.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["z"])], "external",
                              [vinfo("x", weight.shape)], [vinfo("z", weight.shape)], [tensor])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # (onnx.checker reads external files relative to the saved model)
    return write_model(model, tmp_path)


def test_external_data_length_past_end_of_file(tmp_path: Path, rng: np.random.Generator) -> None:
    """An external-data length beyond the end of its file was read short (what exists) and
    built; onnxruntime refuses it (size mismatch), PyC gives PYC-E004."""
    weight = rng.standard_normal(6).astype(np.float32)
    good = _external_weight_model(tmp_path, weight, weight.nbytes)
    feeds = {"x": rng.standard_normal(6).astype(np.float32)}
    assert_matches_ort(good, tmp_path, feeds, rtol=0, atol=0)
    for length in (2 * weight.nbytes, weight.nbytes - 4):
        path = _external_weight_model(tmp_path, weight, length)
        with pytest.raises(Exception, match="size mismatch"):
            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        with pytest.raises(PycError) as refused:
            pyc_cli.build(path, tmp_path / f"bad{length}")
        assert refused.value.code == "E004" and "'w'" in refused.value.what


def test_duplicate_node_names(tmp_path: Path) -> None:
    """onnx.checker accepts two nodes with one name; onnxruntime refuses the model ("two nodes
    with same node name"), and so does PyC, naming the duplicate."""
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="dup"),
             helper.make_node("Neg", ["y"], ["z"], name="dup")]
    path = write_model(make_model(nodes, [vinfo("x", (2,))], [vinfo("z", (2,))]), tmp_path)
    with pytest.raises(Exception, match="same node name"):
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with pytest.raises(PycError) as refused:
        pyc_cli.build(path, tmp_path / "artifact")
    assert refused.value.code == "E003" and "'dup'" in refused.value.what


# ---------------------------------------------------------------- 5: sizes past 2^31 elements


def test_sizes_overflow(tmp_path: Path) -> None:
    """Tensors of 2^31..2^63 elements built silently ("arena 0 B"), and shapes past int64 were
    misreported. Sizes are planned in 64-bit (a 32 GiB intermediate gets a 32 GiB arena, written
    exactly into model.h); a buffer larger than the target's 2^47-byte address space is
    PYC-E012 naming the tensor and its byte size."""
    big = (65536, 65536, 2)  # 2^33 float32 elements: 32 GiB
    nodes = [helper.make_node("Relu", ["x"], ["y"]),
             helper.make_node("Transpose", ["y"], ["t"], perm=[1, 0, 2]),
             helper.make_node("ConstantOfShape", ["s"], ["c"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.5])),
             helper.make_node("Expand", ["one", "s"], ["e"])]
    model = make_model(nodes, [vinfo("x", big), vinfo("one", (1,))],
                       [vinfo(n, big) for n in ("t", "c", "e")], [init("s", _int64(list(big)))])
    result = pyc_cli.build(write_model(model, tmp_path), tmp_path / "artifact")
    assert result.plan.arena_bytes == 2**35  # the intermediate y
    header = (result.artifact / "src" / "model.h").read_text()
    assert f"#define model_ARENA_BYTES {2**35}" in header
    manifest = json.loads((result.artifact / "manifest.json").read_text())
    assert [o["shape"] for o in manifest["outputs"]] == [list(big)] * 3
    assert manifest["weights"]["bytes"] < 1 << 20  # the 32 GiB constant is filled at run time

    huge = [2**21] * 3  # 2^63 elements: 2^65 bytes, past any int64 byte count
    cases = {"input": ([helper.make_node("Relu", ["x"], ["z"])], [vinfo("x", huge)], [], "'x'"),
             "expand": ([helper.make_node("Expand", ["x", "s"], ["z"])], [vinfo("x", (1,))],
                        [init("s", _int64(huge))], "'z'"),
             "tensor_over_2^47": ([helper.make_node("Relu", ["x"], ["z"])],
                                  [vinfo("x", (2**24, 2**24, 2))], [], "'x'")}
    for name, (nodes, inputs, inits, tensor) in cases.items():
        model = make_model(nodes, inputs, [vinfo("z", [])], inits)
        with pytest.raises(PycError) as refused:
            pyc_cli.build(write_model(model, tmp_path, f"{name}.onnx"), tmp_path / name)
        elements = math.prod(huge) if name != "tensor_over_2^47" else 2**49
        assert refused.value.code == "E012", refused.value
        assert tensor in refused.value.what and str(elements * 4) in refused.value.what


# ---------------------------------------------------------------- found by tests/fuzz


def _f32(value: float) -> float:
    return float(np.float32(value))


SELU_ALPHA, SELU_GAMMA = _f32(1.67326319217681884765625), _f32(1.05070102519989013671875)
FLOAT64_ACTIVATIONS = {  # numpy float64 with the float32 value of each default attribute
    "Elu": lambda x: np.where(x < 0, np.exp(x) - 1, x),
    "Selu": lambda x: np.where(x <= 0, SELU_GAMMA * SELU_ALPHA * (np.exp(x) - 1), SELU_GAMMA * x),
    "HardSigmoid": lambda x: np.clip(_f32(0.2) * x + _f32(0.5), 0, 1),
    "ThresholdedRelu": lambda x: np.where(x > 1.0, x, 0.0),
    "HardSwish": lambda x: x * np.clip(x * _f32(1 / 6) + 0.5, 0, 1),  # fuzz seed 2147129985
}


def _float64_model(op: str, tmp_path: Path) -> Path:
    model = make_model([helper.make_node(op, ["x"], ["y"])], [vinfo("x", (4, 7), TensorProto.DOUBLE)],
                       [vinfo("y", (4, 7), TensorProto.DOUBLE)])
    return write_model(model, tmp_path)


def test_float64_activation_defaults_are_float32(tmp_path: Path, rng: np.random.Generator) -> None:
    """ONNX float attributes are float32, defaults included: a float64 LeakyRelu computed with
    0.01 instead of 0.01f was 2e-8 off onnxruntime (fuzz seed 715150840)."""
    x = rng.standard_normal((4, 7)) * 3
    assert_matches_ort(_float64_model("LeakyRelu", tmp_path), tmp_path, {"x": x}, rtol=1e-13,
                       atol=1e-15)


@pytest.mark.parametrize("op", sorted(FLOAT64_ACTIVATIONS))
def test_float64_activation_defaults_without_onnxruntime_kernel(op: str, tmp_path: Path,
                                                                rng: np.random.Generator) -> None:
    """The same rule where onnxruntime has no float64 kernel: numpy in float64 decides."""
    x = rng.standard_normal((4, 7)) * 3
    _, got = build_and_run(_float64_model(op, tmp_path), tmp_path, {"x": x})
    np.testing.assert_allclose(got["y"], FLOAT64_ACTIVATIONS[op](x), rtol=1e-13, atol=1e-15)


def test_where_with_a_broadcast_arm_beside_a_scatter(tmp_path: Path, rng: np.random.Generator) -> None:
    """GCC 12 at -O3 on AVX-512 vectorized Where's conditional loads (an arm broadcast from
    [1,8,1,8]) into masked loads of the wrong elements once the loop was inlined beside this
    ScatterND (fuzz seed 468933627, shrunk): operands are now loaded unconditionally."""
    nodes = [helper.make_node("Where", ["c", "x", "y"], ["w"]),
             helper.make_node("ScatterND", ["s", "idx", "upd"], ["z"], reduction="max")]
    model = make_model(nodes, [vinfo("c", (2, 8, 2, 8), TensorProto.BOOL), vinfo("y", (1, 8, 1, 8)),
                               vinfo("s", (1, 4, 4)), vinfo("x", (2, 8, 2, 8))],
                       [vinfo("w", (2, 8, 2, 8)), vinfo("z", (1, 4, 4))],
                       [init("idx", np.zeros((2, 1), np.int64)),
                        init("upd", rng.standard_normal((2, 4, 4)).astype(np.float32))], opset=18)
    path = write_model(model, tmp_path)
    feeds = {"c": rng.random((2, 8, 2, 8)) < 0.5,
             "y": rng.standard_normal((1, 8, 1, 8)).astype(np.float32),
             "s": rng.standard_normal((1, 4, 4)).astype(np.float32),
             "x": rng.standard_normal((2, 8, 2, 8)).astype(np.float32)}
    for mode in ("latency_first", "balanced", "memory_first"):
        assert_matches_ort(path, tmp_path / mode, feeds, rtol=0, atol=0, mode=mode)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                                "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum",
                                "ReduceLogSumExp"])
@pytest.mark.parametrize("folded", [False, True])
def test_noop_reduction_still_reduces_each_element(op: str, folded: bool, tmp_path: Path,
                                                    rng: np.random.Generator) -> None:
    """noop_with_empty_axes with no axes reduces each element alone (ReduceL1 -> |x|,
    ReduceLogSum -> log x); constant folding returned x unchanged (fuzz seeds 2056893549,
    2663390925, 428338240, 14323925)."""
    x = rng.standard_normal((3, 4)).astype(np.float32)
    node = helper.make_node(op, ["x"], ["y"], noop_with_empty_axes=1)
    inputs = [] if folded else [vinfo("x", (3, 4))]
    model = make_model([node], inputs, [vinfo("y", (3, 4))], [init("x", x)] if folded else [],
                       opset=18)
    path = write_model(model, tmp_path)
    with np.errstate(invalid="ignore"):
        assert_matches_ort(path, tmp_path, {} if folded else {"x": x})


@pytest.mark.parametrize("equation", ["...ii->...i", "ii->i", "iji->ij", "ii->"])
def test_einsum_diagonal_keeps_nan_off_the_diagonal_out(equation: str, tmp_path: Path,
                                                         rng: np.random.Generator) -> None:
    """A diagonal taken as mask-multiply-and-sum made 0 * inf = NaN from values off the
    diagonal (fuzz seed 2714916276); it is a strided Slice now."""
    shape, out = {"...ii->...i": ((3, 5, 5), (3, 5)), "ii->i": ((4, 4), (4,)),
                  "iji->ij": ((3, 2, 3), (3, 2)), "ii->": ((5, 5), ())}[equation]
    x = rng.standard_normal(shape)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 4, replace=False)] = [np.nan, np.inf, -np.inf, 1e308]
    model = make_model([helper.make_node("Einsum", ["x"], ["y"], equation=equation)],
                       [vinfo("x", shape, TensorProto.DOUBLE)], [vinfo("y", out, TensorProto.DOUBLE)])
    path = write_model(model, tmp_path)
    assert_matches_ort(path, tmp_path, {"x": x}, rtol=1e-12, atol=1e-12)


def test_pow_float32_base_float64_exponent_is_not_narrowed(tmp_path: Path, rng: np.random.Generator) -> None:
    """A float64 exponent of a float32 base was cast to float first: a denormal exponent
    became 0 and NaN^0 gave 1 where onnxruntime gives NaN (fuzz seed 2740469111)."""
    x = rng.standard_normal((2, 8)).astype(np.float32)
    x[0, :4] = [np.nan, np.inf, 0.5, 2.0]
    e = rng.standard_normal((2, 8))
    e[0, :4] = [5e-324, 5e-324, 1e-310, -1e-320]
    model = make_model([helper.make_node("Pow", ["x", "e"], ["y"])],
                       [vinfo("x", (2, 8)), vinfo("e", (2, 8), TensorProto.DOUBLE)], [vinfo("y", (2, 8))])
    path = write_model(model, tmp_path)
    with np.errstate(invalid="ignore"):
        assert_matches_ort(path, tmp_path, {"x": x, "e": e})


def test_workspace_kernel_with_empty_output_compiles(tmp_path: Path) -> None:
    """ReduceLogSumExp keeps its sums in a workspace; with a zero-size output none was planned and
    the generated C named an undeclared WS (PYC-E020, fuzz seed 4290225852)."""
    model = make_model([helper.make_node("ReduceLogSumExp", ["x", "axes"], ["y"], keepdims=1)],
                       [vinfo("x", (1, 1, 0, 0), TensorProto.DOUBLE)],
                       [vinfo("y", (1, 1, 0, 1), TensorProto.DOUBLE)],
                       [init("axes", np.array([-3, 3], dtype=np.int64))], opset=18)
    path = write_model(model, tmp_path)
    assert_matches_ort(path, tmp_path, {"x": np.zeros((1, 1, 0, 0))})


@pytest.mark.parametrize("pads", [[2, 0, 0, 0], [1, 1, 2, 0], [0, 0, 3, 2]])
def test_constant_pad_loads_unconditionally(pads: list[int], tmp_path: Path,
                                            rng: np.random.Generator) -> None:
    """GCC 12 -O3 with AVX-512 miscompiled Pad's conditional load `inside ? X0[i] : value`:
    rows 2-3 of a [4,2] input padded by two leading rows came out 0 (fuzz seed 2168989584)."""
    out = [4 + pads[0] + pads[2], 2 + pads[1] + pads[3]]
    model = make_model([helper.make_node("Pad", ["x", "p"], ["y"], mode="constant")],
                       [vinfo("x", (4, 2))], [vinfo("y", out)],
                       [init("p", np.array(pads, dtype=np.int64))])
    path = write_model(model, tmp_path)
    assert_matches_ort(path, tmp_path, {"x": rng.standard_normal((4, 2)).astype(np.float32)})


def test_float16_kernel_assembles_on_avx512_without_fp16(tmp_path: Path, rng: np.random.Generator) -> None:
    """GCC 12 emitted `vinsert<i128vldq>` (PYC-E020 "Assembler messages") for a 512-bit
    _Float16 loop on an AVX-512 CPU without AVX512-FP16 (fuzz seeds 1025887033, 69027688)."""
    model = make_model([helper.make_node("Expand", ["x", "shape"], ["e"]),
                        helper.make_node("LeakyRelu", ["e"], ["y"])],
                       [vinfo("x", (2, 4), TensorProto.FLOAT16)],
                       [vinfo("y", (13, 2, 4), TensorProto.FLOAT16)],
                       [init("shape", np.array([13, 2, 4], dtype=np.int64))])
    path = write_model(model, tmp_path)
    assert_matches_ort(path, tmp_path, {"x": rng.standard_normal((2, 4)).astype(np.float16)},
                       rtol=1e-3, atol=1e-3, mode="latency_first")


def test_recurrent_node_of_constant_inputs_folds(tmp_path: Path, rng: np.random.Generator) -> None:
    """A GRU whose inputs are all constants folds at compile time; its reference un-transposed
    the canonicalized weights before checking their shapes, which then refused a valid model
    with PYC-E009 (fuzz seed 1558555334, a 'suspicious refusal': onnxruntime runs it)."""
    x = rng.standard_normal((3, 1, 3)).astype(np.float32)
    w, r = (rng.standard_normal(s).astype(np.float32) for s in ((1, 15, 3), (1, 15, 5)))
    b = rng.standard_normal((1, 30)).astype(np.float32)
    nodes = [helper.make_node("GRU", ["x", "w", "r", "b"], ["", "h"], hidden_size=5)]
    model = make_model(nodes, [], [vinfo("h", (1, 1, 5))],
                       [init("x", x), init("w", w), init("r", r), init("b", b)])
    assert_matches_ort(write_model(model, tmp_path), tmp_path, {}, rtol=1e-5, atol=1e-6)
