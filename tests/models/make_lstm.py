"""Generate ``lstm.onnx``: a small 2-layer bidirectional LSTM tagger.

Usage::

    python tests/models/make_lstm.py [OUT_DIR] [--seed N]       # default OUT_DIR: tests/models

``nn.LSTM(input_size=16, hidden_size=32, num_layers=2, bidirectional=True, batch_first=True)``
followed by ``nn.Linear(64, 5)`` applied to every time step. The exporter writes one ONNX
``LSTM`` node per layer (direction "bidirectional"), with Transpose/Reshape glue between them.

Input ``x`` float32 [2, 8, 16], output ``logits`` float32 [2, 8, 5]. Static shapes, opset 17,
IR version 8, exported with ``torch.onnx.export(dynamo=False)``; needs ``torch==2.13.0`` to
reproduce the committed bytes (weights are seeded).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_reference_models import (  # noqa: E402
    check_matches_torch,
    export_legacy,
    generator_main,
)

OPSET = 17
INPUT_SHAPE = (2, 8, 16)
HIDDEN = 32
LAYERS = 2
CLASSES = 5
MAX_BYTES = 2_000_000


def build_module(seed: int):  # noqa: ANN201 (torch is imported lazily)
    import torch
    from torch import nn

    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(INPUT_SHAPE[2], HIDDEN, num_layers=LAYERS, bidirectional=True,
                                batch_first=True)
            self.head = nn.Linear(2 * HIDDEN, CLASSES)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x)
            return self.head(out)

    torch.manual_seed(seed)
    return Tagger().eval()


def make_lstm(seed: int) -> onnx.ModelProto:
    import torch

    module = build_module(seed)
    x = np.random.default_rng([seed, 13]).standard_normal(INPUT_SHAPE).astype(np.float32)
    model = export_legacy(module, [x], ["x"], ["logits"],
                          f"PyC LSTM tagger: 2-layer bidirectional batch_first LSTM + Linear "
                          f"(seed={seed}, torch {torch.__version__})",
                          "lstm", silence_all_warnings=True)
    lstms = [node for node in model.graph.node if node.op_type == "LSTM"]
    if len(lstms) != LAYERS:
        raise RuntimeError(f"expected {LAYERS} LSTM nodes, got {len(lstms)}")
    check_matches_torch(module, model, {"x": x}, rtol=1e-4, atol=1e-5)
    return model


def main(argv: list[str] | None = None) -> int:
    return generator_main(make_lstm, "lstm", MAX_BYTES, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
