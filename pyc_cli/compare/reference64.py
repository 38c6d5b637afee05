"""A float64 reference: the source model with every float32 value made float64, evaluated by the
ONNX reference evaluator (numpy), else by onnxruntime on the same float64 copy.

Why the reference evaluator first: it implements every standard ONNX op for float64 in numpy
(onnxruntime's CPU provider has no float64 kernel for Conv, ConvTranspose, pooling and others,
and refuses such models), so it is the one that runs the most models; its Conv is an im2col
matmul, fast enough for ResNet-50. onnxruntime on the float64 copy serves the models the
evaluator cannot run (contrib ops of the com.microsoft domain). One evaluator op is replaced:
its BatchNormalization of opsets 9-13 normalises by the batch's own statistics whenever the
`momentum` attribute has a value, which the schema's default always gives; a single-output
BatchNormalization is inference (the spec: training mode has more outputs). Both compute in float64, so
either is the true value to within float64 rounding, far below any float32 kernel's error.

The copy: float32 initializers, inputs, outputs, Constant / ConstantOfShape values and Cast
targets become float64 (the evaluator's LayerNormalization computes in its input's type whatever
its stash_type says); an input or output the op's
schema fixes to float32 (Resize scales, quantisation scales) is cast
to float32 and back around that node, so the copy stays a valid model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import PycError

FLOAT, DOUBLE = TensorProto.FLOAT, TensorProto.DOUBLE
_DTYPE_ATTRIBUTES = ("to", "dtype")  # Cast, RandomNormal*, RandomUniform*, EyeLike, Multinomial


def run_float64(model_path: Path, feeds: dict[str, np.ndarray]
                ) -> tuple[dict[str, np.ndarray], str]:
    """The model's outputs computed in float64, and the name of what computed them. PYC-E044
    when neither the reference evaluator nor onnxruntime can run the float64 copy."""
    model = to_float64(onnx.load(str(model_path)))
    wide = {name: v.astype(np.float64) if v.dtype == np.float32 else v
            for name, v in feeds.items()}
    failures = []
    for name, runner in (("onnx reference evaluator (float64)", _evaluator),
                         ("onnxruntime on a float64 copy", _onnxruntime)):
        try:
            return runner(model, wide), name
        except Exception as exc:  # noqa: BLE001  (each runner raises its own exception types)
            failures.append(f"{name}: {str(exc).splitlines()[0][:200] if str(exc) else exc!r}")
    raise PycError("E044", "no float64 reference could run the model", where=str(model_path),
                   hint="; ".join(failures))


def _evaluator(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(model, new_ops=[_batch_normalization()])
    names = [o.name for o in model.graph.output]
    return dict(zip(names, evaluator.run(None, feeds)))


def _batch_normalization() -> type:
    """BatchNormalization for the evaluator: inference when the node has one output, else the
    evaluator's own training mode."""
    from onnx.reference.op_run import OpRun
    from onnx.reference.ops import op_batch_normalization as bn

    class BatchNormalization(OpRun):
        op_domain = ""

        def _run(self, x, scale, bias, mean, var, epsilon=None, momentum=None,  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
                 training_mode=None, is_test=None, spatial=None):  # noqa: ANN001, ARG002
            eps = 1e-5 if epsilon is None else epsilon
            if len([o for o in self.onnx_node.output if o]) == 1:
                return (bn._batchnorm_test_mode(x, scale, bias, mean, var, epsilon=eps),)
            y, saved_mean, saved_var, running_mean, running_var = bn._batchnorm_training_mode(
                x, scale, bias, mean, var, 0.9 if momentum is None else momentum, eps)
            outputs = (y, running_mean, running_var, saved_mean, saved_var)  # the spec's order
            return outputs[:len(self.onnx_node.output)]

    return BatchNormalization


def _onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from .reference import onnxruntime

    ort = onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def to_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` computing in float64 wherever it computed in float32."""
    wide = onnx.ModelProto()
    wide.CopyFrom(model)
    opsets = {o.domain or "": o.version for o in wide.opset_import}
    _graph(wide.graph, opsets)
    return wide


def _graph(graph: onnx.GraphProto, opsets: dict[str, int]) -> None:
    for value in (*graph.input, *graph.output):
        _widen_type(value.type)
    del graph.value_info[:]  # re-inferred by the runner; a stale float32 type would conflict
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type == FLOAT:
            graph.initializer[index].CopyFrom(_widen_tensor(tensor))
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        nodes += _node(node, opsets)
    del graph.node[:]
    graph.node.extend(nodes)


def _widen_type(proto: onnx.TypeProto) -> None:
    kind = proto.WhichOneof("value")
    if kind == "tensor_type" and proto.tensor_type.elem_type == FLOAT:
        proto.tensor_type.elem_type = DOUBLE
    elif kind in ("sequence_type", "optional_type"):
        _widen_type(getattr(proto, kind).elem_type)


def _widen_tensor(tensor: onnx.TensorProto) -> onnx.TensorProto:
    return numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float64), tensor.name)


def _node(node: onnx.NodeProto, opsets: dict[str, int]) -> list[onnx.NodeProto]:
    """The node made float64, with casts around the inputs and outputs its schema fixes to
    float32."""
    if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
        _constant(node)
    for attribute in node.attribute:
        _attribute(attribute, opsets)
    fixed_in, fixed_out = _fixed_float(node, opsets)
    before, after = [], []
    for index in fixed_in:
        narrow = f"{node.input[index]}__pyc_float32_{node.name or node.op_type}_{index}"
        before.append(helper.make_node("Cast", [node.input[index]], [narrow], to=FLOAT))
        node.input[index] = narrow
    for index in fixed_out:
        narrow = f"{node.output[index]}__pyc_float32"
        after.append(helper.make_node("Cast", [narrow], [node.output[index]], to=DOUBLE))
        node.output[index] = narrow
    return [*before, node, *after]


def _constant(node: onnx.NodeProto) -> None:
    """value_float / value_floats give a float32 constant: restated as a float64 tensor."""
    for attribute in list(node.attribute):
        if attribute.name in ("value_float", "value_floats"):
            values = np.array(attribute.f if attribute.name == "value_float" else
                              list(attribute.floats), np.float64)
            node.attribute.remove(attribute)
            node.attribute.append(helper.make_attribute(
                "value", numpy_helper.from_array(values, node.output[0])))


def _attribute(attribute: onnx.AttributeProto, opsets: dict[str, int]) -> None:
    if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == FLOAT:
        attribute.t.CopyFrom(_widen_tensor(attribute.t))
    elif attribute.type == onnx.AttributeProto.INT and attribute.name in _DTYPE_ATTRIBUTES \
            and attribute.i == FLOAT:
        attribute.i = DOUBLE
    elif attribute.type == onnx.AttributeProto.GRAPH:
        _graph(attribute.g, opsets)
    elif attribute.type == onnx.AttributeProto.GRAPHS:
        for graph in attribute.graphs:
            _graph(graph, opsets)


def _fixed_float(node: onnx.NodeProto, opsets: dict[str, int]) -> tuple[list[int], list[int]]:
    """The indices of the node's inputs and outputs its schema types `tensor(float)` itself
    (not through a type variable that float64 satisfies)."""
    schema = _schema(node, opsets)
    if schema is None:
        return [], []
    return (_fixed(schema.inputs, [i for i, name in enumerate(node.input) if name]),
            _fixed(schema.outputs, [i for i, name in enumerate(node.output) if name]))


def _schema(node: onnx.NodeProto, opsets: dict[str, int]) -> Any:
    domain = node.domain or ""
    try:
        return onnx.defs.get_schema(node.op_type, opsets.get(domain, 1), domain)
    except Exception:  # noqa: BLE001  (an unknown op: nothing known to fix)
        return None


def _fixed(params: Any, present: list[int]) -> list[int]:
    if not params:
        return []
    return [i for i in present if params[min(i, len(params) - 1)].type_str == "tensor(float)"]
