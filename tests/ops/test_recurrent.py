"""LSTM, GRU and RNN built by PyC match onnxruntime (fresh random weights, inputs and states,
rtol 1e-4 / atol 1e-5) across directions, layouts, sequence lengths, initial states,
peepholes, clip and activation lists; the numpy reference agrees too; bad attributes are
refused with PYC codes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import onnxruntime_outputs
from onnx import TensorProto, helper, numpy_helper

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.ir.graph import Node
from pyc_cli.ops import registry

RTOL, ATOL = 1e-4, 1e-5
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
OUTPUTS = {"LSTM": ("Y", "Y_h", "Y_c"), "GRU": ("Y", "Y_h"), "RNN": ("Y", "Y_h")}


@dataclass
class Case:
    op: str
    direction: str = "forward"
    layout: int = 0
    T: int = 5
    B: int = 3
    I: int = 4  # noqa: E741
    H: int = 6
    bias: bool = True
    lengths: list[int] | None = None
    initial: bool = False
    peepholes: bool = False
    outputs: tuple[str, ...] | None = None  # "" skips an output
    attrs: dict = field(default_factory=dict)
    opset: int = 14


def _model(case: Case, rng: np.random.Generator) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    D = 2 if case.direction == "bidirectional" else 1  # noqa: N806
    G, H = GATES[case.op], case.H  # noqa: N806
    x_shape = (case.B, case.T, case.I) if case.layout else (case.T, case.B, case.I)
    state_shape = (case.B, D, H) if case.layout else (D, case.B, H)
    feeds = {"X": rng.standard_normal(x_shape).astype(np.float32)}
    inits = [numpy_helper.from_array((rng.standard_normal((D, G * H, case.I)) * 0.5).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((D, G * H, H)) * 0.5).astype(np.float32), "R")]
    inputs = ["X", "W", "R", "", "", "", "", ""]
    if case.bias:
        inits.append(numpy_helper.from_array(
            (rng.standard_normal((D, 2 * G * H)) * 0.5).astype(np.float32), "B"))
        inputs[3] = "B"
    if case.lengths is not None:
        feeds["L"] = np.array(case.lengths, np.int32)
        inputs[4] = "L"
    if case.initial:
        feeds["H0"] = rng.standard_normal(state_shape).astype(np.float32)
        inputs[5] = "H0"
        if case.op == "LSTM":
            feeds["C0"] = rng.standard_normal(state_shape).astype(np.float32)
            inputs[6] = "C0"
    if case.peepholes:
        inits.append(numpy_helper.from_array(
            (rng.standard_normal((D, 3 * H)) * 0.5).astype(np.float32), "P"))
        inputs[7] = "P"
    while inputs and not inputs[-1]:
        inputs.pop()
    outputs = list(case.outputs or OUTPUTS[case.op])
    attrs = {"hidden_size": H, "direction": case.direction, **case.attrs}
    if case.layout:
        attrs["layout"] = 1
    node = helper.make_node(case.op, inputs, outputs, name=f"the_{case.op.lower()}", **attrs)
    graph_inputs = [helper.make_tensor_value_info(n, TensorProto.INT32 if n == "L" else TensorProto.FLOAT,
                                                  a.shape) for n, a in feeds.items()]
    y_shape = (case.B, case.T, D, H) if case.layout else (case.T, D, case.B, H)
    graph_outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, y_shape if k == 0 else state_shape)
                     for k, n in enumerate(outputs) if n]
    model = helper.make_model(helper.make_graph([node], "g", graph_inputs, graph_outputs, inits),
                              opset_imports=[helper.make_opsetid("", case.opset)])
    return model, feeds


def _onnxruntime(tmp_path: Path, case: Case, model: onnx.ModelProto, feeds: dict[str, np.ndarray]
                 ) -> dict[str, np.ndarray]:
    """onnxruntime's outputs; it has no batch-first (layout 1) kernels, so such a case runs as
    the same model in layout 0 with transposed inputs and outputs."""
    if not case.layout:
        path = tmp_path / "model.onnx"
        onnx.save(model, path)
        return onnxruntime_outputs(path, feeds)
    seq_first = replace(case, layout=0)
    model0, _ = _model(seq_first, np.random.default_rng(0))
    del model0.graph.initializer[:]
    model0.graph.initializer.extend(model.graph.initializer)
    path = tmp_path / "model_layout0.onnx"
    onnx.save(model0, path)
    swapped = {name: value.transpose(1, 0, 2) if value.ndim == 3 else value for name, value in feeds.items()}
    outputs = onnxruntime_outputs(path, swapped)
    return {name: value.transpose(2, 0, 1, 3) if value.ndim == 4 else value.transpose(1, 0, 2)
            for name, value in outputs.items()}


def _attribute(attr: onnx.AttributeProto) -> object:
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    return value


def _compare(tmp_path: Path, case: Case, rng: np.random.Generator) -> None:
    model, feeds = _model(case, rng)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    expected = _onnxruntime(tmp_path, case, model, feeds)
    pyc_cli.build(path, tmp_path / "artifact")
    with pyc_cli.load(tmp_path / "artifact") as compiled:
        got = compiled.run(feeds)
    assert sorted(got) == sorted(expected)
    for name, want in expected.items():
        np.testing.assert_allclose(got[name], want, rtol=RTOL, atol=ATOL, err_msg=name)
    reference = registry.get(case.op).evaluate(
        Node(case.op, "n", list(model.graph.node[0].input), list(model.graph.node[0].output),
             {a.name: _attribute(a) for a in model.graph.node[0].attribute}),
        [_value(model, feeds, name) for name in model.graph.node[0].input])
    for name, value in zip(model.graph.node[0].output, reference):
        if name:
            np.testing.assert_allclose(value, expected[name], rtol=RTOL, atol=ATOL, err_msg=name)


def _value(model: onnx.ModelProto, feeds: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    if not name:
        return None
    for tensor in model.graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    return feeds[name]


CASES = {
    "lstm_forward": Case("LSTM"),
    "lstm_reverse_initial": Case("LSTM", "reverse", initial=True),
    "lstm_bidirectional_peepholes": Case("LSTM", "bidirectional", peepholes=True, initial=True),
    "lstm_lengths": Case("LSTM", "bidirectional", lengths=[5, 2, 3], initial=True),
    "lstm_batch_first": Case("LSTM", "bidirectional", layout=1, initial=True, lengths=[1, 5, 4]),
    "lstm_no_bias_only_states": Case("LSTM", bias=False, outputs=("", "Y_h", "Y_c")),
    "lstm_only_y": Case("LSTM", "reverse", outputs=("Y",)),
    "lstm_input_forget_clip": Case("LSTM", attrs={"input_forget": 1, "clip": 0.7}),
    "lstm_activations": Case("LSTM", "bidirectional", attrs={
        "activations": ["HardSigmoid", "LeakyRelu", "Softsign", "Sigmoid", "Elu", "ScaledTanh"],
        "activation_alpha": [0.3, 0.05, 0.9, 1.1], "activation_beta": [0.4, 0.8]}),
    "lstm_opset7": Case("LSTM", "bidirectional", opset=7),
    "gru_forward": Case("GRU"),
    "gru_linear_before_reset": Case("GRU", "bidirectional", initial=True,
                                    attrs={"linear_before_reset": 1}),
    "gru_lengths_batch_first": Case("GRU", "reverse", layout=1, lengths=[2, 5, 0], initial=True),
    "gru_clip_activations": Case("GRU", attrs={"clip": 0.5, "activations": ["Sigmoid", "Softplus"]}),
    "gru_no_bias": Case("GRU", "bidirectional", bias=False),
    "rnn_forward": Case("RNN"),
    "rnn_bidirectional_relu": Case("RNN", "bidirectional", initial=True,
                                   attrs={"activations": ["Relu", "Affine"],
                                          "activation_alpha": [0.5], "activation_beta": [0.1]}),
    "rnn_lengths": Case("RNN", "reverse", lengths=[3, 1, 5], layout=1),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_onnxruntime(name: str, tmp_path: Path, rng: np.random.Generator) -> None:
    _compare(tmp_path, CASES[name], rng)


def test_y_is_computed_even_when_the_model_skips_it(tmp_path: Path, rng: np.random.Generator) -> None:
    model, _ = _model(Case("LSTM", outputs=("", "Y_h")), rng)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    result = pyc_cli.build(path, tmp_path / "artifact")
    assert any(d.action == "name_sequence_output" for d in result.context.decisions)


@pytest.mark.parametrize(("attrs", "message"), [
    ({"direction": "sideways"}, "direction 'sideways'"),
    ({"activations": ["Sigmoid", "Tanh", "Swish"]}, "activation 'Swish' is not supported"),
    ({"activations": ["Sigmoid", "Tanh"]}, "needs 3 activations, got 2"),
])
def test_bad_attributes_are_refused(attrs: dict, message: str, tmp_path: Path,
                                    rng: np.random.Generator) -> None:
    model, _ = _model(Case("LSTM", attrs=attrs), rng)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    with pytest.raises(PycError) as info:
        pyc_cli.build(path, tmp_path / "artifact")
    assert info.value.code == "E008"
    assert message in str(info.value)
    assert "the_lstm" in str(info.value)
    assert not (tmp_path / "artifact").exists()
