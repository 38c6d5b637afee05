"""Generate the ONNX reference models used by the PyC test-suite.

Usage::

    python tests/models/make_reference_models.py OUT_DIR [--seed N] [--models mlp,cnn,...]

Writes ``mlp.onnx``, ``cnn.onnx`` and ``transformer.onnx`` into ``OUT_DIR``.  All
weights are random but seeded, so the output is byte-for-byte reproducible for a
given ``--seed`` (and, for ``transformer.onnx``, a given torch version).

``mlp.onnx`` and ``cnn.onnx`` are built directly with :mod:`onnx.helper` and only
need ``onnx`` + ``numpy``.  ``transformer.onnx`` is a small PyTorch encoder exported
with the TorchScript exporter (``dynamo=False``) and needs ``torch==2.13.0``; torch
is imported lazily so the other two models can be regenerated without it.

Every model is validated with :func:`onnx.checker.check_model` and executed once in
onnxruntime on random inputs (the transformer is also compared against eager torch).
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

if TYPE_CHECKING:
    from torch import nn

OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17 (onnx 1.12)
PRODUCER_NAME = "pyc-reference-models"
PRODUCER_VERSION = "1"
TORCH_VERSION = "2.13.0"

# Ops that the exported transformer must contain (it exists to exercise them).
TRANSFORMER_REQUIRED_OPS = frozenset(
    {
        "MatMul", "Add", "Mul", "Div", "Sub", "Pow", "Sqrt", "ReduceMean", "Softmax",
        "Erf", "Tanh", "Transpose", "Reshape", "Gather", "Unsqueeze", "Concat", "Slice",
        "Cast", "Where", "Expand", "Shape", "LayerNormalization",
    }
)  # fmt: skip


# --------------------------------------------------------------------------- helpers


def _rng(seed: int, model_index: int) -> np.random.Generator:
    """Independent stream per model, so one model does not depend on the others."""
    return np.random.default_rng([seed, model_index])


def _he(rng: np.random.Generator, shape: Sequence[int], fan_in: int) -> np.ndarray:
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


def _small(rng: np.random.Generator, shape: Sequence[int], scale: float = 0.1) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(array, name=name)


def _finalize(model: onnx.ModelProto, graph_name: str, doc: str) -> onnx.ModelProto:
    """Pin every free-form field so the serialized bytes only depend on the content."""
    model.ir_version = IR_VERSION
    model.producer_name = PRODUCER_NAME
    model.producer_version = PRODUCER_VERSION
    model.domain = ""
    model.model_version = 1
    model.doc_string = doc
    model.graph.name = graph_name
    model.graph.doc_string = doc
    for node in model.graph.node:
        node.doc_string = ""
    del model.metadata_props[:]
    return model


def export_legacy(module: object, inputs: Sequence[np.ndarray], input_names: list[str],
                  output_names: list[str], doc: str, graph_name: str,
                  silence_all_warnings: bool = False) -> onnx.ModelProto:
    """torch.onnx.export with the TorchScript exporter (static shapes, opset OPSET), then the
    pinned fields of _finalize and the checks of _check. Shared by the make_*.py scripts."""
    import torch

    if not torch.__version__.startswith(TORCH_VERSION):
        print(f"warning: torch {torch.__version__} != {TORCH_VERSION}; {graph_name}.onnx will "
              "differ from the committed file", file=sys.stderr)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # deprecated in torch, but it is the exporter we want
        if silence_all_warnings:
            warnings.simplefilter("ignore")
        else:
            warnings.filterwarnings("ignore", "You are using the legacy TorchScript",
                                    DeprecationWarning)
        torch.onnx.export(module, tuple(torch.from_numpy(x) for x in inputs), buffer,
                          dynamo=False, opset_version=OPSET, input_names=input_names,
                          output_names=output_names, do_constant_folding=True)
    model = _finalize(onnx.load_from_string(buffer.getvalue()), graph_name, doc)
    _check(model)
    return model


def randomize_batchnorm(module: object) -> None:
    """Non-trivial BatchNorm statistics (in place), so the convs they fold into differ."""
    import torch
    from torch import nn

    with torch.no_grad():
        for layer in module.modules():  # type: ignore[attr-defined]
            if isinstance(layer, nn.BatchNorm2d):
                layer.weight.copy_(1.0 + 0.1 * torch.randn_like(layer.weight))
                layer.bias.copy_(0.1 * torch.randn_like(layer.bias))
                layer.running_mean.copy_(0.1 * torch.randn_like(layer.running_mean))
                layer.running_var.copy_(torch.rand_like(layer.running_var) + 0.5)


def check_matches_torch(module: object, model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                        rtol: float, atol: float) -> None:
    """The export, run by onnxruntime, agrees with the eager module on `feeds` (one output)."""
    import torch

    with torch.no_grad():
        expected = module(*(torch.from_numpy(x) for x in feeds.values())).numpy()  # type: ignore[operator]
    (actual,) = _run_ort(model, feeds)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def generator_main(make: Callable[[int], onnx.ModelProto], name: str, limit: int, description: str,
                   argv: list[str] | None) -> int:
    """The command line of a make_<name>.py script: [OUT_DIR] [--seed N] -> OUT_DIR/<name>.onnx."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("out_dir", nargs="?", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_generated(make(args.seed), args.out_dir, name, limit)
    return 0


def write_generated(model: onnx.ModelProto, out_dir: Path, name: str, limit: int) -> None:
    """Write OUT_DIR/NAME.onnx, refusing a file over `limit` bytes (they are committed)."""
    data = model.SerializeToString()
    if len(data) >= limit:
        raise SystemExit(f"{name}.onnx would be {len(data)} bytes (limit {limit})")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.onnx"
    path.write_bytes(data)
    print(f"wrote {path} ({len(data):,} bytes)")


def op_histogram(model: onnx.ModelProto) -> Counter[str]:
    return Counter(node.op_type for node in model.graph.node)


def _check(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model, full_check=True)
    unnamed = [n.op_type for n in model.graph.node if not n.name]
    if unnamed:
        raise RuntimeError(f"nodes without a name: {unnamed}")


# --------------------------------------------------------------------------- MLP


def make_mlp(seed: int) -> onnx.ModelProto:
    """x[batch,64] -> Gemm(transB=1)+Relu -> MatMul+Add+Relu -> Gemm -> logits[batch,10]."""
    rng = _rng(seed, 0)
    d_in, h1, h2, d_out = 64, 128, 64, 10
    inits = [
        _init("fc1.weight", _he(rng, (h1, d_in), d_in)),  # [out, in], used with transB=1
        _init("fc1.bias", _small(rng, (h1,))),
        _init("fc2.weight", _he(rng, (h1, h2), h1)),  # [in, out], plain MatMul
        _init("fc2.bias", _small(rng, (h2,))),
        _init("fc3.weight", _he(rng, (h2, d_out), h2)),  # [in, out], Gemm with transB=0
        _init("fc3.bias", _small(rng, (d_out,))),
    ]
    nodes = [
        helper.make_node(
            "Gemm", ["x", "fc1.weight", "fc1.bias"], ["fc1.out"], name="fc1_gemm", transB=1
        ),
        helper.make_node("Relu", ["fc1.out"], ["fc1.act"], name="fc1_relu"),
        helper.make_node("MatMul", ["fc1.act", "fc2.weight"], ["fc2.mm"], name="fc2_matmul"),
        helper.make_node("Add", ["fc2.mm", "fc2.bias"], ["fc2.out"], name="fc2_bias_add"),
        helper.make_node("Relu", ["fc2.out"], ["fc2.act"], name="fc2_relu"),
        helper.make_node(
            "Gemm", ["fc2.act", "fc3.weight", "fc3.bias"], ["logits"], name="fc3_gemm"
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", d_out])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return _finalize(model, "mlp", f"PyC reference MLP 64-128-64-10 (seed={seed})")


# --------------------------------------------------------------------------- CNN


def make_cnn(seed: int) -> onnx.ModelProto:
    """image[batch,3,32,32] -> 3 conv blocks (BN, pool, residual) -> probs[batch,10]."""
    rng = _rng(seed, 1)
    inits: list[TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def conv(name: str, x: str, c_in: int, c_out: int) -> str:
        inits.append(_init(f"{name}.weight", _he(rng, (c_out, c_in, 3, 3), c_in * 9)))
        inits.append(_init(f"{name}.bias", _small(rng, (c_out,))))
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{name}.weight", f"{name}.bias"],
                [f"{name}.out"],
                name=f"{name}_conv",
                kernel_shape=[3, 3],
                pads=[1, 1, 1, 1],
                strides=[1, 1],
            )
        )
        return f"{name}.out"

    def batchnorm(name: str, x: str, channels: int) -> str:
        params = {
            "scale": rng.uniform(0.5, 1.5, channels),
            "bias": rng.standard_normal(channels) * 0.1,
            "mean": rng.standard_normal(channels) * 0.1,
            "var": rng.uniform(0.5, 1.5, channels),  # strictly positive
        }
        for key, value in params.items():
            inits.append(_init(f"{name}.{key}", value.astype(np.float32)))
        nodes.append(
            helper.make_node(
                "BatchNormalization",
                [x] + [f"{name}.{key}" for key in params],
                [f"{name}.out"],
                name=f"{name}_batchnorm",
                epsilon=1e-5,
            )
        )
        return f"{name}.out"

    def unary(op: str, name: str, x: str, **attrs: object) -> str:
        nodes.append(helper.make_node(op, [x], [f"{name}.out"], name=name, **attrs))
        return f"{name}.out"

    def maxpool(name: str, x: str) -> str:
        return unary("MaxPool", name, x, kernel_shape=[2, 2], strides=[2, 2])

    x = unary("Relu", "block1_relu", batchnorm("bn1", conv("block1", "image", 3, 16), 16))
    x = maxpool("pool1", x)  # [B,16,16,16]
    x = unary("Relu", "block2_relu", batchnorm("bn2", conv("block2", x, 16, 32), 32))
    pool2 = maxpool("pool2", x)  # [B,32,8,8]
    y = conv("block3", pool2, 32, 32)
    nodes.append(helper.make_node("Add", [y, pool2], ["residual.out"], name="block3_residual_add"))
    x = unary("Relu", "block3_relu", "residual.out")
    x = unary("GlobalAveragePool", "gap", x)  # [B,32,1,1]
    x = unary("Flatten", "flatten", x, axis=1)  # [B,32]
    inits.append(_init("fc.weight", _he(rng, (10, 32), 32)))
    inits.append(_init("fc.bias", _small(rng, (10,))))
    nodes.append(
        helper.make_node("Gemm", [x, "fc.weight", "fc.bias"], ["fc.out"], name="fc_gemm", transB=1)
    )
    nodes.append(helper.make_node("Softmax", ["fc.out"], ["probs"], name="softmax", axis=1))

    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return _finalize(model, "cnn", f"PyC reference CNN 3x32x32 -> 10 (seed={seed})")


# --------------------------------------------------------------------------- transformer

VOCAB, MAX_POS, D_MODEL, N_HEADS, N_LAYERS, D_FF = 1000, 128, 64, 4, 2, 128


def _build_transformer(seed: int) -> nn.Module:
    """A 2-layer post-LN encoder; layer 0 hand-writes LayerNorm and uses erf GELU,
    layer 1 uses nn.LayerNorm (-> LayerNormalization) and tanh GELU."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    head_dim = D_MODEL // N_HEADS

    class HandLayerNorm(nn.Module):
        def __init__(self, dim: int, eps: float = 1e-5) -> None:
            super().__init__()
            self.eps = eps
            self.weight = nn.Parameter(torch.ones(dim))
            self.bias = nn.Parameter(torch.zeros(dim))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mean = x.mean(dim=-1, keepdim=True)  # ReduceMean
            centered = x - mean  # Sub
            var = centered.pow(2).mean(dim=-1, keepdim=True)  # Pow, ReduceMean
            return centered / torch.sqrt(var + self.eps) * self.weight + self.bias

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj = nn.Linear(D_MODEL, D_MODEL)
            self.k_proj = nn.Linear(D_MODEL, D_MODEL)
            self.v_proj = nn.Linear(D_MODEL, D_MODEL)
            self.o_proj = nn.Linear(D_MODEL, D_MODEL)

        def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
            batch, seq, _ = x.shape  # dynamic: Shape -> Gather

            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.view(batch, seq, N_HEADS, head_dim).transpose(1, 2)

            q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
            scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(head_dim)
            scores = scores + mask_bias.expand(batch, N_HEADS, seq, seq)
            probs = torch.softmax(scores, dim=-1)
            ctx = torch.matmul(probs, v).transpose(1, 2).reshape(batch, seq, D_MODEL)
            return self.o_proj(ctx)

    class EncoderLayer(nn.Module):
        def __init__(self, hand_written: bool) -> None:
            super().__init__()
            norm: type[nn.Module] = HandLayerNorm if hand_written else nn.LayerNorm
            self.attn = SelfAttention()
            self.norm1 = norm(D_MODEL)
            self.norm2 = norm(D_MODEL)
            self.ff_in = nn.Linear(D_MODEL, D_FF)
            self.ff_out = nn.Linear(D_FF, D_MODEL)
            self.gelu_approximate = "none" if hand_written else "tanh"

        def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
            x = self.norm1(x + self.attn(x, mask_bias))
            hidden = F.gelu(self.ff_in(x), approximate=self.gelu_approximate)
            return self.norm2(x + self.ff_out(hidden))

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.token_embedding = nn.Embedding(VOCAB, D_MODEL)
            self.position_embedding = nn.Embedding(MAX_POS, D_MODEL)
            self.layers = nn.ModuleList(EncoderLayer(hand_written=i == 0) for i in range(N_LAYERS))

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            seq = input_ids.shape[1]
            x = self.token_embedding(input_ids)  # Gather
            x = x + self.position_embedding.weight[:seq]  # Slice with a dynamic end
            keep = attention_mask.unsqueeze(1).unsqueeze(2).to(torch.bool)  # [B,1,1,S]
            mask_bias = torch.where(keep, 0.0, -1e4).to(x.dtype)
            for layer in self.layers:
                x = layer(x, mask_bias)
            return x

    torch.manual_seed(seed)
    model = Encoder()
    with torch.no_grad():  # make the norms non-trivial too
        for module in model.modules():
            if isinstance(module, (HandLayerNorm, nn.LayerNorm)):
                module.weight.copy_(1.0 + 0.1 * torch.randn_like(module.weight))
                module.bias.copy_(0.1 * torch.randn_like(module.bias))
    return model.eval()


def _transformer_inputs(batch: int, seq: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 2, batch, seq])
    input_ids = rng.integers(0, VOCAB, size=(batch, seq), dtype=np.int64)
    attention_mask = np.ones((batch, seq), dtype=np.int64)
    for row in range(1, batch):  # right-pad every row after the first
        attention_mask[row, seq - 1 - (row * 3) % seq :] = 0
    return input_ids, attention_mask


def make_transformer(seed: int) -> onnx.ModelProto:
    import torch

    if not torch.__version__.startswith(TORCH_VERSION):
        print(
            f"warning: torch {torch.__version__} != {TORCH_VERSION}; "
            "transformer.onnx will differ from the committed file",
            file=sys.stderr,
        )
    module = _build_transformer(seed)
    ids, mask = _transformer_inputs(2, 8, seed)
    dynamic = {0: "batch", 1: "seq"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # deprecated in torch, but it is the exporter we want
        warnings.filterwarnings(
            "ignore", "You are using the legacy TorchScript", DeprecationWarning
        )
        torch.onnx.export(
            module,
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": dynamic,
                "attention_mask": dynamic,
                "last_hidden_state": dynamic,
            },
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buffer.getvalue())
    model = _finalize(
        model,
        "transformer",
        f"PyC reference transformer encoder, d=64 h=4 L=2 (seed={seed}, torch {torch.__version__})",
    )

    missing = TRANSFORMER_REQUIRED_OPS - set(op_histogram(model))
    if missing:
        raise RuntimeError(f"exported transformer lacks required ops: {sorted(missing)}")

    # The export must agree with eager torch at a shape other than the traced one.
    ids, mask = _transformer_inputs(3, 16, seed)
    with torch.no_grad():
        expected = module(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    (actual,) = _run_ort(model, {"input_ids": ids, "attention_mask": mask})
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
    return model


# --------------------------------------------------------------------------- verify / CLI


def _run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(out) for out in session.run(None, feeds)]


def smoke_inputs(name: str, seed: int) -> dict[str, np.ndarray]:
    """Random inputs (batch 2; seq 16 for the transformer, with padding zeros)."""
    rng = np.random.default_rng([seed, 3])
    if name == "mlp":
        return {"x": rng.standard_normal((2, 64)).astype(np.float32)}
    if name == "cnn":
        return {"image": rng.standard_normal((2, 3, 32, 32)).astype(np.float32)}
    ids, mask = _transformer_inputs(2, 16, seed)
    return {"input_ids": ids, "attention_mask": mask}


def verify(name: str, model: onnx.ModelProto, seed: int) -> list[np.ndarray]:
    _check(model)
    outputs = _run_ort(model, smoke_inputs(name, seed))
    for out in outputs:
        if not np.all(np.isfinite(out)):
            raise RuntimeError(f"{name}: non-finite output")
    return outputs


BUILDERS: dict[str, Callable[[int], onnx.ModelProto]] = {
    "mlp": make_mlp,
    "cnn": make_cnn,
    "transformer": make_transformer,
}


def _describe(model: onnx.ModelProto) -> str:
    def fmt(values: Sequence[onnx.ValueInfoProto]) -> str:
        parts = []
        for value in values:
            dims = [
                d.dim_param if d.HasField("dim_param") else str(d.dim_value)
                for d in value.type.tensor_type.shape.dim
            ]
            dtype = TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower()
            parts.append(f"{value.name}: {dtype}[{', '.join(dims)}]")
        return ", ".join(parts)

    hist = ", ".join(f"{op}={n}" for op, n in sorted(op_histogram(model).items()))
    return (
        f"  inputs : {fmt(model.graph.input)}\n"
        f"  outputs: {fmt(model.graph.output)}\n"
        f"  ops    : {hist}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory to write the .onnx files into")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default: 0)")
    parser.add_argument(
        "--models",
        default=",".join(BUILDERS),
        help=f"comma-separated subset of {','.join(BUILDERS)} (default: all)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BUILDERS))
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        model = BUILDERS[name](args.seed)
        verify(name, model, args.seed)
        path = args.out_dir / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        print(f"{path} ({path.stat().st_size} bytes)\n{_describe(model)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
