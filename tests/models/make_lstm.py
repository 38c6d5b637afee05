"""Generate ``lstm.onnx``: a small recurrent model (documents PyC's LSTM support gap).

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

import argparse
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_reference_models import TORCH_VERSION, _check, _finalize, _run_ort  # noqa: E402

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

    if not torch.__version__.startswith(TORCH_VERSION):
        print(f"warning: torch {torch.__version__} != {TORCH_VERSION}; lstm.onnx will differ "
              "from the committed file", file=sys.stderr)
    module = build_module(seed)
    x = np.random.default_rng([seed, 13]).standard_normal(INPUT_SHAPE).astype(np.float32)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # deprecated in torch, but it is the exporter we want
        warnings.simplefilter("ignore")  # legacy-exporter deprecation, LSTM batch_first notes
        torch.onnx.export(module, (torch.from_numpy(x),), buffer, dynamo=False,
                          opset_version=OPSET, input_names=["x"], output_names=["logits"],
                          do_constant_folding=True)
    model = _finalize(onnx.load_from_string(buffer.getvalue()), "lstm",
                      f"PyC LSTM tagger: 2-layer bidirectional batch_first LSTM + Linear "
                      f"(seed={seed}, torch {torch.__version__})")
    _check(model)
    lstms = [node for node in model.graph.node if node.op_type == "LSTM"]
    if len(lstms) != LAYERS:
        raise RuntimeError(f"expected {LAYERS} LSTM nodes, got {len(lstms)}")
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    (actual,) = _run_ort(model, {"x": x})
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = make_lstm(args.seed).SerializeToString()
    if len(data) >= MAX_BYTES:
        raise SystemExit(f"lstm.onnx would be {len(data)} bytes (limit {MAX_BYTES})")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "lstm.onnx"
    path.write_bytes(data)
    print(f"wrote {path} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
