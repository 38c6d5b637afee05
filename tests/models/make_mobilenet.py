"""Generate ``mobilenet.onnx``: a small MobileNetV3-style CNN for the exported-model zoo.

Usage::

    python tests/models/make_mobilenet.py [OUT_DIR] [--seed N]   # default OUT_DIR: tests/models

Stem: 3x3 stride-2 conv (16 ch) + BatchNorm + HardSwish. Then five inverted residual blocks
(1x1 expand, depthwise 3x3/5x5 conv, optional squeeze-excite, 1x1 project, residual when the
shape allows), mixing ReLU and HardSwish like MobileNetV3-Small. The squeeze-excite gate is
GlobalAveragePool -> 1x1 conv -> ReLU -> 1x1 conv -> HardSigmoid -> Mul. Head: 1x1 conv +
HardSwish, global average pool, Flatten, Linear + HardSwish, Dropout (eval: identity), Linear
to 10 classes.

Input ``image`` float32 [1, 3, 64, 64], output ``logits`` float32 [1, 10]. Static shapes,
opset 17, IR version 8, exported with ``torch.onnx.export(dynamo=False)``; needs
``torch==2.13.0`` to reproduce the committed bytes (weights and BN statistics are seeded).
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
INPUT_SHAPE = (1, 3, 64, 64)
CLASSES = 10
MAX_BYTES = 2_000_000
# (kernel, expanded channels, out channels, squeeze-excite, activation, stride)
BLOCKS = (
    (3, 16, 16, True, "relu", 2),
    (3, 64, 24, False, "relu", 2),
    (3, 72, 24, False, "relu", 1),
    (5, 96, 40, True, "hswish", 2),
    (5, 160, 40, True, "hswish", 1),
)
HEAD_CHANNELS = 160
HIDDEN = 256


def _make_divisible(value: float, divisor: int = 8) -> int:
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def build_module(seed: int):  # noqa: ANN201 (torch is imported lazily)
    import torch
    from torch import nn

    def act(kind: str) -> nn.Module:
        return nn.Hardswish() if kind == "hswish" else nn.ReLU()

    def conv_bn(c_in: int, c_out: int, kernel: int, stride: int, groups: int,
                kind: str | None) -> nn.Sequential:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out)]
        if kind is not None:
            layers.append(act(kind))
        return nn.Sequential(*layers)

    class SqueezeExcite(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            squeezed = _make_divisible(channels / 4)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc1 = nn.Conv2d(channels, squeezed, 1)
            self.relu = nn.ReLU()
            self.fc2 = nn.Conv2d(squeezed, channels, 1)
            self.gate = nn.Hardsigmoid()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))

    class InvertedResidual(nn.Module):
        def __init__(self, c_in: int, kernel: int, expanded: int, c_out: int, se: bool,
                     kind: str, stride: int) -> None:
            super().__init__()
            self.residual = stride == 1 and c_in == c_out
            layers: list[nn.Module] = []
            if expanded != c_in:
                layers.append(conv_bn(c_in, expanded, 1, 1, 1, kind))
            layers.append(conv_bn(expanded, expanded, kernel, stride, expanded, kind))  # depthwise
            if se:
                layers.append(SqueezeExcite(expanded))
            layers.append(conv_bn(expanded, c_out, 1, 1, 1, None))  # linear projection
            self.body = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.body(x)
            return x + y if self.residual else y

    class MobileNetV3(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = [conv_bn(3, 16, 3, 2, 1, "hswish")]
            c_in = 16
            for kernel, expanded, c_out, se, kind, stride in BLOCKS:
                layers.append(InvertedResidual(c_in, kernel, expanded, c_out, se, kind, stride))
                c_in = c_out
            layers.append(conv_bn(c_in, HEAD_CHANNELS, 1, 1, 1, "hswish"))
            self.features = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Linear(HEAD_CHANNELS, HIDDEN), nn.Hardswish(),
                                            nn.Dropout(0.2), nn.Linear(HIDDEN, CLASSES))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.pool(self.features(x)), 1))

    torch.manual_seed(seed)
    module = MobileNetV3().eval()
    randomize_batchnorm(module)
    return module


def make_mobilenet(seed: int) -> onnx.ModelProto:
    import torch

    module = build_module(seed)
    image = np.random.default_rng([seed, 11]).standard_normal(INPUT_SHAPE).astype(np.float32)
    model = export_legacy(module, [image], ["image"], ["logits"],
                          f"PyC MobileNetV3-style CNN: depthwise separable convs, HardSwish, "
                          f"squeeze-excite with HardSigmoid (seed={seed}, torch {torch.__version__})",
                          "mobilenet")
    ops = {node.op_type for node in model.graph.node}
    required = {"Conv", "HardSwish", "HardSigmoid", "GlobalAveragePool", "Mul", "Add", "Relu",
                "Gemm"}
    if not required <= ops:
        raise RuntimeError(f"unexpected export, missing {sorted(required - ops)}; ops: {sorted(ops)}")
    if not any(attr.name == "group" and attr.i > 1 for node in model.graph.node
               if node.op_type == "Conv" for attr in node.attribute):
        raise RuntimeError("no depthwise (grouped) Conv in the export")
    check_matches_torch(module, model, {"image": image}, rtol=1e-4, atol=1e-4)
    return model


def main(argv: list[str] | None = None) -> int:
    return generator_main(make_mobilenet, "mobilenet", MAX_BYTES, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
