"""Stable text form of the IR: printed for golden files and parsed back (round trip is tested).

Format, one statement per line:

    graph "main" opset=17
    input %"x" : f32[2,64]
    const %"w" : f32[128,64] = blob "sha256:…"        (large constants, data kept elsewhere)
    const %"s" : f32[] = [0.5]                          (small constants inline, floats exact)
    %"y" : f32[2,128] = MatMul(%"x", %"w") name="fc1" {transB=1} ann{kernel="matmul_tiles"}
    output %"y"
    output %"copy_x_out" as "x"                          (an output published under another name)

Symbolic dims (issue #15) are declared once with their bounds and written as JSON-quoted
expressions, in types and in attributes that passes/bind_shapes.py wrote:

    dim "seq" in [1,512]
    dim "rt_top_1" in [0,512] computed "top"             (a size node "top" computes at run time)
    input %"ids" : i64[1,"seq"]
    %"r" : f32[1,"seq",4,16] = Reshape(%"h") name="r" {shape=dims[1,"seq",-1,16]}

`{...}` holds the node's ONNX attributes; `ann{...}` the compiler's annotations (ir/annotations.py),
in a fixed order. Names and strings are JSON-quoted, so model-provided text cannot break the
format. Floats use Python's shortest round-trip repr, so parsing gives back the exact bits.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

import numpy as np

from .annotations import Annotations, KernelChoice
from .ewprogram import format_program, parse_program
from .graph import AttrValue, Graph, Node
from .symbolic import Dim, DimBounds, DimLike, has_dims, parse_dim
from .types import DType, TensorType

INLINE_CONSTANT_LIMIT = 16


def blob_key(array: np.ndarray) -> str:
    """Content address of a constant: dtype, shape and bytes."""
    digest = hashlib.sha256()
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return "sha256:" + digest.hexdigest()


# ---------------------------------------------------------------- printing


def _name(name: str) -> str:
    return "%" + json.dumps(name)


def _scalar(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    number = float(value)  # type: ignore[arg-type]
    if number != number:
        return "nan"
    if number in (float("inf"), float("-inf")):
        return "inf" if number > 0 else "-inf"
    return repr(number)


def _array_literal(array: np.ndarray) -> str:
    flat = array.reshape(-1)
    if flat.dtype.kind != "f" or not np.isnan(flat).any():
        return "[" + ",".join(_scalar(v) for v in flat.tolist()) + "]"
    # NaNs keep their sign and payload: printed as their raw bits in the array's own width
    bits = flat.view(f"u{flat.dtype.itemsize}")
    return "[" + ",".join(f"nan0x{int(b):x}" if np.isnan(v) else _scalar(v)
                          for v, b in zip(flat.tolist(), bits.tolist())) + "]"


def _array_from_literal(values: list, ttype: TensorType) -> np.ndarray:
    """Inverse of _array_literal: NaN bit patterns are restored exactly."""
    nan_bits = {i: v for i, v in enumerate(values) if isinstance(v, _NanBits)}
    plain = [float("nan") if i in nan_bits else v for i, v in enumerate(values)]
    array = np.array(plain, dtype=ttype.dtype.numpy)
    if nan_bits:
        raw = array.view(f"u{array.dtype.itemsize}")
        for index, bits in nan_bits.items():
            raw[index] = bits
    return array.reshape(ttype.shape)


class _NanBits(int):
    """A NaN given by its raw bit pattern in the IR text."""


def _dim_element(value: int | float | str) -> str:
    """A symbolic dim (issue #15) as its canonical expression, JSON-quoted; a number as is."""
    return json.dumps(str(value)) if isinstance(value, Dim) else str(int(value))  # (ints: dims)


def format_type(ttype: TensorType) -> str:
    """`f32[2,64]`; a symbolic dim (issue #15) as its JSON-quoted expression: `f32["batch",64]`."""
    return f"{ttype.dtype.value}[{','.join(_dim_element(d) for d in ttype.shape)}]"


def _named_dims(graph: Graph) -> list[DimBounds]:
    """The named dims of the graph (its inputs', and those nodes compute at run time), by
    name: printed once, with their bounds, as the `dim` lines the parser reads them with."""
    found: dict[str, DimBounds] = {}
    for ttype in graph.types.values():
        for dim in ttype.shape:
            if isinstance(dim, Dim):
                found.update(dim.dims())
    for node in graph.nodes:  # an attribute may read one no type holds (a value dim)
        for value in node.attrs.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, Dim):
                    found.update(item.dims())
    return [found[name] for name in sorted(found)]


def format_attr(value: AttrValue) -> str:
    if isinstance(value, Dim):
        return f"dim{_dim_element(value)}"
    if isinstance(value, list) and has_dims(value):
        return "dims[" + ",".join(_dim_element(v) for v in value) + "]"
    if isinstance(value, np.ndarray):
        return f"tensor<{TensorType.of(value)}>{_array_literal(value)}"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value) and value:
            return "strings[" + ",".join(json.dumps(v) for v in value) + "]"
        if all(isinstance(v, int) for v in value):
            return "ints[" + ",".join(str(v) for v in value) + "]"
        return "floats[" + ",".join(_scalar(v) for v in value) + "]"
    if isinstance(value, int):
        return str(value)
    return _scalar(value)


def print_graph(graph: Graph) -> str:
    storage = f" storage={graph.activation_storage.value}" if graph.activation_storage else ""
    lines = [f"graph {json.dumps(graph.name)} opset={graph.opset}{storage}"]
    lines += [f"dim {json.dumps(b.name)} in [{b.lo},{b.hi}]"
              + (f" computed {json.dumps(b.computed)}" if b.computed else "")
              for b in _named_dims(graph)]
    lines += [f"input {_name(n)} : {format_type(graph.types[n])}" for n in graph.inputs]
    for name in sorted(graph.constants):
        array = graph.constants[name]
        head = f"const {_name(name)} : {TensorType.of(array)}"
        if array.size <= INLINE_CONSTANT_LIMIT:
            lines.append(f"{head} = {_array_literal(array)}")
        else:
            lines.append(f"{head} = blob {json.dumps(blob_key(array))}")
    for node in graph.nodes:
        lines.append(_format_node(graph, node))
    lines += [f"output {_name(n)}" + ("" if n == public else f" as {json.dumps(public)}")
              for n, public in zip(graph.outputs, graph.public_outputs())]
    return "\n".join(lines) + "\n"


def _format_node(graph: Graph, node: Node) -> str:
    results = ", ".join(f"{_name(o)} : {format_type(graph.types[o])}" if o else '%""'
                        for o in node.outputs)
    args = ", ".join(_name(i) if i else "_" for i in node.inputs)
    attrs = ", ".join(f"{key}={format_attr(node.attrs[key])}" for key in sorted(node.attrs))
    text = f"{results} = {node.op}({args}) name={json.dumps(node.name)}"
    text += f" {{{attrs}}}" if attrs else ""
    ann = ", ".join(f"{key}={format_attr(value)}" for key, value in annotation_fields(node.ann))
    return text + (f" ann{{{ann}}}" if ann else "")


def annotation_fields(ann: Annotations) -> list[tuple[str, AttrValue]]:
    """The annotations that say something, in a fixed order, as attribute-like values."""
    fields: list[tuple[str, AttrValue]] = []
    if ann.kernel is not None:
        fields.append(("kernel", ann.kernel.candidate))
        if ann.kernel.params:
            fields.append(("kernel_params", json.dumps(ann.kernel.params, sort_keys=True)))
        if ann.kernel.workspace_cap is not None:
            fields.append(("workspace_cap", ann.kernel.workspace_cap))
        if ann.kernel.workspace_bytes:
            fields.append(("workspace_bytes", ann.kernel.workspace_bytes))
        if ann.kernel.inplace_input is not None:
            fields.append(("kernel_inplace_input", ann.kernel.inplace_input))
    optional: list[tuple[str, AttrValue | None]] = [
        ("program", format_program(ann.program)), ("fused_from", ann.fused_from),
        ("tiled_from", ann.tiled_from), ("epilogue", format_program(ann.epilogue)),
        ("epilogue_from", ann.epilogue_from), ("epilogue_first_input", ann.epilogue_first_input),
        ("prologue", format_program(ann.prologue)), ("prologue_from", ann.prologue_from),
        ("prologue_inputs", ann.prologue_inputs or None),
        ("stores_once", 1 if ann.stores_once else None),
        ("inplace_operand", ann.inplace_operand), ("inplace_inputs", ann.inplace_inputs),
        ("norm_from", ann.norm_from), ("norm_inputs", ann.norm_inputs),
        ("norm_epsilon", ann.norm_epsilon)]
    # None, "" and []: nothing decided (0 is a real operand position)
    fields += [(key, value) for key, value in optional if value not in (None, "", [])]
    return fields


def _set_annotation(ann: Annotations, key: str, value: AttrValue) -> None:
    """Inverse of annotation_fields, one field at a time."""
    if key == "kernel":
        ann.kernel = KernelChoice(str(value))
    elif key in ("kernel_params", "workspace_cap", "workspace_bytes", "kernel_inplace_input"):
        if ann.kernel is None:
            raise ValueError(f"annotation {key} before kernel")
        if key == "kernel_params":
            ann.kernel.params = json.loads(str(value))
        else:
            setattr(ann.kernel, key.removeprefix("kernel_"), _int_value(value))
    elif key in ("program", "epilogue", "prologue"):
        setattr(ann, key, parse_program([str(v) for v in _list_value(value)]))
    elif key in ("fused_from", "epilogue_from", "prologue_from"):
        setattr(ann, key, [str(v) for v in _list_value(value)])
    elif key in ("inplace_inputs", "norm_inputs"):
        setattr(ann, key, [int(v) for v in _list_value(value)])
    elif key == "norm_from":
        ann.norm_from = str(value)
    elif key == "norm_epsilon":
        if not isinstance(value, (int, float)):
            raise ValueError(f"expected a number annotation, found {value!r}")
        ann.norm_epsilon = float(value)
    elif key == "tiled_from":
        ann.tiled_from = str(value)
    elif key == "stores_once":
        ann.stores_once = bool(value)
    elif key in ("epilogue_first_input", "prologue_inputs", "inplace_operand"):
        setattr(ann, key, _int_value(value))
    else:
        raise ValueError(f"unknown annotation {key!r}")


def _int_value(value: AttrValue) -> int:
    if isinstance(value, int):
        return value
    raise ValueError(f"expected an integer annotation, found {value!r}")


def _list_value(value: AttrValue) -> list:
    if isinstance(value, list):
        return value
    raise ValueError(f"expected a list annotation, found {value!r}")


# ---------------------------------------------------------------- parsing

_TOKEN = re.compile(
    r'\s*(?:(?P<name>%"(?:[^"\\]|\\.)*")|(?P<string>"(?:[^"\\]|\\.)*")'
    r"|(?P<number>nan0x[0-9a-f]+|-?(?:(?:inf|nan)(?!\w)|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?))"
    r"|(?P<word>[A-Za-z_][\w.]*)|(?P<punct>[\[\](){}<>:=,*+\-/^]))"
)


class _Tokens:
    def __init__(self, line: str, bounds: dict[str, DimBounds] | None = None) -> None:
        self.bounds = {} if bounds is None else bounds  # named dims, from the `dim` lines
        self.items: list[tuple[str, str]] = []
        pos = 0
        line = line.rstrip()
        while pos < len(line):
            match = _TOKEN.match(line, pos)
            if not match or match.end() == pos:
                raise ValueError(f"cannot parse IR text at: {line[pos:pos + 30]!r}")
            kind = match.lastgroup or ""
            self.items.append((kind, match.group(kind)))
            pos = match.end()
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.items[self.pos] if self.pos < len(self.items) else ("end", "")

    def take(self, expect: str | None = None) -> str:
        kind, text = self.peek()
        if expect is not None and text != expect and kind != expect:
            raise ValueError(f"expected {expect!r}, found {text!r}")
        self.pos += 1
        return text

    def name(self) -> str:
        return json.loads(self.take("name")[1:])


def _parse_number(text: str) -> float | int:
    if text.startswith("nan0x"):
        return _NanBits(int(text[5:], 16))
    if text in ("inf", "-inf", "nan"):
        return float(text)
    return float(text) if any(c in text for c in ".eE") else int(text)


def _parse_type(tokens: _Tokens) -> TensorType:
    dtype = DType(tokens.take("word"))
    tokens.take("[")
    dims: list[DimLike] = []
    while tokens.peek()[1] != "]":
        if tokens.peek()[0] == "string":
            dims.append(_parse_dim(tokens))
        else:
            dims.append(int(tokens.take("number")))
        if tokens.peek()[1] == ",":
            tokens.take(",")
    tokens.take("]")
    return TensorType(dtype, tuple(dims))


def _parse_dim(tokens: _Tokens) -> int:
    return parse_dim(json.loads(tokens.take("string")), tokens.bounds)


def _parse_list(tokens: _Tokens) -> list:
    tokens.take("[")
    values: list = []
    while tokens.peek()[1] != "]":
        kind, text = tokens.peek()
        tokens.take()
        values.append(json.loads(text) if kind == "string" else _parse_number(text))
        if tokens.peek()[1] == ",":
            tokens.take(",")
    tokens.take("]")
    return values


def _parse_attr(tokens: _Tokens) -> AttrValue:
    kind, text = tokens.peek()
    if kind == "string":
        tokens.take()
        return json.loads(text)
    if kind == "number":
        tokens.take()
        return _parse_number(text)
    tokens.take("word")
    if text == "dim":
        return _parse_dim(tokens)
    if text == "dims":
        tokens.take("[")
        dims: list[int] = []
        while tokens.peek()[1] != "]":
            dims.append(_parse_dim(tokens) if tokens.peek()[0] == "string"
                        else int(tokens.take("number")))
            if tokens.peek()[1] == ",":
                tokens.take(",")
        tokens.take("]")
        return dims
    if text == "tensor":
        tokens.take("<")
        ttype = _parse_type(tokens)
        tokens.take(">")
        return _array_from_literal(_parse_list(tokens), ttype)
    values = _parse_list(tokens)
    if text == "floats":
        return [float(v) for v in values]
    return [v if isinstance(v, Dim) else int(v) for v in values] if text == "ints" else values


def parse_graph(text: str, blobs: Mapping[str, np.ndarray] | None = None) -> Graph:
    """Parse IR text; `blobs` maps blob keys to the arrays of large constants."""
    graph = Graph("", [], [], [], {}, {}, 0)
    bounds: dict[str, DimBounds] = {}
    for line in text.splitlines():
        if line.strip():
            _parse_statement(graph, _Tokens(line, bounds), {} if blobs is None else blobs)
    return graph


def _parse_statement(graph: Graph, tokens: _Tokens, blobs: Mapping[str, np.ndarray]) -> None:
    kind, text = tokens.peek()
    if text == "graph":
        tokens.take()
        graph.name = json.loads(tokens.take("string"))
        tokens.take("opset")
        tokens.take("=")
        graph.opset = int(tokens.take("number"))
        if tokens.peek()[1] == "storage":
            tokens.take()
            tokens.take("=")
            graph.activation_storage = DType(tokens.take("word"))
    elif text == "dim":
        tokens.take()
        name = json.loads(tokens.take("string"))
        tokens.take("in")
        tokens.take("[")
        lo = int(tokens.take("number"))
        tokens.take(",")
        hi = int(tokens.take("number"))
        tokens.take("]")
        computed = ""
        if tokens.peek()[1] == "computed":
            tokens.take()
            computed = json.loads(tokens.take("string"))
        tokens.bounds[name] = DimBounds(name, lo, hi, computed)
    elif text in ("input", "output"):
        tokens.take()
        name = tokens.name()
        if text == "input":
            tokens.take(":")
            graph.types[name] = _parse_type(tokens)
            graph.inputs.append(name)
        else:
            public = name
            if tokens.peek()[1] == "as":
                tokens.take()
                public = json.loads(tokens.take("string"))
            graph.output_names.append(public)
            graph.outputs.append(name)
    elif text == "const":
        tokens.take()
        name = tokens.name()
        tokens.take(":")
        ttype = _parse_type(tokens)
        tokens.take("=")
        if tokens.peek()[1] == "blob":
            tokens.take()
            array = np.asarray(blobs[json.loads(tokens.take("string"))])
        else:
            array = _array_from_literal(_parse_list(tokens), ttype)
        graph.constants[name] = array
        graph.types[name] = ttype
    elif kind == "name":
        graph.nodes.append(_parse_node(graph, tokens))
    else:
        raise ValueError(f"unexpected IR statement starting with {text!r}")


def _parse_node(graph: Graph, tokens: _Tokens) -> Node:
    outputs: list[str] = []
    while True:
        name = tokens.name()
        outputs.append(name)
        if name:
            tokens.take(":")
            graph.types[name] = _parse_type(tokens)
        if tokens.peek()[1] != ",":
            break
        tokens.take(",")
    tokens.take("=")
    op = tokens.take("word")
    tokens.take("(")
    inputs: list[str] = []
    while tokens.peek()[1] != ")":
        inputs.append("" if tokens.peek()[1] == "_" else tokens.name())
        if inputs[-1] == "" and tokens.peek()[1] == "_":
            tokens.take()
        if tokens.peek()[1] == ",":
            tokens.take(",")
    tokens.take(")")
    tokens.take("name")
    tokens.take("=")
    node = Node(op, json.loads(tokens.take("string")), inputs, outputs)
    if tokens.peek()[1] == "{":
        node.attrs = dict(_parse_fields(tokens))
    if tokens.peek()[1] == "ann":
        tokens.take("ann")
        for key, value in _parse_fields(tokens):
            _set_annotation(node.ann, key, value)
    return node


def _parse_fields(tokens: _Tokens) -> list[tuple[str, AttrValue]]:
    """`{key=value, ...}`."""
    fields = []
    tokens.take("{")
    while tokens.peek()[1] != "}":
        key = tokens.take("word")
        tokens.take("=")
        fields.append((key, _parse_attr(tokens)))
        if tokens.peek()[1] == ",":
            tokens.take(",")
    tokens.take("}")
    return fields
