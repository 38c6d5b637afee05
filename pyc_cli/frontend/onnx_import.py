"""ONNX -> PyC IR: load (external data confined to the model's directory), check, convert, type."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx
from google.protobuf.message import Message
from onnx import AttributeProto, ModelProto, numpy_helper
from onnx.external_data_helper import uses_external_data

from ..errors import PycError
from ..ir.graph import AttrValue, Graph, Node, unique_name
from ..ir.types import DType, TensorType, check_addressable
from ..ops import control_flow, registry
from ..ops.propagate import known_values
from .branch_traps import types_with_unreachable_branches

InputShapes = dict[str, tuple[int, ...]]
MIN_OPSET, MAX_OPSET = 7, 28


class DecisionLog(Protocol):
    """Where the importer records what it decided (the pass context's decision log)."""

    def log(self, pass_name: str, nodes: list[str], action: str, reason: str,
            before: Any = None, after: Any = None, **extra: Any) -> None: ...


def import_model(path: str | Path, input_shapes: InputShapes | None = None,
                 ctx: DecisionLog | None = None,
                 input_values: Mapping[str, tuple[float, float]] | None = None) -> Graph:
    """Load an ONNX file and return a fully typed PyC graph (import decisions, such as
    inlined `If` branches, are logged to `ctx` when given). `input_values`: the declared values
    of inputs (Graph.value_bounds), which bound sizes computed from them at run time."""
    model = load_model(Path(path))
    graph = convert(model, input_shapes or {}, ctx=ctx)
    unknown = sorted(set(input_values or {}) - set(graph.inputs))
    if unknown:
        raise PycError("E006", f"--input-values names {', '.join(map(repr, unknown))}, which "
                       "the model has no input of", where=Path(path).name,
                       hint=f"the inputs are {', '.join(graph.inputs)}")
    graph.value_bounds = dict(input_values or {})
    graph.types = types_with_unreachable_branches(graph, ctx)
    _check_run_time_ifs(graph)
    _check_schema_types(graph)
    _check_dtypes(graph)
    return graph


def load_model(path: Path) -> ModelProto:
    try:
        found = path.is_file()
    except OSError as exc:  # e.g. a name too long for the file system
        raise PycError("E001", f"cannot read the model file {path}: {exc.strerror or exc}",
                       hint="check the path") from exc
    if not found and path.exists():  # a directory, FIFO or device
        raise PycError("E001", f"{path} is not a regular file", hint="pass the path of an .onnx file")
    if not found:
        raise PycError("E001", f"model file not found: {path}", hint="check the path")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise PycError("E002", f"cannot parse {path.name} as ONNX ({type(exc).__name__})",
                       where=str(path), hint="pass a valid .onnx file") from exc
    if not model.graph.node and not model.graph.output:
        raise PycError("E002", f"{path.name} holds no ONNX graph (empty or not a model)",
                       where=str(path), hint="pass a valid .onnx file")
    bad_text = _non_utf8_field(model)
    if bad_text:
        raise PycError("E002", f"{path.name} holds text that is not valid UTF-8 (field {bad_text})",
                       where=str(path), hint="pass a valid .onnx file")
    _load_external_data(model, path.parent)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise PycError("E003", f"onnx.checker rejected the model: {str(exc).splitlines()[0]}",
                       where=str(path), hint="fix or re-export the model") from exc
    _check_node_names(model.graph, path)
    return model


def _check_node_names(graph: onnx.GraphProto, path: Path, scope: str = "the main graph") -> None:
    """Two nodes of one graph may not share a non-empty name (onnx.checker lets it pass;
    onnxruntime refuses the model, and reports and decisions would mix the nodes up)."""
    seen: set[str] = set()
    for node in graph.node:
        if node.name and node.name in seen:
            raise PycError("E003", f"two nodes of {scope} are named {node.name!r}",
                           where=str(path), hint="give every node a unique name (or none)")
        seen.add(node.name)
        for attr in node.attribute:
            for sub in _subgraphs(attr):
                _check_node_names(sub, path, f"the {attr.name} of node {node.name!r}")


def _load_external_data(model: ModelProto, base: Path) -> None:
    """Read external tensor data, refusing any location that escapes the model's directory."""
    root = base.resolve()
    for tensor in _all_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        target = _external_file(root, location, tensor.name, base)
        offset = _external_int(info, "offset", tensor.name, base)
        length = _external_int(info, "length", tensor.name, base)
        tensor.raw_data = _read_external(tensor, target, offset, length, base)
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT


def _non_utf8_field(message: Message) -> str:
    """The first string field holding invalid UTF-8 ("" if none): protobuf hands such proto2
    strings back as bytes, which would break every name lookup after import."""
    for descriptor, value in message.ListFields():
        items = value if _is_repeated(descriptor) else [value]
        if descriptor.type == descriptor.TYPE_STRING:
            if any(not isinstance(item, str) for item in items):
                return descriptor.full_name
        elif descriptor.type == descriptor.TYPE_MESSAGE:
            found = next((f for f in map(_non_utf8_field, items) if f), "")
            if found:
                return found
    return ""


def _is_repeated(descriptor: object) -> bool:
    """FieldDescriptor.is_repeated (protobuf >= 5.29) or its older spelling, label."""
    repeated = getattr(descriptor, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return descriptor.label == descriptor.LABEL_REPEATED  # type: ignore[attr-defined]


def _external_file(root: Path, location: str, tensor: str, base: Path) -> Path:
    """The file a tensor's external data lives in: a regular file inside the model directory."""
    if not location or "\x00" in location:
        raise PycError("E004", f"external data of tensor {tensor!r} has an invalid location "
                       f"{location!r}", where=str(base), hint="re-export the model")
    try:
        target = (root / location).resolve()
        inside = not os.path.isabs(location) and target.is_relative_to(root)
        found = inside and target.is_file()
    except (OSError, RuntimeError) as exc:  # a name too long for the file system, a symlink loop
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise PycError("E004", f"external data location {location[:80]!r} of tensor {tensor!r} "
                       f"cannot be used: {reason or exc}", where=str(base),
                       hint="re-export the model") from exc
    if not inside:
        raise PycError("E004", f"external data of tensor {tensor!r} points outside the "
                       f"model directory ({location!r})", where=str(base),
                       hint="keep external data files next to the model")
    if not found:
        raise PycError("E004", f"external data file {location!r} of tensor {tensor!r} "
                       "is missing", where=str(base), hint="copy it next to the model")
    return target


def _external_int(info: dict[str, str], key: str, tensor: str, base: Path) -> int | None:
    """offset / length of external data: absent (None) or a non-negative decimal integer."""
    text = info.get(key)
    if text is None or (key == "length" and text == ""):
        return None
    if not text.isascii() or not text.isdigit():
        raise PycError("E004", f"external data of tensor {tensor!r} has {key} {text!r}, not a "
                       "non-negative integer", where=str(base), hint="re-export the model")
    return int(text)


def _read_external(tensor: onnx.TensorProto, target: Path, offset: int | None,
                   length: int | None, base: Path) -> bytes:
    """The tensor's bytes from its external file; a range past the end of the file, or a byte
    count that does not fit the tensor's shape, is refused (as onnxruntime does)."""
    def refuse(what: str) -> PycError:
        return PycError("E004", f"external data of tensor {tensor.name!r} {what}", where=str(base),
                        hint="re-save the model with its external data")

    try:
        size = target.stat().st_size
        start = offset or 0
        if start > size or (length is not None and start + length > size):
            raise refuse(f"spans bytes {start}..{start + (length or 0)} of {target.name} "
                         f"({size} bytes)")
        with open(target, "rb") as handle:
            handle.seek(start)
            data = handle.read(length) if length is not None else handle.read()
    except OSError as exc:
        raise refuse(f"cannot be read from {target.name}: {exc.strerror or exc}") from exc
    try:
        problem = _tensor_data_problem(onnx.TensorProto(data_type=tensor.data_type,
                                                        dims=tensor.dims, raw_data=data))
    except KeyError:  # an unsupported element type: _to_array names it
        problem = ""
    if problem:
        raise refuse(f"does not fit its shape: {problem}")
    return data


def _all_tensors(model: ModelProto) -> list[onnx.TensorProto]:
    return _graph_tensors(model.graph)


def _graph_tensors(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    """Initializers and tensor attributes of a graph and of every subgraph (If branches are
    imported too, so their external data must be confined like the main graph's)."""
    tensors = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.TENSOR:
                tensors.append(attr.t)
            for sub in _subgraphs(attr):
                tensors += _graph_tensors(sub)
    return tensors


def _subgraphs(attr: AttributeProto) -> list[onnx.GraphProto]:
    if attr.type == AttributeProto.GRAPH:
        return [attr.g]
    return list(attr.graphs) if attr.type == AttributeProto.GRAPHS else []


def _default_opset(model: ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise PycError("E010", "the model imports no default-domain opset", hint="re-export it")


def convert(model: ModelProto, input_shapes: InputShapes, check_ops: bool = True,
            ctx: DecisionLog | None = None) -> Graph:
    """ONNX graph -> untyped PyC graph. `check_ops=False` (pyc check) keeps unsupported nodes
    so that every problem can be reported, not just the first kind."""
    opset = _default_opset(model)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise PycError("E010", f"opset {opset} is outside the supported range {MIN_OPSET}..{MAX_OPSET}",
                       hint="convert the model with onnx.version_converter")
    onnx_graph = model.graph
    constants = {t.name: _to_array(t) for t in onnx_graph.initializer}
    output_names = [o.name for o in onnx_graph.output]
    graph = Graph(onnx_graph.name or "main", [], list(output_names), [], {}, constants, opset,
                  output_names)
    if check_ops:
        _check_supported(onnx_graph, opset)
    _check_io_names(onnx_graph)
    _check_input_shape_names(onnx_graph, input_shapes, constants)
    for value in onnx_graph.input:
        if value.name not in constants:
            graph.inputs.append(value.name)
            graph.types[value.name] = _input_type(value, input_shapes.get(value.name))
            check_addressable(f"input {value.name!r} ({graph.types[value.name]})",
                              graph.types[value.name].nbytes, f"input {value.name!r}")
    converter = _NodeConverter(graph, check_ops, ctx, _value_names(onnx_graph))
    converter.node_names.update(n.name for n in onnx_graph.node if n.name)  # generated names avoid them
    converter.add_nodes(onnx_graph.node, _Scope())
    if ctx is not None and (converter.inlined or converter.run_time):
        ctx.log("import", [], "node_count", "ONNX nodes (Constant nodes are constants) -> imported "
                "nodes, If branches inlined", before=sum(n.op_type != "Constant" for n in onnx_graph.node),
                after=len(graph.nodes))
    return graph


@dataclass
class _Scope:
    """How ONNX value names map to IR names while importing one graph body. The main graph keeps
    its names; an inlined branch gets fresh names prefixed with its If node's name, sees every
    value of the scopes around it, and `pinned` branch outputs take the If outputs' names."""

    names: dict[str, str] = field(default_factory=dict)
    prefix: str = ""
    pinned: dict[str, str] = field(default_factory=dict)

    def resolve(self, name: str) -> str:
        return self.names.get(name, name) if name else ""


class _NodeConverter:
    """Appends converted ONNX nodes to `graph`, inlining each `If` whose condition is known."""

    def __init__(self, graph: Graph, check_ops: bool, ctx: DecisionLog | None,
                 taken_values: set[str]) -> None:
        self.graph, self.check_ops, self.ctx = graph, check_ops, ctx
        self.node_names: set[str] = set()
        self.taken_values = taken_values  # every value name of the model, subgraphs included
        self.inlined = 0  # If nodes replaced by a branch
        self.run_time = 0  # If nodes replaced by both branches and a pyc.If

    def add_nodes(self, protos: list[onnx.NodeProto], scope: _Scope) -> int:
        """Convert `protos` in order; returns how many IR nodes were added."""
        before = len(self.graph.nodes)
        for index, proto in enumerate(protos):
            if proto.name and not scope.prefix:  # the main graph's names are unique (checked)
                name = proto.name
            else:
                name = unique_name(scope.prefix + (proto.name or f"{proto.op_type}_{index}"),
                                         self.node_names)
            op = registry.qualified(proto.domain, proto.op_type)
            if op == "If":
                self._convert_if(proto, name, scope)
                continue
            attrs = {a.name: _attr_value(a, name) for a in proto.attribute
                     if registry.lookup(op) is not None or not _subgraphs(a)}
            inputs = [scope.resolve(i) for i in proto.input]
            outputs = [self._define(o, scope) for o in proto.output]
            if op == "Constant":
                (value,) = registry.get("Constant").evaluate(Node(op, name, [], [], attrs), [])
                self.graph.constants[outputs[0]] = np.asarray(value)
                continue
            self.graph.nodes.append(Node(op, name, inputs, outputs, attrs))
        return len(self.graph.nodes) - before

    def _define(self, name: str, scope: _Scope) -> str:
        """The IR name of a value the current body defines."""
        if not name or not scope.prefix:
            return name
        new = scope.pinned.get(name) or unique_name(scope.prefix + name, self.taken_values)
        scope.names[name] = new
        return new

    def _convert_if(self, proto: onnx.NodeProto, name: str, scope: _Scope) -> None:
        outputs = [self._define(o, scope) for o in proto.output]
        cond = scope.resolve(proto.input[0])
        value = constant_condition(self.graph, cond, name)
        if value is None:
            self._convert_run_time_if(proto, name, scope, cond, outputs)
            return
        key = "then_branch" if value else "else_branch"
        branch = self._branch(proto, key, name, len(outputs))
        inner = _Scope(dict(scope.names), f"{name}/")
        copies = self._pin_branch_outputs(branch, outputs, inner)
        for tensor in branch.initializer:
            self.graph.constants[self._define(tensor.name, inner)] = _to_array(tensor)
        added = self.add_nodes(branch.node, inner)
        for index, (source, out) in enumerate(copies):
            # the output is an outer value or repeats another: an Identity (canonicalize removes it)
            copy_name = unique_name(f"{name}/output_{index}", self.node_names)
            self.graph.nodes.append(Node("Identity", copy_name, [inner.resolve(source)], [out]))
        self.inlined += 1
        if self.ctx is not None:
            self.ctx.log("import", [name], "inline_if", f"If {name!r}: condition is constant "
                         f"{value}, inlined {key} ({_count(len(branch.node), 'node')})",
                         after=added + len(copies), branch=key)

    def _branch(self, proto: onnx.NodeProto, key: str, name: str, outputs: int) -> onnx.GraphProto:
        """An If's branch body, checked: no inputs, one output per If output, supported ops."""
        branch = next(a.g for a in proto.attribute if a.name == key)
        if len(branch.output) != outputs or len(branch.input):
            raise PycError("E008", f"If {name!r}: its {key} has {len(branch.input)} input(s) and "
                           f"{len(branch.output)} output(s); the If has {outputs} output(s)",
                           where=f"node {name!r}", hint="re-export the model")
        if self.check_ops:
            _check_supported(branch, self.graph.opset, prefix=f"{name}/")
        return branch

    def _convert_run_time_if(self, proto: onnx.NodeProto, name: str, scope: _Scope, cond: str,
                             outputs: list[str]) -> None:
        """An If whose condition is known only at run time: both branches inlined (fresh names
        under NAME/then/ and NAME/else/), then a pyc.If selecting their outputs; which branch's
        nodes run is decided from the condition at run time (ir/guards.py)."""
        selected, added = [], []
        for key, tag in (("then_branch", "then"), ("else_branch", "else")):
            branch = self._branch(proto, key, name, len(outputs))
            inner = _Scope(dict(scope.names), f"{name}/{tag}/")
            for tensor in branch.initializer:
                self.graph.constants[self._define(tensor.name, inner)] = _to_array(tensor)
            added.append(self.add_nodes(branch.node, inner))
            selected.append([inner.resolve(o.name) for o in branch.output])
        self.graph.nodes.append(Node("pyc.If", name, [cond, *selected[0], *selected[1]], outputs))
        self.run_time += 1
        if self.ctx is not None:
            self.ctx.log("import", [name], "run_time_if", f"If {name!r}: condition {cond!r} is "
                         f"known only at run time; both branches compiled (then "
                         f"{_count(added[0], 'node')}, else {_count(added[1], 'node')}), the "
                         "condition picks the one that runs", then_nodes=added[0],
                         else_nodes=added[1])

    @staticmethod
    def _pin_branch_outputs(branch: onnx.GraphProto, outputs: list[str], inner: _Scope
                            ) -> list[tuple[str, str]]:
        """Branch values that are If outputs take the If output's name where the branch defines
        them; the other outputs (outer values, repeats) are returned as (source, output) copies."""
        defined = {t.name for t in branch.initializer}
        defined.update(o for node in branch.node for o in node.output if o)
        copies = []
        for out, source in zip(outputs, [o.name for o in branch.output]):
            if not out:
                continue
            if source in defined and source not in inner.pinned:
                inner.pinned[source] = out
            else:
                copies.append((source, out))
        return copies


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def constant_condition(graph: Graph, cond: str, node_name: str) -> bool | None:
    """The value of an If condition when it is known at compile time (a constant, or computed
    from constants and static shapes by the nodes imported so far), else None."""
    value = graph.constants.get(cond)
    if value is None:
        cone = _cone(graph, cond)
        if cone is None:
            return None
        sub = Graph(graph.name, list(graph.inputs), [cond], cone, dict(graph.types),
                    graph.constants, graph.opset)
        try:
            value = known_values(sub).get(cond)
        except PycError:
            return None  # the cone cannot be typed here; typing the graph reports why
    if value is None:
        return None
    if np.asarray(value).size != 1:
        raise PycError("E008", f"If {node_name!r}: its condition {cond!r} has "
                       f"{np.asarray(value).size} elements, not one", where=f"node {node_name!r}")
    return bool(np.asarray(value).reshape(-1)[0])


def _cone(graph: Graph, value: str) -> list[Node] | None:
    """The imported nodes `value` depends on, in order; None when one has no op unit."""
    producers = graph.producers()
    stack, seen = [value], set()
    while stack:
        node = producers.get(stack.pop())
        if node is None or id(node) in seen:
            continue
        if registry.lookup(node.op) is None:
            return None
        seen.add(id(node))
        stack.extend(node.present_inputs())
    return [node for node in graph.nodes if id(node) in seen]


def _value_names(graph: onnx.GraphProto) -> set[str]:
    """Every value name a graph and its subgraphs use (fresh names must avoid them all)."""
    names = {v.name for v in list(graph.input) + list(graph.output)}
    names.update(t.name for t in graph.initializer)
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        for attr in node.attribute:
            for sub in _subgraphs(attr):
                names |= _value_names(sub)
    names.discard("")
    return names


def _check_io_names(onnx_graph: onnx.GraphProto) -> None:
    """Input and output names are C strings in the compiled model's ABI: a NUL would cut them."""
    for value in list(onnx_graph.input) + list(onnx_graph.output):
        if "\x00" in value.name:
            raise PycError("E008", f"graph input/output name {value.name!r} contains a NUL "
                           "character, which the C ABI cannot carry", where=f"value {value.name!r}",
                           hint="rename the value")


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
                       f"{dtype_name(tensor_type.elem_type)}", where=f"input {value.name!r}",
                       hint="cast it to a supported type") from None
    dims = list(tensor_type.shape.dim)
    sizes = [static_dim(d) for d in dims]
    if override is not None:
        if len(override) != len(dims) or any(
            size is not None and size != o for size, o in zip(sizes, override)
        ):
            raise PycError("E006", f"--input-shape {value.name}={','.join(map(str, override))} "
                           f"does not fit the declared shape {_describe_dims(dims)}",
                           where=f"input {value.name!r}",
                           hint=f"static dims are {[s for s in sizes if s is not None]}")
        return TensorType(dtype, tuple(override))
    missing = [_describe_dim(d, i) for i, d in enumerate(dims) if static_dim(d) is None]
    if missing:
        raise PycError("E005", f"input {value.name!r} has symbolic dims {missing} "
                       f"(shape {_describe_dims(dims)})", where=f"input {value.name!r}",
                       hint=f"fix them with --input-shape {value.name}=d0,d1,...")
    return TensorType(dtype, tuple(s for s in sizes if s is not None))


def static_dim(dim: onnx.TensorShapeProto.Dimension) -> int | None:
    """A dim's size when the model fixes it; None when it is symbolic: a dim_param, no value, or
    a negative dim_value (PaddlePaddle exports declare dynamic dims as -1, as ORT accepts)."""
    if dim.HasField("dim_value") and dim.dim_value >= 0:
        return int(dim.dim_value)
    return None


def _describe_dim(dim: onnx.TensorShapeProto.Dimension, index: int) -> str:
    return dim.dim_param if dim.HasField("dim_param") and dim.dim_param else f"dim{index}"


def _describe_dims(dims: list) -> str:
    return "[" + ",".join(str(static_dim(d)) if static_dim(d) is not None else
                          (d.dim_param or "?") for d in dims) + "]"


def schema_version(domain: str, op_type: str, opset: int) -> int | None:
    """The version of the op's ONNX schema that a model importing `opset` uses (None: unknown)."""
    try:
        return int(onnx.defs.get_schema(op_type, opset, domain).since_version)
    except onnx.defs.SchemaError:
        return None


def _check_supported(onnx_graph: onnx.GraphProto, opset: int, prefix: str = "") -> None:
    """Raise one error listing every unsupported node, not just the first: E007 when an op is
    unknown, else E010 when an op's schema version (for this opset) is outside what PyC implements.
    An inlined If branch is checked when it is chosen; `prefix` names its nodes as imported."""
    problems: dict[str, list[str]] = {}
    unknown = False
    for index, node in enumerate(onnx_graph.node):
        key = registry.qualified(node.domain, node.op_type)
        opdef = registry.lookup(key)
        label = prefix + (node.name or f"{node.op_type}_{index}")
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


def _check_run_time_ifs(graph: Graph) -> None:
    """A run-time If output whose branches differ in leading 1-axes (a scalar against `[1]`)
    has the longer type; accepted only where no reader can tell the difference: every reader
    broadcasts it elementwise against an operand of at least that rank, and it is no graph
    output (PYC-E008 naming the If otherwise)."""
    consumers = graph.consumers()
    for node in graph.nodes:
        if node.op != "pyc.If":
            continue
        count = len(node.outputs)
        for index in control_flow.padded_outputs(node, graph.types):
            value = node.outputs[index]
            rank = len(graph.types[value].shape)
            readers = consumers.get(value, [])
            hidden = value not in graph.outputs and all(
                registry.get(r.op).category == registry.ELEMENTWISE
                and any(len(graph.types[v].shape) >= rank for v in r.present_inputs() if v != value)
                for r in readers)
            if not hidden:
                raise control_flow.differing_types_error(
                    node, index, graph.types[node.inputs[1 + index]],
                    graph.types[node.inputs[1 + count + index]],
                    " (a reader could tell them apart)")


def _check_dtypes(graph: Graph) -> None:
    """Every op accepts only the element types its unit declares (PYC-E008 otherwise)."""
    for node in graph.nodes:
        opdef = registry.get(node.op)
        for value in opdef.dtype_values(node):
            dtype = graph.types[value].dtype
            if not opdef.accepts(dtype):
                allowed = ", ".join(d.value for d in opdef.dtypes)
                raise PycError("E008", f"{node.op} does not support element type {dtype.value} "
                               f"(value {value!r}; supported: {allowed})", where=f"node {node.name!r}",
                               hint="cast the value to a supported type")
        operand_dtypes = {graph.types[v].dtype for v in node.present_inputs()}
        if getattr(opdef, "same_dtype_inputs", False) and len(operand_dtypes) > 1:
            found = ", ".join(f"{v!r}: {graph.types[v].dtype.value}" for v in node.present_inputs())
            raise PycError("E009", f"{node.op} needs operands of one element type, got {found}",
                           where=f"node {node.name!r}", hint="insert a Cast")


def _check_schema_types(graph: Graph) -> None:
    """Each input's element type is one its ONNX schema allows, and the inputs bound to one type
    parameter agree (ScatterElements' updates have the data's type, indices are ints): what
    onnxruntime checks before it runs a model (PYC-E009 otherwise)."""
    for node in graph.nodes:
        schema = _onnx_schema(node.op, graph.opset)
        if schema is None:
            continue
        allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
        bound: dict[str, tuple[str, str]] = {}
        for index, value in enumerate(node.inputs):
            formal = _formal_input(schema, index)
            if not value or formal is None:
                continue
            found = f"tensor({onnx.TensorProto.DataType.Name(graph.types[value].dtype.to_onnx()).lower()})"
            wanted = allowed.get(formal.type_str, {formal.type_str})
            if found not in wanted:
                raise PycError("E009", f"input {index} ({value!r}) of {node.op} is {found}; the op "
                               f"takes {', '.join(sorted(wanted))} there", where=f"node {node.name!r}",
                               hint="fix the model's types (a Cast, or the right input order)")
            if formal.type_str in allowed and _homogeneous(formal):
                first = bound.setdefault(formal.type_str, (value, found))
                if first[1] != found:
                    raise PycError("E009", f"{node.op} needs {first[0]!r} and {value!r} of one type "
                                   f"({formal.type_str}), got {first[1]} and {found}",
                                   where=f"node {node.name!r}", hint="insert a Cast")


def _onnx_schema(op: str, opset: int) -> onnx.defs.OpSchema | None:
    if "." in op:  # pyc.* and other domains: no ONNX schema
        return None
    try:
        return onnx.defs.get_schema(op, opset, "")
    except onnx.defs.SchemaError:
        return None


def _formal_input(schema: onnx.defs.OpSchema, index: int) -> onnx.defs.OpSchema.FormalParameter | None:
    """The schema's parameter for input `index` (the last one repeats when it is variadic);
    None for an input the schema does not have (an importer's own extra operand)."""
    if index < len(schema.inputs):
        return schema.inputs[index]
    last = schema.inputs[-1] if schema.inputs else None
    variadic = onnx.defs.OpSchema.FormalParameterOption.Variadic
    return last if last is not None and last.option == variadic else None


def _homogeneous(formal: onnx.defs.OpSchema.FormalParameter) -> bool:
    variadic = onnx.defs.OpSchema.FormalParameterOption.Variadic
    return formal.option != variadic or formal.is_homogeneous


def dtype_name(elem_type: int) -> str:
    """The ONNX name of an element type; numbers that name none are shown as numbers."""
    try:
        return onnx.TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"unknown ({elem_type})"


def _to_array(tensor: onnx.TensorProto) -> np.ndarray:
    try:
        DType.from_onnx(tensor.data_type)
    except KeyError:
        raise PycError("E008", f"tensor {tensor.name!r} has an unsupported element type "
                       f"{dtype_name(tensor.data_type)}", where=f"tensor {tensor.name!r}",
                       hint="cast it to a supported type") from None
    problem = _tensor_data_problem(tensor)
    if problem:
        raise PycError("E002", f"tensor {tensor.name!r} is malformed: {problem}",
                       where=f"tensor {tensor.name!r}", hint="re-export the model")
    return np.asarray(numpy_helper.to_array(tensor), order="C")


def _tensor_data_problem(tensor: onnx.TensorProto) -> str:
    """Why the tensor's data cannot be its declared shape ("" when it can): negative dims, or
    raw_data / typed data holding another number of elements than the dims multiply to."""
    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        return f"negative dimension in {dims}"
    count = 1
    for dim in dims:
        count *= dim
    itemsize = DType.from_onnx(tensor.data_type).itemsize
    if tensor.HasField("raw_data"):
        if len(tensor.raw_data) != count * itemsize:
            return (f"raw_data holds {len(tensor.raw_data)} bytes; dims {dims} need "
                    f"{count * itemsize}")
        return ""
    field = onnx.helper.tensor_dtype_to_field(tensor.data_type)  # one value per element
    stored = len(getattr(tensor, field))
    if stored != count:
        return f"{field} holds {stored} values; dims {dims} need {count}"
    return ""


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
                   where=f"node {node_name!r}",
                   hint="subgraph attributes are compiled only for If with a constant condition")
