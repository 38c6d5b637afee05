"""End-to-end: build the reference models (with fresh random weights) and compare every output
with onnxruntime on fresh random inputs. fp32 tolerance: rtol 1e-4, atol 1e-5."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REFERENCE_MODELS, ReferenceModel, onnxruntime_outputs
from helpers import randomize_initializers

import pyc_cli
from pyc_cli.ir.ewprogram import format_program
from pyc_cli.runtime.jit import jit_load

RTOL, ATOL = 1e-4, 1e-5


def _random_weight_copy(ref: ReferenceModel, rng: np.random.Generator, tmp_path: Path) -> Path:
    model = randomize_initializers(onnx.load(str(ref.path)), rng)
    path = tmp_path / ref.path.name
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("mode", ["latency_first", "balanced", "memory_first"])
@pytest.mark.parametrize("name", sorted(REFERENCE_MODELS))
def test_matches_onnxruntime(name: str, mode: str, rng: np.random.Generator,
                             tmp_path: Path) -> None:
    ref = REFERENCE_MODELS[name]
    model_path = _random_weight_copy(ref, rng, tmp_path)
    pyc_cli.build(model_path, tmp_path / "art", mode=mode, input_shapes=ref.shapes)
    with pyc_cli.load(tmp_path / "art") as model:
        for _ in range(2):  # the loaded model is reused across calls with new inputs
            feeds = ref.random_feeds(rng)
            ours = model.run(feeds)
            expected = onnxruntime_outputs(model_path, feeds)
            assert list(ours) == list(expected)
            for key, value in expected.items():
                np.testing.assert_allclose(ours[key], value, rtol=RTOL, atol=ATOL)


def test_jit_and_shared_library_give_identical_results(rng: np.random.Generator,
                                                      tmp_path: Path) -> None:
    ref = REFERENCE_MODELS["transformer"]
    pyc_cli.build(ref.path, tmp_path / "art", input_shapes=ref.shapes)
    feeds = ref.random_feeds(rng)
    with pyc_cli.load(tmp_path / "art") as library_model:
        from_library = library_model.run(feeds)
    with jit_load(tmp_path / "art") as jit_model:
        from_jit = jit_model.run(feeds)
    for key, value in from_library.items():
        np.testing.assert_array_equal(from_jit[key], value)
    expected = onnxruntime_outputs(ref.path, feeds)
    np.testing.assert_allclose(from_jit["last_hidden_state"], expected["last_hidden_state"],
                               rtol=RTOL, atol=ATOL)


# A JIT model left open in a reference cycle (the traceback of an error it raised), freed by the
# collector with its JIT and then at exit: the model's destroy must run before the JIT frees the
# code it calls (it segfaulted at pytest's teardown; runtime/jit.py PinnedJit).
_JIT_IN_A_CYCLE = """
import gc, sys
import numpy as np
from pyc_cli.errors import PycError
from pyc_cli.runtime.jit import jit_load

def fail(model, feeds):
    try:
        model.run(feeds)
    except PycError as exc:
        error = exc  # the frame holds the error, whose traceback holds the frame: a cycle
    return error

art, x = sys.argv[1], np.load(sys.argv[2])
kept = jit_load(art)  # still open at exit
assert fail(jit_load(art), {"bad name": x}) is not None
gc.collect()
print(kept.run({kept.inputs[0].name: x})[kept.outputs[0].name].shape)
"""


def test_a_jit_model_freed_in_a_cycle_and_at_exit_does_not_crash(rng: np.random.Generator,
                                                                 tmp_path: Path) -> None:
    ref = REFERENCE_MODELS["mlp"]
    pyc_cli.build(ref.path, tmp_path / "art", input_shapes=ref.shapes)
    feed = next(iter(ref.random_feeds(rng).values()))
    np.save(tmp_path / "x.npy", feed)
    done = subprocess.run([sys.executable, "-c", _JIT_IN_A_CYCLE, str(tmp_path / "art"),
                           str(tmp_path / "x.npy")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith("(")


# A C program linking artifacts: tests/targets/cpu/test_c_abi.py (the README's example).


def test_c_runtime_rejects_a_mismatched_weights_file(tmp_path: Path) -> None:
    ref = REFERENCE_MODELS["mlp"]
    art = tmp_path / "art"
    pyc_cli.build(ref.path, art, input_shapes=ref.shapes)
    model = pyc_cli.load(art)
    model.close()
    weights = bytearray((art / "weights.bin").read_bytes())
    weights[100] ^= 0xFF
    bad = tmp_path / "bad_weights.bin"
    bad.write_bytes(bytes(weights))
    from pyc_cli.errors import PycError
    from pyc_cli.runtime.native import CompiledModel

    with pytest.raises(PycError, match="wrong size or checksum"):
        CompiledModel(model._fn, bad, model.inputs, model.outputs, model._keepalive)


def test_rebuilt_artifact_reloads_in_the_same_process(rng: np.random.Generator,
                                                     tmp_path: Path) -> None:
    """A server that rebuilds into the same directory must not keep running the old code."""
    ref = REFERENCE_MODELS["mlp"]
    feeds = ref.random_feeds(rng)
    for _ in range(2):
        model_path = _random_weight_copy(ref, rng, tmp_path)
        # new weights are another model: replacing its artifact needs force (PYC-E025)
        pyc_cli.build(model_path, tmp_path / "art", input_shapes=ref.shapes, force=True)
        with pyc_cli.load(tmp_path / "art") as model:
            expected = onnxruntime_outputs(model_path, feeds)["logits"]
            np.testing.assert_allclose(model.run(feeds)["logits"], expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("with_bias", [True, False])
def test_batchnorm_after_gemm_folds_into_the_weights(with_bias: bool, rng: np.random.Generator,
                                                    tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    def init(name: str, array: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(array.astype(np.float32), name)

    inits = [init("w", rng.standard_normal((5, 8))), init("g", rng.standard_normal(5)),
             init("b", rng.standard_normal(5)), init("m", rng.standard_normal(5)),
             init("v", rng.random(5) + 0.5)]
    gemm_inputs = ["x", "w"]
    if with_bias:
        inits.append(init("c", rng.standard_normal(5)))
        gemm_inputs.append("c")
    nodes = [helper.make_node("Gemm", gemm_inputs, ["y0"], transB=1, name="fc"),
             helper.make_node("BatchNormalization", ["y0", "g", "b", "m", "v"], ["y"], name="bn")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 5])], inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = pyc_cli.build(path, tmp_path / "art")
    assert [n.op for n in result.graph.nodes] == ["MatMul"]
    assert any(d.action == "fold_batchnorm_into_gemm" for d in result.context.decisions)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    with pyc_cli.load(tmp_path / "art") as model:
        np.testing.assert_allclose(model.run({"x": x})["y"],
                                   onnxruntime_outputs(path, {"x": x})["y"], rtol=RTOL, atol=ATOL)


def test_branches_written_into_their_concat_slices(rng: np.random.Generator, tmp_path: Path) -> None:
    """An Inception-style block: three conv branches concatenated along channels (batch 1), so
    each branch writes straight into its slice of the concat output (no copy)."""
    from onnx import TensorProto, helper, numpy_helper

    def conv(name: str, src: str, cin: int, cout: int, k: int, **attrs: object) -> list:
        w = numpy_helper.from_array(rng.standard_normal((cout, cin, k, k)).astype(np.float32) * 0.3,
                                    f"{name}_w")
        b = numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), f"{name}_b")
        node = helper.make_node("Conv", [src, w.name, b.name], [name], name=name,
                                kernel_shape=[k, k], **attrs)
        return [node, w, b]

    parts = [conv("c1", "x", 8, 6, 1), conv("c3", "x", 8, 5, 3, pads=[1, 1, 1, 1]),
             conv("c5", "x", 8, 4, 3, pads=[2, 2, 2, 2], dilations=[2, 2])]
    nodes = [p[0] for p in parts] + [
        helper.make_node("Concat", ["c1", "c3", "c5"], ["cat"], axis=1, name="cat"),
        helper.make_node("Relu", ["cat"], ["y"], name="relu")]
    inits = [t for p in parts for t in p[1:]]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         [1, 8, 9, 11])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 15, 9, 11])], inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    bounds = {}
    for mode in ("latency_first", "balanced", "memory_first"):
        result = pyc_cli.build(path, tmp_path / mode, mode=mode)
        bounds[mode] = result.plan.lower_bound_bytes
        if mode != "memory_first":  # memory_first keeps slices only where they lower the peak
            assert result.plan.concat_slices == {"cat": [0, 1, 2]}
            assert any(d.action == "concat_in_place" for d in result.context.decisions)
        x = rng.standard_normal((1, 8, 9, 11)).astype(np.float32)
        with pyc_cli.load(tmp_path / mode) as model:
            np.testing.assert_allclose(model.run({"x": x})["y"], onnxruntime_outputs(path, {"x": x})["y"],
                                       rtol=RTOL, atol=ATOL)
    assert bounds["memory_first"] <= bounds["balanced"]


@pytest.mark.parametrize("kernel", [1, 3])
def test_preactivation_is_computed_inside_the_conv(kernel: int, rng: np.random.Generator,
                                                   tmp_path: Path) -> None:
    """BN+ReLU on a tensor that something else also reads (as in DenseNet, where it is a concat
    output) feeds a conv: the conv applies it while gathering columns, no temporary is stored
    (built for any CPU: on AVX2/AVX-512 a 3x3 stride-1 conv runs as an implicit GEMM instead,
    which reads its input in place, and the BN+ReLU stays a loop of its own)."""
    from onnx import TensorProto, helper, numpy_helper

    def init(name: str, array: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(array.astype(np.float32), name)

    c = 12
    inits = [init("g", rng.standard_normal(c)), init("b", rng.standard_normal(c)),
             init("m", rng.standard_normal(c)), init("v", rng.random(c) + 0.5),
             init("w", rng.standard_normal((8, c, kernel, kernel)) * 0.3),
             init("cb", rng.standard_normal(8))]
    pad = kernel // 2
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"], name="shared"),
             helper.make_node("BatchNormalization", ["s", "g", "b", "m", "v"], ["bn"], name="bn"),
             helper.make_node("Relu", ["bn"], ["act"], name="relu"),
             helper.make_node("Conv", ["act", "w", "cb"], ["conv"], name="conv",
                              kernel_shape=[kernel, kernel], pads=[pad] * 4),
             helper.make_node("Concat", ["s", "conv"], ["y"], axis=1, name="cat")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                         [2, c, 7, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, c + 8, 7, 9])],
                              inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = pyc_cli.build(path, tmp_path / "art", cpu="portable")
    conv = next(n for n in result.graph.nodes if n.op == "Conv")
    assert conv.ann.prologue_from == ["bn_mul", "bn_add", "relu"]
    avx512 = pyc_cli.build(path, tmp_path / "avx512", cpu="skylake-avx512")
    conv512 = next(n for n in avx512.graph.nodes if n.op == "Conv")
    assert bool(conv512.ann.prologue) == (kernel == 1)
    assert conv512.ann.kernel is not None and (conv512.ann.kernel.candidate == "conv2d_implicit_gemm"
                                               or kernel == 1)
    assert [n.op for n in result.graph.nodes].count("pyc.Elementwise") == 1  # only the sigmoid
    x = rng.standard_normal((2, c, 7, 9)).astype(np.float32)
    with pyc_cli.load(tmp_path / "art") as model:
        np.testing.assert_allclose(model.run({"x": x})["y"], onnxruntime_outputs(path, {"x": x})["y"],
                                   rtol=RTOL, atol=ATOL)


def test_memory_first_rematerializes_a_cheap_long_lived_value(rng: np.random.Generator,
                                                             tmp_path: Path) -> None:
    """m = sigmoid(x) is read at the start and again at the end; holding it across the big
    middle raises the peak, recomputing it from x before its last use does not."""
    from onnx import TensorProto, helper, numpy_helper

    def weight(name: str) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal((256, 256)) * 0.06).astype(np.float32),
                                       name)

    nodes = [helper.make_node("Sigmoid", ["x"], ["m"], name="gate"),
             helper.make_node("MatMul", ["m", "w1"], ["a"], name="mm1"),
             helper.make_node("Relu", ["a"], ["ar"], name="r1"),
             helper.make_node("MatMul", ["ar", "w2"], ["b"], name="mm2"),
             helper.make_node("Tanh", ["b"], ["bt"], name="t2"),
             helper.make_node("MatMul", ["bt", "w3"], ["c"], name="mm3"),
             helper.make_node("Add", ["c", "m"], ["y"], name="residual")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 256])],
                              [weight("w1"), weight("w2"), weight("w3")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    balanced = pyc_cli.build(path, tmp_path / "balanced", mode="balanced")
    lean = pyc_cli.build(path, tmp_path / "lean", mode="memory_first")
    assert any(d.action == "rematerialize" for d in lean.context.decisions)
    assert lean.plan.lower_bound_bytes < balanced.plan.lower_bound_bytes
    assert sum(format_program(n.ann.program) == ["t0:f32=Sigmoid(in0)"] for n in lean.graph.nodes) == 2
    x = rng.standard_normal((64, 256)).astype(np.float32)
    with pyc_cli.load(tmp_path / "lean") as model:
        np.testing.assert_allclose(model.run({"x": x})["y"], onnxruntime_outputs(path, {"x": x})["y"],
                                   rtol=RTOL, atol=ATOL)
