"""The blocked (flash-style) attention kernel against onnxruntime on the unfused pattern and
numpy float64: MiniLM's head sizes at odd sequence lengths (1, 7, 129, 511: partial row
blocks, partial key tiles, a second key block), key-padding masks of the lowest float and of
-inf (whole key blocks masked, padding at the start too), static and symbolic dims (one build
run at many shapes), each vector ISA this machine can run (AVX-512, AVX2, the portable vector
extensions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

import pyc_cli
from pyc_cli.ir.symbolic import parse_input_shapes
from pyc_cli.targets.cpu.features import host_features

F32 = np.float32
HEADS = 12
RTOL, ATOL = 1e-4, 2e-5  # float32 sums of D products and T weighted values


def _isas() -> list[tuple[str, str]]:
    """(cpu, cpu_features) per ISA this host runs: the widest, AVX2 without AVX-512, portable."""
    features = host_features() or set()
    isas = [("native", "")]
    if "avx512f" in features and "avx2" in features:
        isas.append(("native", "-avx512f"))
    return isas + [("portable", "")]


def bert_attention(batch: int | str, seq: int | str, d: int, e: int, scale: float
                   ) -> onnx.ModelProto:
    """MatMul(Q, Kt) * scale + mask[b, 1, 1, t] -> Softmax -> MatMul(., V), BERT's pattern;
    dims may be names (dim_params)."""
    def value(name: str, dims: list[int | str]) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims)

    nodes = [helper.make_node("MatMul", ["q", "kt"], ["s0"]),
             helper.make_node("Mul", ["s0", "scale"], ["s1"]),
             helper.make_node("Add", ["s1", "mask"], ["s2"]),
             helper.make_node("Softmax", ["s2"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["y"])]
    inputs = [value("q", [batch, HEADS, seq, d]), value("kt", [batch, HEADS, d, seq]),
              value("v", [batch, HEADS, seq, e]), value("mask", [batch, 1, 1, seq])]
    graph = helper.make_graph(nodes, "attention", inputs, [value("y", [batch, HEADS, seq, e])],
                              [onnx.numpy_helper.from_array(np.array(scale, F32), "scale")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def feeds(rng: np.random.Generator, batch: int, seq: int, d: int, e: int, fill: float,
          left: bool) -> dict[str, np.ndarray]:
    """Random Q, Kt, V; a key-padding mask per batch row (`fill` on the padded keys, every row
    keeps at least one key; `left`: the padding first)."""
    out = {"q": rng.standard_normal((batch, HEADS, seq, d)).astype(F32),
           "kt": rng.standard_normal((batch, HEADS, d, seq)).astype(F32),
           "v": rng.standard_normal((batch, HEADS, seq, e)).astype(F32)}
    mask = np.zeros((batch, 1, 1, seq), F32)
    for b in range(batch):
        kept = int(rng.integers(1, seq + 1))
        if left:
            mask[b, ..., :seq - kept] = fill
        else:
            mask[b, ..., kept:] = fill
    out["mask"] = mask
    return out


def float64_reference(f: dict[str, np.ndarray], scale: float) -> np.ndarray:
    scores = f["q"].astype(np.float64) @ f["kt"].astype(np.float64)
    scores = scores * np.float64(F32(scale)) + f["mask"].astype(np.float64)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True)) @ f["v"].astype(np.float64)


def check(compiled: pyc_cli.CompiledModel, session: ort.InferenceSession,
          f: dict[str, np.ndarray], scale: float) -> None:
    got = compiled.run(f)["y"]
    np.testing.assert_allclose(got, float64_reference(f, scale), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got, session.run(None, f)[0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cpu, cpu_features", _isas())
@pytest.mark.parametrize("batch, seq, d, fill, left", [
    (1, 1, 32, float(np.finfo(F32).min), False),
    (2, 7, 32, float(np.finfo(F32).min), True),
    (1, 129, 64, float("-inf"), False),
    (1, 511, 32, float("-inf"), True),  # left padding: whole key blocks of -inf first
])
def test_static_attention_matches_onnxruntime(cpu: str, cpu_features: str, batch: int, seq: int,
                                              d: int, fill: float, left: bool,
                                              rng: np.random.Generator, tmp_path: Path) -> None:
    scale = float(d) ** -0.5
    model = bert_attention(batch, seq, d, d, scale)
    onnx.save(model, tmp_path / "attention.onnx")
    result = pyc_cli.build(tmp_path / "attention.onnx", tmp_path / "art", cpu=cpu,
                           cpu_features=cpu_features, cache=False)
    assert [(n.op, n.ann.kernel_name) for n in result.graph.nodes] == \
        [("pyc.Attention", "attention_rows")]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with pyc_cli.load(result.artifact) as compiled:
        check(compiled, session, feeds(rng, batch, seq, d, d, fill, left), scale)


@pytest.mark.parametrize("cpu, cpu_features", _isas())
def test_symbolic_attention_matches_onnxruntime_at_many_shapes(
        cpu: str, cpu_features: str, rng: np.random.Generator, tmp_path: Path) -> None:
    """One build over batch 1..3 and seq 1..600 (three key blocks at the top), run at the
    extremes, 1 and odd lengths."""
    scale = 32 ** -0.5
    model = bert_attention("batch", "seq", 32, 32, scale)
    onnx.save(model, tmp_path / "attention.onnx")
    shapes, _ = parse_input_shapes(["q=batch:1..3,12,seq:1..600,32", "kt=batch,12,32,seq",
                                    "v=batch,12,seq,32", "mask=batch,1,1,seq"])
    result = pyc_cli.build(tmp_path / "attention.onnx", tmp_path / "art", input_shapes=shapes,
                           cpu=cpu, cpu_features=cpu_features, cache=False)
    assert [n.ann.kernel_name for n in result.graph.nodes] == ["attention_rows_dims"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with pyc_cli.load(result.artifact) as compiled:
        for batch, seq, left in ((1, 1, False), (2, 7, True), (3, 129, False), (1, 511, True),
                                 (3, 600, False), (1, 256, True), (2, 257, False)):
            check(compiled, session, feeds(rng, batch, seq, 32, 32, -1e30, left), scale)
