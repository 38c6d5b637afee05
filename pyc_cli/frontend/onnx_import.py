"""ONNX -> PyC IR: load (external data confined to the model's directory), check, convert, type."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import AttributeProto, ModelProto, numpy_helper
from onnx.external_data_helper import uses_external_data

from ..errors import PycError
from ..ir.graph import AttrValue, Graph, Node
from ..ir.types import DType, TensorType
from ..ops import registry
from ..passes.infer_shapes import propagate_types

InputShapes = dict[str, tuple[int, ...]]
MIN_OPSET, MAX_OPSET = 7, 28


def import_model(path: str | Path, input_shapes: InputShapes | None = None) -> Graph:
    """Load an ONNX file and return a fully typed PyC graph."""
    model = load_model(Path(path))
    graph = convert(model, input_shapes or {})
    graph.types = propagate_types(graph)
    _check_dtypes(graph)
    return graph


def load_model(path: Path) -> ModelProto:
    if not path.is_file():
        raise PycError("E001", f"model file not found: {path}", hint="check the path")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise PycError("E002", f"cannot parse {path.name} as ONNX ({type(exc).__name__})",
                       where=str(path), hint="pass a valid .onnx file") from exc
    if not model.graph.node and not model.graph.output:
        raise PycError("E002", f"{path.name} holds no ONNX graph (empty or not a model)",
                       where=str(path), hint="pass a valid .onnx file")
    _load_external_data(model, path.parent)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise PycError("E003", f"onnx.checker rejected the model: {str(exc).splitlines()[0]}",
                       where=str(path), hint="fix or re-export the model") from exc
    return model


def _load_external_data(model: ModelProto, base: Path) -> None:
    """Read external tensor data, refusing any location that escapes the model's directory."""
    root = base.resolve()
    for tensor in _all_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        target = (root / location).resolve()
        if os.path.isabs(location) or not target.is_relative_to(root):
            raise PycError("E004", f"external data of tensor {tensor.name!r} points outside the "
                           f"model directory ({location!r})", where=str(base),
                           hint="keep external data files next to the model")
        if not target.is_file():
            raise PycError("E004", f"external data file {location!r} of tensor {tensor.name!r} "
                           "is missing", where=str(base), hint="copy it next to the model")
        offset, length = int(info.get("offset", 0)), info.get("length")
        with open(target, "rb") as handle:
            handle.seek(offset)
            tensor.raw_data = handle.read(int(length)) if length else handle.read()
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT


def _all_tensors(model: ModelProto) -> list[onnx.TensorProto]:
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors += [a.t for a in node.attribute if a.type == AttributeProto.TENSOR]
    return tensors


def _default_opset(model: ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise PycError("E010", "the model imports no default-domain opset", hint="re-export it")


def convert(model: ModelProto, input_shapes: InputShapes, check_ops: bool = True) -> Graph:
    """ONNX graph -> untyped PyC graph. `check_ops=False` (pyc check) keeps unsupported nodes
    so that every problem can be reported, not just the first kind."""
    opset = _default_opset(model)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise PycError("E010", f"opset {opset} is outside the supported range {MIN_OPSET}..{MAX_OPSET}",
                       hint="convert the model with onnx.version_converter")
    onnx_graph = model.graph
    constants = {t.name: _to_array(t) for t in onnx_graph.initializer}
    graph = Graph(onnx_graph.name or "main", [], [o.name for o in onnx_graph.output], [], {},
                  constants, opset)
    if check_ops:
        _check_supported(onnx_graph, opset)
    _check_input_shape_names(onnx_graph, input_shapes, constants)
    for value in onnx_graph.input:
        if value.name not in constants:
            graph.inputs.append(value.name)
            graph.types[value.name] = _input_type(value, input_shapes.get(value.name))
    used_names: set[str] = set()
    for index, proto in enumerate(onnx_graph.node):
        name = _unique_node_name(proto.name or f"{proto.op_type}_{index}", used_names)
        attrs = {a.name: _attr_value(a, name) for a in proto.attribute}
        if proto.op_type == "Constant":
            (value,) = registry.get("Constant").evaluate(Node("Constant", name, [], [], attrs), [])
            graph.constants[proto.output[0]] = np.asarray(value)
            continue
        op = registry.qualified(proto.domain, proto.op_type)
        graph.nodes.append(Node(op, name, list(proto.input), list(proto.output), attrs))
    return graph


def _check_input_shape_names(onnx_graph: onnx.GraphProto, shapes: InputShapes,
                             constants: dict[str, np.ndarray]) -> None:
    names = [v.name for v in onnx_graph.input if v.name not in constants]
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise PycError("E006", f"--input-shape names unknown input(s) {unknown}",
                       where=f"model inputs are {names}", hint="use one of the model input names")


def _input_type(value: onnx.ValueInfoProto, override: tuple[int, ...] | None) -> TensorType:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise PycError("E008", f"input {value.name!r} has type {kind or 'undefined'}; only tensor "
                       "inputs are supported", where=f"input {value.name!r}")
    tensor_type = value.type.tensor_type
    try:
        dtype = DType.from_onnx(tensor_type.elem_type)
    except KeyError:
        raise PycError("E008", f"input {value.name!r} has an unsupported element type "
                       f"{onnx.TensorProto.DataType.Name(tensor_type.elem_type)}") from None
    dims = list(tensor_type.shape.dim)
    if override is not None:
        fixed_dims = [d.dim_value for d in dims if d.HasField("dim_value")]
        if len(override) != len(dims) or any(
            d.HasField("dim_value") and d.dim_value != o for d, o in zip(dims, override)
        ):
            raise PycError("E006", f"--input-shape {value.name}={','.join(map(str, override))} "
                           f"does not fit the declared shape {_describe_dims(dims)}",
                           where=f"input {value.name!r}", hint=f"static dims are {fixed_dims}")
        return TensorType(dtype, tuple(override))
    missing = [_describe_dim(d, i) for i, d in enumerate(dims) if not d.HasField("dim_value")]
    if missing:
        raise PycError("E005", f"input {value.name!r} has symbolic dims {missing} "
                       f"(shape {_describe_dims(dims)})", where=f"input {value.name!r}",
                       hint=f"fix them with --input-shape {value.name}=d0,d1,...")
    return TensorType(dtype, tuple(int(d.dim_value) for d in dims))


def _describe_dim(dim: onnx.TensorShapeProto.Dimension, index: int) -> str:
    return dim.dim_param if dim.HasField("dim_param") else f"dim{index}"


def _describe_dims(dims: list) -> str:
    return "[" + ",".join(str(d.dim_value) if d.HasField("dim_value") else
                          (d.dim_param or "?") for d in dims) + "]"


def schema_version(domain: str, op_type: str, opset: int) -> int | None:
    """The version of the op's ONNX schema that a model importing `opset` uses (None: unknown)."""
    try:
        return int(onnx.defs.get_schema(op_type, opset, domain).since_version)
    except onnx.defs.SchemaError:
        return None


def _check_supported(onnx_graph: onnx.GraphProto, opset: int) -> None:
    """Raise one error listing every unsupported node, not just the first: E007 when an op is
    unknown, else E010 when an op's schema version (for this opset) is outside what PyC implements."""
    problems: dict[str, list[str]] = {}
    unknown = False
    for index, node in enumerate(onnx_graph.node):
        key = registry.qualified(node.domain, node.op_type)
        opdef = registry.lookup(key)
        label = node.name or f"{node.op_type}_{index}"
        version = schema_version(node.domain, node.op_type, opset) if node.domain in ("", "ai.onnx") \
            else None
        if opdef is None:
            unknown = True
            problems.setdefault(f"unknown op {key}", []).append(label)
        elif version is not None and not opdef.since <= version <= opdef.until:
            reason = (f"{key}-{version} (the schema opset {opset} uses) is not supported; "
                      f"PyC implements {key} versions {opdef.since}..{opdef.until}")
            problems.setdefault(reason, []).append(label)
    if problems:
        total = sum(len(v) for v in problems.values())
        listing = "; ".join(f"{reason}: {', '.join(repr(n) for n in names)}"
                            for reason, names in sorted(problems.items()))
        raise PycError("E007" if unknown else "E010", f"{total} node(s) cannot be compiled: {listing}",
                       hint="see docs/op_coverage.md for supported ops and versions")


def _check_dtypes(graph: Graph) -> None:
    """Every op accepts only the element types its unit declares (PYC-E008 otherwise)."""
    for node in graph.nodes:
        opdef = registry.get(node.op)
        for value in opdef.dtype_values(node):
            dtype = graph.types[value].dtype
            if dtype not in opdef.dtypes:
                allowed = ", ".join(d.value for d in opdef.dtypes)
                raise PycError("E008", f"{node.op} does not support element type {dtype.value} "
                               f"(value {value!r}; supported: {allowed})", where=f"node {node.name!r}",
                               hint="cast the value to a supported type")


def _unique_node_name(name: str, used: set[str]) -> str:
    candidate, index = name, 1
    while candidate in used:
        candidate, index = f"{name}_{index}", index + 1
    used.add(candidate)
    return candidate


def _to_array(tensor: onnx.TensorProto) -> np.ndarray:
    try:
        DType.from_onnx(tensor.data_type)
    except KeyError:
        raise PycError("E008", f"tensor {tensor.name!r} has an unsupported element type "
                       f"{onnx.TensorProto.DataType.Name(tensor.data_type)}") from None
    return np.asarray(numpy_helper.to_array(tensor), order="C")


def _attr_value(attr: AttributeProto, node_name: str) -> AttrValue:
    kind = attr.type
    if kind == AttributeProto.INT:
        return int(attr.i)
    if kind == AttributeProto.FLOAT:
        return float(np.float32(attr.f))
    if kind == AttributeProto.STRING:
        return attr.s.decode("utf-8", errors="replace")
    if kind == AttributeProto.INTS:
        return [int(v) for v in attr.ints]
    if kind == AttributeProto.FLOATS:
        return [float(v) for v in attr.floats]
    if kind == AttributeProto.STRINGS:
        return [s.decode("utf-8", errors="replace") for s in attr.strings]
    if kind == AttributeProto.TENSOR:
        return _to_array(attr.t)
    raise PycError("E008", f"attribute {attr.name!r} of kind "
                   f"{AttributeProto.AttributeType.Name(kind)} is not supported",
                   where=f"node {node_name!r}", hint="subgraph attributes are not compiled yet")
