"""The reference runtime: onnxruntime (an optional dependency) on the source model."""

from __future__ import annotations

import ctypes
import tempfile
from pathlib import Path
from types import ModuleType

import ml_dtypes
import numpy as np
import onnx

from ..errors import PycError

# a serialized protobuf cannot exceed 2 GiB: larger models go through a temporary directory
_PROTO_LIMIT = 2**31 - 2**20


def onnxruntime() -> ModuleType:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise PycError("E044", "--compare ort needs onnxruntime, which is not installed",
                       where=f"import onnxruntime: {exc}",
                       hint="pip install onnxruntime (or pip install 'pyc-compiler[test]')") from exc
    return ort


def reference_name() -> str:
    return f"onnxruntime {onnxruntime().__version__}"


def run_reference(model_path: Path, feeds: dict[str, np.ndarray],
                  extra_outputs: list[str] | None = None) -> dict[str, np.ndarray]:
    """Run the model on the CPU provider with graph optimizations off (each ONNX node runs as
    written), returning its outputs plus `extra_outputs`, intermediate values made graph outputs."""
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="pyc-reference-") as work:
        model: str | bytes = str(model_path)
        if extra_outputs:
            model = _with_outputs(model_path, extra_outputs, Path(work))
        try:
            session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            values = _run_session(ort, session, feeds)
        except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own exception types)
            raise PycError("E044", f"onnxruntime cannot run the source model: {exc}",
                           where=str(model_path),
                           hint="check the inputs; the reference must run the model itself") from exc
    return dict(zip(names, values))


def _run_session(ort: ModuleType, session: object, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every output of `session.run`, through IO binding where an input or output is bfloat16
    (onnxruntime's Python API neither takes nor returns bfloat16 numpy arrays: ml_dtypes')."""
    bf16 = np.dtype(ml_dtypes.bfloat16)
    outputs = session.get_outputs()  # type: ignore[attr-defined]
    if all(np.asarray(v).dtype != bf16 for v in feeds.values()) and \
            all(o.type != "tensor(bfloat16)" for o in outputs):
        return session.run([o.name for o in outputs], feeds)  # type: ignore[attr-defined, no-any-return]
    binding = session.io_binding()  # type: ignore[attr-defined]
    for name, value in feeds.items():
        value = np.ascontiguousarray(value)
        if value.dtype == bf16:
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                value.view(np.uint16), onnx.TensorProto.BFLOAT16))
        else:
            binding.bind_cpu_input(name, value)
    for output in outputs:
        binding.bind_output(output.name, "cpu")
    session.run_with_iobinding(binding)  # type: ignore[attr-defined]
    values = []
    for output, value in zip(outputs, binding.get_outputs()):
        if output.type != "tensor(bfloat16)":
            values.append(value.numpy())
            continue
        shape = tuple(value.shape())
        count = int(np.prod(shape, dtype=np.int64))
        raw = (ctypes.c_uint16 * max(1, count)).from_address(value.data_ptr())
        values.append(np.frombuffer(bytes(raw), np.uint16, count).copy().reshape(shape).view(bf16))
    return values


def _with_outputs(model_path: Path, names: list[str], work: Path) -> str | bytes:
    """The model with `names` appended to its graph outputs, typed by ONNX shape inference where
    it can type them (onnxruntime infers the rest)."""
    model = onnx.load(str(model_path))
    existing = {o.name for o in model.graph.output}
    typed = _inferred_types(model)
    for name in names:
        if name not in existing:
            model.graph.output.append(typed.get(name) or onnx.ValueInfoProto(name=name))
    if model.ByteSize() < _PROTO_LIMIT:
        return model.SerializeToString()
    path = work / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="model.onnx.data")
    return str(path)


def _inferred_types(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    if model.ByteSize() >= _PROTO_LIMIT:
        return {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001  (untyped outputs still work: onnxruntime infers them)
        return {}
    return {v.name: v for v in inferred.graph.value_info if v.type.HasField("tensor_type")}
