"""Hostile ONNX inputs for `pyc build`: mutated protobuf bytes, structurally valid models with
hostile content, hostile external data and hostile file paths.

Every generator takes a seeded `random.Random` and returns a `Case` (malformed.py runs it).
"""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from . import protowire
from .cases import Case

OUT = "out"
MODEL = "model.onnx"

# Names a model may carry that must never break generated C, the IR text or the manifest.
HOSTILE_NAMES = [
    '"', 'a"b', "*/", "/*", "a*/b/*c", "//", "line\nbreak", "cr\rx", "back\\slash", "tail\\",
    "??/", "??=define X", "??'", "#include <stdio.h>", "\n#include \"/etc/passwd\"\n#", "../../x",
    "/abs/path", "\x01ctl", "\x7f", "tab\tx", "ünïcödé", "名前", "\u202ertl", "emoji\U0001F600",
    "%s%n", "{{ x }}", "{% raw %}", "x" * 3000, " ", "'", "`id`", "\\", "nul\x00x", "a.b", "0",
    "int", "main", "inputs", "arena", "%", "$(id)", "\u2028sep", "\ufeffbom",
]
BAD_DTYPES = [0, 8, 13, 16, 17, 19, 21, 22, 23, 99, 999, -1]
HUGE = [2**31, 2**32 + 1, 2**62, 2**63 - 1, -(2**63), -2, -7, 10**15]


# ---------------------------------------------------------------- base models


def mlp() -> onnx.ModelProto:
    """x[2,4] @ w[4,3] + b[3] -> Relu -> y[2,3]; the reference every name case is checked on."""
    w, b = mlp_weights()
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "b"], ["h2"], name="add"),
             helper.make_node("Relu", ["h2"], ["y"], name="relu")]
    return _model(nodes, [("x", [2, 4])], [("y", [2, 3])],
                  [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])


def mlp_weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((4, 3)).astype(np.float32),
            rng.standard_normal(3).astype(np.float32))


def mlp_reference(x: np.ndarray) -> np.ndarray:
    w, b = mlp_weights()
    return np.maximum(x @ w + b, 0).astype(np.float32)


def _model(nodes: list[onnx.NodeProto], inputs: list[tuple[str, list[int]]],
           outputs: list[tuple[str, list[int] | None]], inits: list[TensorProto],
           opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _const(name: str, values: list[int]) -> TensorProto:
    return numpy_helper.from_array(np.array(values, np.int64), name)


# op, attributes, extra constant inputs (name, values), input shape
OP_ZOO: list[tuple[str, dict, list[tuple[str, list[int]]], list[int]]] = [
    ("Softmax", {"axis": 1}, [], [2, 3]),
    ("Transpose", {"perm": [1, 0]}, [], [2, 3]),
    ("Flatten", {"axis": 1}, [], [2, 3, 4]),
    ("Concat", {"axis": 0}, [], [2, 3]),
    ("LeakyRelu", {"alpha": 0.1}, [], [2, 3]),
    ("Gather", {"axis": 0}, [("idx", [1, 0])], [2, 3]),
    ("Reshape", {}, [("shape", [3, 2])], [2, 3]),
    ("ReduceSum", {"keepdims": 1}, [("axes", [1])], [2, 3]),
    ("Split", {"axis": 1}, [("split", [1, 2])], [2, 3]),
    ("Slice", {}, [("starts", [0]), ("ends", [2]), ("axes", [1])], [2, 3]),
    ("Pad", {"mode": "constant"}, [("pads", [0, 1, 0, 1])], [2, 3]),
    ("Cast", {"to": TensorProto.DOUBLE}, [], [2, 3]),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [1, 1], "pads": [0, 0, 0, 0]}, [], [1, 1, 4, 4]),
    ("Conv", {"kernel_shape": [2, 2], "strides": [1, 1], "dilations": [1, 1], "group": 1},
     [("cw", [])], [1, 1, 4, 4]),
    ("Tile", {}, [("repeats", [1, 2])], [2, 3]),
    ("Expand", {}, [("eshape", [2, 2, 3])], [2, 3]),
    ("TopK", {"axis": 1}, [("k", [2])], [2, 3]),
    ("Clip", {}, [], [2, 3]),
    ("DepthToSpace", {"blocksize": 2}, [], [1, 4, 2, 2]),
    ("ArgMax", {"axis": 1, "keepdims": 1}, [], [2, 3]),
    ("CumSum", {}, [("cax", [1])], [2, 3]),
    ("Trilu", {"upper": 1}, [("tk", [0])], [3, 3]),
]


def zoo_model(index: int) -> onnx.ModelProto:
    """A one-node model of OP_ZOO[index] (constants as initializers, output shape left open)."""
    op, attrs, consts, shape = OP_ZOO[index]
    inits = [_const(n, v) if n != "cw" else
             numpy_helper.from_array(np.ones((1, 1, 2, 2), np.float32), n) for n, v in consts]
    if op == "Split":
        outputs: list[tuple[str, list[int] | None]] = [("y", None), ("y2", None)]
    elif op == "TopK":
        outputs = [("y", None), ("y2", None)]
    else:
        outputs = [("y", None)]
    inputs = ["x", "x"] if op == "Concat" else ["x"]
    node = helper.make_node(op, inputs + [n for n, _ in consts], [n for n, _ in outputs],
                            name=op.lower(), **attrs)
    model = _model([node], [("x", shape)], outputs, inits)
    if op == "Cast":
        model.graph.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    if op in ("TopK", "ArgMax"):
        model.graph.output[-1].type.tensor_type.elem_type = TensorProto.INT64
    return onnx.shape_inference.infer_shapes(model)  # the checker wants output shapes


def base_models() -> list[onnx.ModelProto]:
    return [mlp()] + [zoo_model(i) for i in range(len(OP_ZOO))]


# ---------------------------------------------------------------- case helpers


def build_case(name: str, model: onnx.ModelProto | bytes, extra: dict[str, bytes] | None = None,
               links: dict[str, str] | None = None, model_arg: str = MODEL,
               expect: str | None = None) -> Case:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    files = {MODEL: data, **(extra or {})}
    return Case(name, [["build", model_arg, "-o", OUT]], files, links or {}, (OUT,), expect)


def _pick(rng: random.Random, items: list) -> object:
    return items[rng.randrange(len(items))]


def _base(rng: random.Random) -> onnx.ModelProto:
    return mlp() if rng.random() < 0.4 else zoo_model(rng.randrange(len(OP_ZOO)))


# ---------------------------------------------------------------- byte-level mutators


def bit_flips(rng: random.Random) -> Case:
    data = bytearray(_base(rng).SerializeToString())
    count = rng.choice([1, 1, 2, 4, 16])
    for _ in range(count):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return build_case(f"bit_flips[{count}]", bytes(data))


def byte_insert_delete(rng: random.Random) -> Case:
    data = bytearray(_base(rng).SerializeToString())
    at = rng.randrange(len(data))
    if rng.random() < 0.5:
        chunk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 5, 40])))
        data[at:at] = chunk
        return build_case(f"byte_insert[{at},{len(chunk)}]", bytes(data))
    size = rng.choice([1, 2, 7, 100])
    del data[at:at + size]
    return build_case(f"byte_delete[{at},{size}]", bytes(data))


def truncate_at_boundary(rng: random.Random) -> Case:
    data = _base(rng).SerializeToString()
    kinds = protowire.boundaries(protowire.parse(data))
    kind = rng.choice(sorted(kinds))
    offset = rng.choice(kinds[kind]) + rng.choice([0, 0, 1, -1])
    offset = max(0, min(len(data) - 1, offset))
    return build_case(f"truncate[{kind}@{offset}]", data[:offset])


def tree_mutation(rng: random.Random) -> Case:
    """Duplicate, delete, re-type or rewrite one field anywhere; lengths stay consistent."""
    fields = protowire.parse(_base(rng).SerializeToString())
    holder, index = rng.choice(protowire.walk(fields))
    item = holder[index]
    action = rng.choice(["duplicate", "delete", "varint", "payload", "wire", "swap"])
    if action == "duplicate":
        holder.insert(index, copy.deepcopy(item))
    elif action == "delete":
        del holder[index]
    elif action == "varint" and item.wire == protowire.VARINT:
        item.value = rng.choice([0, 1, 2**31 - 1, 2**32, 2**63 - 1, 2**64 - 1, rng.randrange(2**64)])
    elif action == "payload" and item.wire == protowire.LEN:
        item.children = None
        item.value = rng.choice([b"", b"\xff\xfe\xfd", b"\x00" * 9, b"\x80" * 11,
                                 bytes(rng.randrange(256) for _ in range(12))])
    elif action == "wire":
        item.wire = rng.choice([protowire.VARINT, protowire.FIXED32, protowire.FIXED64])
        item.value = 7 if item.wire == protowire.VARINT else b"\x01" * (4 if item.wire == 5 else 8)
        item.children = None
    else:
        rng.shuffle(holder)
        action = "swap"
    return build_case(f"tree_{action}[{item.number}@depth{len(item.path)}]",
                      protowire.serialize(fields))


def not_a_model(rng: random.Random) -> Case:
    payloads = {"empty": b"", "text": b"hello world\n", "zeros": b"\x00" * 4096,
                "json": b'{"graph": {}}', "npz": b"PK\x03\x04" + b"\x00" * 30,
                "ffff": b"\xff" * 64, "deep": b"\x3a\x02" * 1 + _deeply_nested(3000)}
    key = rng.choice(sorted(payloads))
    return build_case(f"not_a_model[{key}]", payloads[key])


def _deeply_nested(depth: int) -> bytes:
    """graph.node.attribute.g.node.attribute.g... far deeper than any parser recursion limit."""
    inner = b""
    for _ in range(depth):
        inner = b"\x0a" + protowire.encode_varint(len(inner)) + inner
    return inner


# ---------------------------------------------------------------- hostile content


def hostile_name(rng: random.Random) -> Case:
    """A value, node or graph name from HOSTILE_NAMES: the build must give correct C (checked by
    running the model) or a PYC error."""
    name = str(_pick(rng, HOSTILE_NAMES))
    role = rng.choice(["input", "output", "hidden", "weight", "node", "graph", "all"])
    model = rename(mlp(), role, name, rng)
    case = build_case(f"hostile_name[{role}:{name[:20]!r}]", model)
    names = {"input": (name, "y"), "output": ("x", name), "all": (f"{name}0", f"{name}2")}
    case.reference = names.get(role, ("x", "y"))
    case.writable += ("y.npz",)  # written by the run that checks the numbers
    return case


def rename(model: onnx.ModelProto, role: str, name: str, rng: random.Random) -> onnx.ModelProto:
    model = copy.deepcopy(model)
    targets = {"input": ["x"], "output": ["y"], "hidden": ["h"], "weight": ["w"]}
    if role == "node":
        model.graph.node[rng.randrange(3)].name = name
        return model
    if role == "graph":
        model.graph.name = name
        return model
    old = targets.get(role, ["x", "h", "y", "w"])
    mapping = {o: (name if len(old) == 1 else f"{name}{i}") for i, o in enumerate(old)}
    if role == "all":
        for node in model.graph.node:
            node.name = name + node.name
        model.graph.name = name
    _rename_values(model.graph, mapping)
    return model


def _rename_values(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        value.name = mapping.get(value.name, value.name)
    for tensor in graph.initializer:
        tensor.name = mapping.get(tensor.name, tensor.name)
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]


def bad_dtype(rng: random.Random) -> Case:
    model = _base(rng)
    dtype = int(_pick(rng, BAD_DTYPES))
    where = rng.choice(["input", "output", "initializer"])
    if where == "initializer" and model.graph.initializer:
        model.graph.initializer[0].data_type = dtype
    elif where == "output":
        model.graph.output[0].type.tensor_type.elem_type = dtype
    else:
        where = "input"
        model.graph.input[0].type.tensor_type.elem_type = dtype
    return build_case(f"bad_dtype[{where}={dtype}]", model)


def bad_dims(rng: random.Random) -> Case:
    model = mlp()
    tensor = model.graph.initializer[rng.randrange(2)]
    action = rng.choice(["negative", "huge", "rank", "raw_short", "raw_long", "both_data",
                         "input_negative", "input_huge", "input_rank"])
    value = int(_pick(rng, HUGE))
    if action in ("negative", "huge"):
        tensor.dims[rng.randrange(len(tensor.dims))] = value if action == "huge" else -rng.randrange(2, 9)
    elif action == "rank":
        tensor.dims.append(rng.choice([1, 2, 3]))
    elif action == "raw_short":
        tensor.raw_data = tensor.raw_data[:-rng.choice([1, 3, 4])]
    elif action == "raw_long":
        tensor.raw_data = tensor.raw_data + b"\x00" * rng.choice([1, 4, 400])
    elif action == "both_data":
        tensor.float_data.extend([1.0, 2.0])
    else:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        if action == "input_rank":
            dims.add().dim_value = 3
        else:
            dims[rng.randrange(2)].dim_value = value if action == "input_huge" else -rng.randrange(2, 9)
    return build_case(f"bad_dims[{tensor.name}:{action}:{value}]", model)


def broken_graph(rng: random.Random) -> Case:
    model = mlp()
    graph = model.graph
    action = rng.choice(["dangling_input", "drop_graph_input", "unknown_output", "no_outputs",
                         "cycle", "self_loop", "empty_value_name", "empty_node_output",
                         "duplicate_output", "output_is_input", "no_nodes", "input_is_initializer",
                         "empty_input_name", "extra_inputs", "missing_required_input"])
    if action == "dangling_input":
        graph.node[1].input[0] = "nowhere"
    elif action == "drop_graph_input":
        del graph.input[0]
    elif action == "unknown_output":
        graph.output[0].name = "nowhere"
    elif action == "no_outputs":
        del graph.output[:]
    elif action == "cycle":
        graph.node[1].input[0] = "y"
    elif action == "self_loop":
        graph.node[2].input[0] = "y"
    elif action == "empty_value_name":
        _rename_values(graph, {"h": ""})
    elif action == "empty_node_output":
        graph.node[0].output[0] = ""
    elif action == "duplicate_output":
        graph.node[1].output[0] = "h"
    elif action == "output_is_input":
        graph.output[0].name = "x"
    elif action == "no_nodes":
        del graph.node[:]
    elif action == "input_is_initializer":
        graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3]))
    elif action == "empty_input_name":
        graph.node[0].input[1] = ""
    elif action == "extra_inputs":
        graph.node[2].input.extend(["x", "w"])
    else:
        del graph.node[1].input[1]
    return build_case(f"broken_graph[{action}]", model)


ABSURD_INTS = [2**62, -(2**62), 1000, -1000, 0, -1, 2**31, 2**63 - 1]
ABSURD_FLOATS = [float("nan"), float("inf"), -float("inf"), 1e308, -1e-320, 3.4e38]


def absurd_attribute(rng: random.Random) -> Case:
    index = rng.randrange(len(OP_ZOO))
    model = zoo_model(index)
    node = model.graph.node[0]
    action = rng.choice(["value", "value", "wrong_type", "unknown", "undefined", "const_input"])
    if action == "const_input" and model.graph.initializer:
        tensor = rng.choice(list(model.graph.initializer))
        if tensor.data_type == TensorProto.INT64:
            values = [int(_pick(rng, ABSURD_INTS)) for _ in range(int(np.prod(tensor.dims)))]
            tensor.CopyFrom(numpy_helper.from_array(np.array(values, np.int64).reshape(
                tuple(tensor.dims)), tensor.name))
            return build_case(f"absurd_const[{node.op_type}.{tensor.name}={values}]", model)
        action = "value"
    if not node.attribute or action == "unknown":
        node.attribute.append(helper.make_attribute("bogus_attr", 7))
        return build_case(f"absurd_attr[{node.op_type}:unknown]", model)
    attr = rng.choice(list(node.attribute))
    label = _mutate_attribute(attr, action, rng)
    return build_case(f"absurd_attr[{node.op_type}.{attr.name}:{label}]", model)


def _mutate_attribute(attr: AttributeProto, action: str, rng: random.Random) -> str:
    if action == "undefined":
        attr.type = AttributeProto.UNDEFINED
        return "undefined"
    if action == "wrong_type":
        new = rng.choice([AttributeProto.FLOAT, AttributeProto.STRING, AttributeProto.INTS,
                          AttributeProto.TENSOR, AttributeProto.GRAPH, AttributeProto.FLOATS])
        attr.type = new
        return f"type={AttributeProto.AttributeType.Name(new)}"
    if attr.type == AttributeProto.INT:
        attr.i = int(_pick(rng, ABSURD_INTS))
        return f"i={attr.i}"
    if attr.type == AttributeProto.INTS:
        count = rng.choice([0, len(attr.ints), len(attr.ints) + 1, 1, 7])
        attr.ints[:] = [int(_pick(rng, ABSURD_INTS)) for _ in range(count)]
        return f"ints={list(attr.ints)}"
    if attr.type == AttributeProto.FLOAT:
        attr.f = float(_pick(rng, ABSURD_FLOATS))
        return f"f={attr.f}"
    if attr.type == AttributeProto.STRING:
        attr.s = str(_pick(rng, HOSTILE_NAMES)).encode()
        return f"s={attr.s[:20]!r}"
    return "unchanged"


def bad_opset(rng: random.Random) -> Case:
    model = mlp()
    action = rng.choice(["none", "zero", "negative", "huge", "future", "other_domain", "duplicate",
                         "ir_zero", "ir_huge", "ir_negative", "ai.onnx", "ml_only"])
    if action == "none":
        del model.opset_import[:]
    elif action in ("zero", "negative", "huge", "future"):
        model.opset_import[0].version = {"zero": 0, "negative": -3, "huge": 2**62, "future": 99}[action]
    elif action == "other_domain":
        model.opset_import[0].domain = "com.example"
    elif action == "duplicate":
        model.opset_import.append(helper.make_opsetid("", 9))
    elif action == "ai.onnx":
        model.opset_import[0].domain = "ai.onnx"
    elif action == "ml_only":
        model.opset_import[0].domain = "ai.onnx.ml"
    else:
        model.ir_version = {"ir_zero": 0, "ir_huge": 2**62, "ir_negative": -1}[action]
    return build_case(f"bad_opset[{action}]", model)


# ---------------------------------------------------------------- external data

OUTSIDE = "../outside.bin"  # relative to the sandbox's work directory: exists, outside the model dir


def external_data(rng: random.Random) -> Case:
    model = mlp()
    tensor = model.graph.initializer[0]
    raw = tensor.raw_data
    location = rng.choice(["w.bin", "w.bin", "../outside.bin", "/etc/hostname", "sub/../w.bin",
                           "link.bin", "loop.bin", "dir", "", "nul\x00.bin", "w.bin/x", ".",
                           "missing.bin", "x" * 300, "\\..\\w.bin", "%2e%2e/outside.bin",
                           "deep_link/outside.bin"])
    offset = rng.choice(["0", "0", "4", "1000000", "-5", "abc", "", "1e3", str(2**64), " 0"])
    length = rng.choice([None, str(len(raw)), "0", "-1", "abc", str(len(raw) + 10), "1"])
    entries = {"location": location, "offset": offset}
    if length is not None:
        entries["length"] = length
    if rng.random() < 0.15:
        entries["checksum"] = "deadbeef"
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in entries.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    extra = {"w.bin": raw, "../outside.bin": raw, "dir/keep": b"", "../deep/outside.bin": raw}
    links = {"link.bin": "../outside.bin", "loop.bin": "loop.bin", "deep_link": "../deep"}
    return build_case(f"external_data[{location[:20]!r},off={offset},len={length}]", model,
                      extra, links)


# ---------------------------------------------------------------- hostile paths


def hostile_path(rng: random.Random) -> Case:
    data = mlp().SerializeToString()
    kind = rng.choice(["missing", "directory", "fifo", "loop", "dev_zero", "non_utf8", "newline",
                       "too_long", "dash", "out_is_file", "out_in_file", "out_is_model_dir",
                       "out_nonempty", "out_too_long", "out_non_utf8", "out_dotdot", "out_dot",
                       "out_loop", "out_dangling", "out_deep_manifest", "out_old_artifact"])
    files: dict[str, bytes] = {MODEL: data}
    links: dict[str, str] = {}
    model_arg, out_arg, writable = MODEL, OUT, (OUT,)
    if kind == "missing":
        model_arg = "nope.onnx"
    elif kind == "directory":
        files["dirmodel.onnx/keep"] = b""
        model_arg = "dirmodel.onnx"
    elif kind == "fifo":
        model_arg = "fifo.onnx"
    elif kind == "loop":
        links["loop.onnx"] = "loop.onnx"
        model_arg = "loop.onnx"
    elif kind == "dev_zero":
        links["zero.onnx"] = "/dev/zero"
        model_arg = "zero.onnx"
    elif kind == "non_utf8":
        model_arg = os.fsdecode(b"m\xff\xfe.onnx")
        files[model_arg] = data
    elif kind == "newline":
        model_arg = "m\nx\r.onnx"
        files[model_arg] = data
    elif kind == "too_long":
        model_arg = "m" * 300 + ".onnx"
    elif kind == "dash":
        model_arg = "./-m.onnx"
        files["-m.onnx"] = data
    elif kind == "out_is_file":
        files["outfile"] = b"keep"
        out_arg, writable = "outfile", ()
    elif kind == "out_in_file":
        files["outfile"] = b"keep"
        out_arg, writable = "outfile/art", ()
    elif kind == "out_is_model_dir":
        out_arg, writable = ".", ()
    elif kind == "out_nonempty":
        files["full/keep.txt"] = b"keep"
        out_arg, writable = "full", ()
    elif kind == "out_too_long":
        out_arg, writable = "o" * 300, ()
    elif kind == "out_non_utf8":
        out_arg = os.fsdecode(b"o\xff")
        writable = (out_arg,)
    elif kind == "out_deep_manifest":
        files["old/manifest.json"] = b"[" * 100000 + b"]" * 100000
        out_arg, writable = "old", ()
    elif kind == "out_old_artifact":  # replaced in full by the new build
        files["old/manifest.json"] = b'{"format": "pyc-artifact"}'
        files["old/stale.txt"] = b"stale"
        out_arg, writable = "old", ("old",)
    elif kind == "out_loop":
        links["oloop"] = "oloop"
        out_arg, writable = "oloop", ()
    elif kind == "out_dangling":
        links["odangle"] = "../elsewhere"  # the artifact goes where the user's link points
        out_arg, writable = "odangle", ("../elsewhere",)
    elif kind == "out_dotdot":
        out_arg, writable = "sub/../out", (OUT, "sub")
    else:
        out_arg, writable = "./out/.", (OUT,)
    case = Case(f"hostile_path[{kind}]", [["build", model_arg, "-o", out_arg]], files, links,
                writable)
    if kind == "fifo":
        case.prepare = _make_fifo
    return case


def _make_fifo(work: Path) -> None:
    os.mkfifo(work / "fifo.onnx")


MUTATORS: dict[str, Callable[[random.Random], Case]] = {
    "bit_flips": bit_flips, "byte_insert_delete": byte_insert_delete,
    "truncate_at_boundary": truncate_at_boundary, "tree_mutation": tree_mutation,
    "not_a_model": not_a_model, "hostile_name": hostile_name, "bad_dtype": bad_dtype,
    "bad_dims": bad_dims, "broken_graph": broken_graph, "absurd_attribute": absurd_attribute,
    "bad_opset": bad_opset, "external_data": external_data, "hostile_path": hostile_path,
}


def reference_inputs() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)


def model_path(sandbox: Path) -> Path:
    return sandbox / MODEL
