"""Generate ``unet.onnx``: a small UNet-style CNN for the memory benchmark.

Usage::

    python tests/models/make_unet.py [OUT_DIR] [--seed N]     # default OUT_DIR: tests/models

Three down levels (conv blocks of 16, 32, 64 channels, each followed by MaxPool 2x2), a
128-channel bottleneck, and three up levels: Resize (nearest, scale 2), Concat with the skip
from the matching down level, then a conv block. A final 1x1 conv gives 2 class maps.
Every conv is 3x3, padding 1, with BatchNorm (folded into the conv by the exporter) and ReLU.
Down and up blocks have two convs, the bottleneck one (keeps the file under 1.5 MB).

Input ``image`` float32 [1, 3, 128, 128], output ``logits`` float32 [1, 2, 128, 128]. Static
shapes, opset 17, IR version 8, exported with ``torch.onnx.export(dynamo=False)``; needs
``torch==2.13.0`` to reproduce the committed bytes (weights are seeded).
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
    randomize_batchnorm,
)

OPSET = 17
CHANNELS = (16, 32, 64, 128)
INPUT_SHAPE = (1, 3, 128, 128)
CLASSES = 2
MAX_BYTES = 1_500_000


def build_module(seed: int):  # noqa: ANN201 (torch is imported lazily)
    import torch
    from torch import nn

    def block(c_in: int, c_out: int, convs: int = 2) -> nn.Sequential:
        layers: list[nn.Module] = []
        for index in range(convs):
            layers += [nn.Conv2d(c_in if index == 0 else c_out, c_out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU()]
        return nn.Sequential(*layers)

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c1, c2, c3, c4 = CHANNELS
            self.down = nn.ModuleList([block(3, c1), block(c1, c2), block(c2, c3)])
            self.pool = nn.MaxPool2d(2)
            self.bottleneck = block(c3, c4, convs=1)
            self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
            self.up = nn.ModuleList([block(c4 + c3, c3), block(c3 + c2, c2), block(c2 + c1, c1)])
            self.head = nn.Conv2d(c1, CLASSES, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips = []
            for down in self.down:
                x = down(x)
                skips.append(x)
                x = self.pool(x)
            x = self.bottleneck(x)
            for up, skip in zip(self.up, reversed(skips), strict=True):
                x = up(torch.cat([self.upsample(x), skip], dim=1))
            return self.head(x)

    torch.manual_seed(seed)
    module = UNet().eval()
    randomize_batchnorm(module)
    return module


def make_unet(seed: int) -> onnx.ModelProto:
    import torch

    module = build_module(seed)
    image = np.random.default_rng([seed, 7]).standard_normal(INPUT_SHAPE).astype(np.float32)
    model = export_legacy(module, [image], ["image"], ["logits"],
                          f"PyC UNet-style benchmark CNN, channels {CHANNELS}, nearest Resize x2, "
                          f"concat skips (seed={seed}, torch {torch.__version__})",
                          "unet")
    ops = {node.op_type for node in model.graph.node}
    if not {"Resize", "Concat", "Conv", "MaxPool", "Relu"} <= ops:
        raise RuntimeError(f"unexpected export, ops: {sorted(ops)}")
    check_matches_torch(module, model, {"image": image}, rtol=1e-4, atol=1e-4)
    return model


def main(argv: list[str] | None = None) -> int:
    return generator_main(make_unet, "unet", MAX_BYTES, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
