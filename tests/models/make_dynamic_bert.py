"""Export a BERT encoder with random weights and dynamic batch and sequence axes (issue #15).

Usage::

    python tests/models/make_dynamic_bert.py OUT.onnx [--minilm]

Without ``--minilm`` the encoder is tiny (2 layers, hidden 32, 2 heads, vocab 100, 512 positions: exported in
about a second, what the tests use); with it, MiniLM-L6-shaped (6 layers, hidden 384, 12 heads,
intermediate 1536, vocab 30522; random weights, no download). Three int64 inputs ``input_ids``,
``attention_mask``, ``token_type_ids`` of shape [batch, seq], one output ``last_hidden_state``
[batch, seq, hidden]; ``torch.onnx.export(dynamo=False)``, opset 17, dynamic axes on every input
and output, checked against eager PyTorch with onnxruntime at a second shape.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import warnings
from pathlib import Path

import numpy as np

OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("last_hidden_state",)
TINY = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 512}
MINILM = {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
          "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512}


def build_module(config: dict[str, int], seed: int = 0):  # noqa: ANN201 (torch imported lazily)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    bert = BertModel(BertConfig(**config, attn_implementation="eager"), add_pooling_layer=False)
    bert.eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids, return_dict=True).last_hidden_state

    return Encoder().eval()


def sample_inputs(rng: np.random.Generator, vocab: int, batch: int, seq: int
                  ) -> dict[str, np.ndarray]:
    """Random ids, masks with a padded tail, token types 0 then 1."""
    ids = rng.integers(1, vocab, (batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), np.int64)
    types = np.zeros((batch, seq), np.int64)
    for row in range(batch):
        mask[row, seq - int(rng.integers(0, max(seq // 2, 1))):] = 0
        mask[row, 0] = 1
        types[row, int(rng.integers(0, seq)):] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def export_dynamic_bert(out_path: Path, config: dict[str, int] | None = None,
                        verify: bool = True) -> Path:
    """Export to `out_path` with dynamic axes `batch` and `seq`; verified with onnxruntime at a
    shape other than the traced one, so a shape the tracer baked in would show."""
    import onnx
    import torch

    config = config or TINY
    module = build_module(config)
    feeds = sample_inputs(np.random.default_rng(0), config["vocab_size"], 2, 7)
    args = tuple(torch.from_numpy(feeds[name]) for name in INPUT_NAMES)
    axes = {name: {0: "batch", 1: "seq"} for name in INPUT_NAMES + OUTPUT_NAMES}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer warnings
        torch.onnx.export(module, args, buffer, dynamo=False, opset_version=OPSET,
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          dynamic_axes=axes, do_constant_folding=True)
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(model.SerializeToString())
    if verify:
        import onnxruntime as ort

        other = sample_inputs(np.random.default_rng(1), config["vocab_size"], 3, 11)
        with torch.no_grad():
            want = module(*(torch.from_numpy(other[n]) for n in INPUT_NAMES)).numpy()
        session = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
        got = session.run(list(OUTPUT_NAMES), other)[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    return out_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--minilm", action="store_true", help="MiniLM-L6 sizes (else tiny)")
    args = parser.parse_args(argv)
    path = export_dynamic_bert(args.out, MINILM if args.minilm else TINY)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
