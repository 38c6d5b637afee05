"""An ONNX graph run by PyTorch, for benchmarks/cuda_table.py: torch gets exactly the model PyC
builds (the same initializers, the same nodes in the same order), so eager PyTorch and both
torch.compile modes run the same computation as PyC with no torchvision and no second
definition of each model to keep in step.

Only the operators of the table's models are interpreted (the MiniLM-shaped encoder, the MLP,
the onnx light zoo's ResNet-50, single LayerNormalization / Softmax); another raises
NotImplementedError naming it. Weights become module buffers, so `.to(torch.float16)` gives
the half-precision model; integer tensors (token ids, shapes) keep their type. Shapes that
Reshape reads from initializers are taken as Python ints at construction: torch.compile sees
static shapes, as PyC does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own spelling)
from onnx import TensorProto, helper, numpy_helper

Env = dict[str, torch.Tensor]


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _pads(pads: list[int] | None, rank: int) -> tuple[int, ...]:
    """ONNX begin/end pads as torch's symmetric padding (the table's models pad symmetrically)."""
    pads = list(pads or [0] * (2 * rank))
    begin, end = pads[:rank], pads[rank:]
    if begin != end:
        raise NotImplementedError(f"asymmetric pads {pads}")
    return tuple(begin)


class OnnxTorch(torch.nn.Module):
    """`forward(*inputs)` (in the graph's input order) returns the graph's outputs, a tuple."""

    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__()
        graph = model.graph
        self.opset = _opset(model)
        self._names: dict[str, str] = {}
        static: dict[str, np.ndarray] = {}
        for index, init in enumerate(graph.initializer):
            array = numpy_helper.to_array(init)
            static[init.name] = array
            self._names[init.name] = f"c{index}"
            self.register_buffer(f"c{index}", torch.from_numpy(array.copy()))
        floats = [self._names[i.name] for i in graph.initializer
                  if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16)]
        self._float_buffer = floats[0] if floats else ""
        self.inputs = [i.name for i in graph.input if i.name not in self._names]
        self.outputs = [o.name for o in graph.output]
        self.nodes = [(node.op_type, list(node.input), list(node.output), _attrs(node))
                      for node in graph.node]
        for op, ins, _outs, attrs in self.nodes:
            if op == "Reshape":  # the target shape as Python ints: static for torch.compile
                attrs["shape"] = tuple(int(d) for d in static[ins[1]])
        for op, *_ in self.nodes:
            if op not in OPS:
                raise NotImplementedError(f"onnx_torch does not interpret {op}")

    @property
    def dtype(self) -> torch.dtype:
        """The floating type of the weights (what Cast to FLOAT gives)."""
        return getattr(self, self._float_buffer).dtype if self._float_buffer else torch.float32

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        env: Env = dict(zip(self.inputs, inputs))
        for name, buffer in self._names.items():
            env[name] = getattr(self, buffer)
        for op, ins, outs, attrs in self.nodes:
            args = [env[name] if name else None for name in ins]
            env[outs[0]] = OPS[op](self, args, ins, attrs)
        return tuple(env[name] for name in self.outputs)


def _cast(m: OnnxTorch, a: list, names: list[str], at: dict) -> torch.Tensor:
    to = at["to"]
    if to == TensorProto.FLOAT:
        return a[0].to(m.dtype)
    if to == TensorProto.INT64:
        return a[0].to(torch.int64)
    raise NotImplementedError(f"Cast to {to}")


def _reshape(m: OnnxTorch, a: list, names: list[str], at: dict) -> torch.Tensor:
    shape = [a[0].shape[i] if d == 0 else d for i, d in enumerate(at["shape"])]
    return a[0].reshape(shape)


def _gather(m: OnnxTorch, a: list, names: list[str], at: dict) -> torch.Tensor:
    axis = at.get("axis", 0)
    if axis == 0 and a[0].dim() == 2:
        return F.embedding(a[1], a[0])
    flat = torch.index_select(a[0], axis, a[1].reshape(-1))
    shape = (*a[0].shape[:axis], *a[1].shape, *a[0].shape[axis + 1:])
    return flat.reshape(shape)


def _softmax(m: OnnxTorch, a: list, names: list[str], at: dict) -> torch.Tensor:
    x = a[0]
    axis = at.get("axis", 1 if m.opset < 13 else -1) % x.dim()
    if m.opset >= 13 or axis == x.dim() - 1:
        return torch.softmax(x, dim=axis)
    # before opset 13: softmax over everything from `axis` on, as one row
    return torch.softmax(x.reshape(*x.shape[:axis], -1), dim=-1).reshape(x.shape)


def _layernorm(m: OnnxTorch, a: list, names: list[str], at: dict) -> torch.Tensor:
    x = a[0]
    axis = at.get("axis", -1) % x.dim()
    return F.layer_norm(x, x.shape[axis:], a[1], a[2] if len(a) > 2 else None,
                        eps=at.get("epsilon", 1e-5))


def _conv(m: OnnxTorch, a: list, names: list[str], at: dict) -> torch.Tensor:
    if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NotImplementedError("Conv auto_pad")
    rank = a[0].dim() - 2
    return F.conv2d(a[0], a[1], a[2] if len(a) > 2 else None, stride=tuple(at.get("strides", [1] * rank)),
                    padding=_pads(at.get("pads"), rank), dilation=tuple(at.get("dilations", [1] * rank)),
                    groups=at.get("group", 1))


def _maxpool(m: OnnxTorch, a: list, names: list[str], at: dict) -> torch.Tensor:
    kernel = at["kernel_shape"]
    return F.max_pool2d(a[0], kernel, stride=at.get("strides", [1] * len(kernel)),
                        padding=_pads(at.get("pads"), len(kernel)),
                        ceil_mode=bool(at.get("ceil_mode", 0)))


def _avgpool(m: OnnxTorch, a: list, names: list[str], at: dict) -> torch.Tensor:
    kernel = at["kernel_shape"]
    return F.avg_pool2d(a[0], kernel, stride=at.get("strides", [1] * len(kernel)),
                        padding=_pads(at.get("pads"), len(kernel)),
                        ceil_mode=bool(at.get("ceil_mode", 0)),
                        count_include_pad=bool(at.get("count_include_pad", 0)))


def _batchnorm(m: OnnxTorch, a: list, names: list[str], at: dict) -> torch.Tensor:
    x, scale, bias, mean, var = a[:5]
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=at.get("epsilon", 1e-5))


def _gemm(m: OnnxTorch, a: list, names: list[str], at: dict) -> torch.Tensor:
    x = a[0].t() if at.get("transA", 0) else a[0]
    w = a[1].t() if at.get("transB", 0) else a[1]
    y = at.get("alpha", 1.0) * (x @ w)
    if len(a) > 2 and a[2] is not None:
        y = y + at.get("beta", 1.0) * a[2]
    return y


def _sum(m: OnnxTorch, a: list, names: list[str], at: dict) -> torch.Tensor:
    total = a[0]
    for x in a[1:]:
        total = total + x
    return total


def _unary(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
    return lambda m, a, names, at: fn(a[0])


def _binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[..., torch.Tensor]:
    return lambda m, a, names, at: fn(a[0], a[1])


OPS: dict[str, Callable[..., torch.Tensor]] = {
    "Add": _binary(torch.add), "Sub": _binary(torch.sub), "Mul": _binary(torch.mul),
    "Div": _binary(torch.div), "MatMul": _binary(torch.matmul), "Sum": _sum,
    "Relu": _unary(torch.relu), "Erf": _unary(torch.erf), "Identity": _unary(lambda x: x),
    "Transpose": lambda m, a, names, at: a[0].permute(*at["perm"]),
    "Flatten": lambda m, a, names, at: a[0].reshape(
        int(np.prod(a[0].shape[:at.get("axis", 1)])), -1),
    "Cast": _cast, "Reshape": _reshape, "Gather": _gather, "Softmax": _softmax,
    "LayerNormalization": _layernorm, "Conv": _conv, "MaxPool": _maxpool,
    "AveragePool": _avgpool, "GlobalAveragePool": lambda m, a, names, at: a[0].mean(
        dim=tuple(range(2, a[0].dim())), keepdim=True),
    "BatchNormalization": _batchnorm, "Gemm": _gemm,
}
