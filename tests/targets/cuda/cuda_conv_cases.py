"""Small ONNX convolutions for the tensor-core conv (cuda_conv_mma, --precision fp16 / bf16) and
the depthwise conv (cuda_conv_depthwise, every precision), on odd sizes: 3 input channels and a
7 x 7 / 2 stem (K = 147, not a multiple of 8: padded weight rows), prime channel counts, 1 x 1
stride 2, 3 x 3 pad 1 on a 7 x 7 (49-pixel) map, dilation with asymmetric pads, a 1-D and a
3-D conv, a residual + ReLU epilogue on odd and even pixel counts (the paired stores), batches
1 to 4; depthwise 3 x 3 / 5 x 5 at strides 1 and 2 and a channel multiplier. Each has a float64
numpy forward on the rounding model of mma_precision.py (inputs rounded as the kernel rounds
them); shared by the emulated and GPU tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from helpers import init, make_model, rand, vinfo
from mma_precision import round_to
from onnx import helper

from pyc_cli.ops import references

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class ConvCase:
    name: str
    x: tuple[int, ...]  # N, C, spatial...
    w: tuple[int, ...]  # OC, C / group, kernel...
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()  # ONNX order: begins then ends
    dilations: tuple[int, ...] = ()
    group: int = 1
    bias: bool = True
    epilogue: str = "relu"  # "", "relu" or "residual_relu" (relu(conv + r))
    # the conv reads Relu(x), an activation (stored in 16 bits at fp16 / bf16), not x itself
    half_input: bool = False
    # the conv's result goes on to a Transpose (N and C swapped): stored in 16 bits at fp16 / bf16
    half_output: bool = False

    @property
    def rank(self) -> int:
        return len(self.x) - 2

    def geometry(self) -> tuple[list[int], list[int], list[int], list[int]]:
        strides = list(self.strides or (1,) * self.rank)
        dilations = list(self.dilations or (1,) * self.rank)
        pads = list(self.pads or (0,) * (2 * self.rank))
        out = [(size + pads[d] + pads[d + self.rank] - dilations[d] * (k - 1) - 1) // strides[d] + 1
               for d, (size, k) in enumerate(zip(self.x[2:], self.w[2:]))]
        return strides, dilations, pads, out

    @property
    def y(self) -> tuple[int, ...]:
        return (self.x[0], self.w[0], *self.geometry()[3])

    @property
    def out(self) -> tuple[int, ...]:
        """The model's output y: the conv's result, or its Transpose (half_output)."""
        return (self.y[1], self.y[0], *self.y[2:]) if self.half_output else self.y

    @property
    def inputs(self) -> dict[str, tuple[int, ...]]:
        return {"x": self.x, **({"r": self.y} if self.epilogue == "residual_relu" else {})}

    def make(self, rng: np.random.Generator) -> onnx.ModelProto:
        strides, dilations, pads, _ = self.geometry()
        fan_in = int(np.prod(self.w[1:]))
        inits = [init("w", rand(rng, *self.w, scale=fan_in ** -0.5))]
        conv_inputs = ["xr" if self.half_input else "x", "w"]
        if self.bias:
            inits.append(init("b", rand(rng, self.w[0])))
            conv_inputs.append("b")
        last = "z" if self.half_output else "y"
        out = last if not self.epilogue else "c"
        nodes = [helper.make_node("Relu", ["x"], ["xr"])] if self.half_input else []
        nodes.append(helper.make_node("Conv", conv_inputs, [out], strides=strides, dilations=dilations,
                                      pads=pads, group=self.group))
        if self.epilogue == "relu":
            nodes.append(helper.make_node("Relu", ["c"], [last]))
        elif self.epilogue == "residual_relu":
            nodes += [helper.make_node("Add", ["c", "r"], ["s"]), helper.make_node("Relu", ["s"], [last])]
        if self.half_output:
            perm = [1, 0, *range(2, len(self.y))]
            nodes.append(helper.make_node("Transpose", ["z"], ["y"], perm=perm))
        return make_model(nodes, [vinfo(n, s) for n, s in self.inputs.items()], [vinfo("y", self.out)], inits)

    def feeds(self, rng: np.random.Generator) -> Arrays:
        return {name: rand(rng, *shape) for name, shape in self.inputs.items()}

    def forward(self, feeds: Arrays, weights: Arrays, precision: str) -> np.ndarray:
        """y in float64 from x (Relu(x): half_input) and w rounded to `precision` (fp32: exact);
        half_output: the conv's result rounded as stored (fp16 / bf16), N and C swapped."""
        strides, dilations, pads, out = self.geometry()
        x = np.maximum(feeds["x"], 0) if self.half_input else feeds["x"]
        y = references.conv(round_to(x, precision), round_to(weights["w"], precision),
                            weights["b"].astype(np.float64) if self.bias else None, self.group,
                            strides, dilations, pads[:self.rank], out)
        if self.epilogue == "residual_relu":
            y = y + feeds["r"]
        y = np.maximum(y, 0) if self.epilogue else y
        if self.half_output:
            y = np.swapaxes(round_to(y, precision) if precision in ("fp16", "bf16") else y, 0, 1)
        return y


CONV_MMA_CASES = [
    ConvCase("stem_7x7_s2", (1, 3, 23, 23), (16, 3, 7, 7), (2, 2), (3, 3, 3, 3)),
    ConvCase("3x3_pad1_prime_residual", (2, 13, 9, 9), (20, 13, 3, 3), pads=(1, 1, 1, 1),
             epilogue="residual_relu"),
    ConvCase("1x1_s2", (2, 17, 10, 10), (37, 17, 1, 1), (2, 2), bias=False, epilogue=""),
    ConvCase("49_pixels", (1, 40, 7, 7), (70, 40, 3, 3), pads=(1, 1, 1, 1)),
    ConvCase("dilated_asymmetric", (1, 8, 12, 11), (9, 8, 3, 3), dilations=(2, 2), pads=(1, 2, 0, 1)),
    ConvCase("conv1d", (2, 12, 30), (10, 12, 5), pads=(2, 2)),
    ConvCase("1x1_batch4_residual", (4, 24, 6, 6), (24, 24, 1, 1), epilogue="residual_relu"),
    ConvCase("conv3d", (1, 5, 6, 7, 8), (7, 5, 3, 3, 3), (1, 2, 1), (1, 1, 1, 1, 0, 1)),
    # deep enough for the split groups of warps by default (K = 1152: 4 groups)
    ConvCase("deep_7x7_split", (1, 128, 7, 7), (24, 128, 3, 3), pads=(1, 1, 1, 1),
             epilogue="residual_relu"),
]

# the pipelined tensor-core conv (conv_stages 3 / 4: the im2col slice by cp.async) on a 16-bit
# input (a Relu's result) and a float32 one: 3 x 3 at strides 1 and 2, pads (asymmetric),
# dilation, odd and prime channel counts (partial row tiles, K not a multiple of a slice),
# batches 1 to 3, with and without bias, residual and ReLU epilogues, 16-bit and float32
# outputs, a 1-D and a 3-D conv, a strided 1 x 1 (4 columns a thread, not the pointwise
# gather), the 7 x 7 / 2 stem, a deep conv (split groups of warps and a K split by default)
PIPELINED_CASES = [
    ConvCase("p_3x3_s1_odd_residual", (2, 13, 9, 9), (20, 13, 3, 3), pads=(1, 1, 1, 1),
             epilogue="residual_relu", half_input=True),
    ConvCase("p_3x3_s2_prime_plain", (1, 7, 13, 11), (11, 7, 3, 3), (2, 2), (1, 1, 1, 1), bias=False,
             epilogue="", half_input=True, half_output=True),
    ConvCase("p_3x3_dilated_b3", (3, 9, 12, 11), (17, 9, 3, 3), dilations=(2, 2), pads=(1, 2, 0, 1),
             half_input=True, half_output=True),
    ConvCase("p_conv1d_s2", (2, 12, 31), (10, 12, 5), (2,), (2, 1), half_input=True),
    ConvCase("p_conv3d", (1, 5, 6, 7, 8), (7, 5, 3, 3, 3), (1, 2, 1), (1, 1, 1, 1, 0, 1), half_input=True),
    ConvCase("p_1x1_s2", (2, 17, 10, 10), (37, 17, 1, 1), (2, 2), half_input=True, epilogue=""),
    ConvCase("p_stem_float32_input", (1, 3, 23, 23), (16, 3, 7, 7), (2, 2), (3, 3, 3, 3)),
    ConvCase("p_deep_7x7_residual", (1, 128, 7, 7), (24, 128, 3, 3), pads=(1, 1, 1, 1),
             epilogue="residual_relu", half_input=True, half_output=True),
]

def misaligned_input_model(rng: np.random.Generator) -> onnx.ModelProto:
    """A conv whose 16-bit input starts 2 bytes past a 4-byte boundary: Relu(x2) is the second
    operand of a Concat that stays in the arena (Neg reads it), so it lives at the Concat's
    element 75; the conv reads it there (3 x 3, pad 1, 3 -> 8 channels, a residual + ReLU).
    Outputs: cn = -Concat(Relu(x1), Relu(x2)) and y."""
    nodes = [helper.make_node("Relu", ["x1"], ["r1"]), helper.make_node("Relu", ["x2"], ["r2"]),
             helper.make_node("Concat", ["r1", "r2"], ["c"], axis=1), helper.make_node("Neg", ["c"], ["cn"]),
             helper.make_node("Conv", ["r2", "w", "b"], ["v"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["v", "r"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    return make_model(nodes, [vinfo("x1", (1, 3, 5, 5)), vinfo("x2", (1, 3, 5, 5)), vinfo("r", (1, 8, 5, 5))],
                      [vinfo("cn", (1, 6, 5, 5)), vinfo("y", (1, 8, 5, 5))],
                      [init("w", rand(rng, 8, 3, 3, 3, scale=27 ** -0.5)), init("b", rand(rng, 8))])


MISALIGNED_INPUTS = {"x1": (1, 3, 5, 5), "x2": (1, 3, 5, 5), "r": (1, 8, 5, 5)}

DEPTHWISE_CASES = [
    ConvCase("dw_3x3_s1", (2, 12, 11, 11), (12, 1, 3, 3), pads=(1, 1, 1, 1), group=12),
    ConvCase("dw_3x3_s2", (1, 7, 14, 13), (7, 1, 3, 3), (2, 2), (1, 1, 1, 1), group=7, bias=False,
             epilogue=""),
    ConvCase("dw_5x5_s2", (2, 5, 15, 15), (5, 1, 5, 5), (2, 2), (2, 2, 2, 2), group=5),
    ConvCase("dw_5x5_s1_residual", (1, 6, 9, 40), (6, 1, 5, 5), pads=(2, 2, 2, 2), group=6,
             epilogue="residual_relu"),
    ConvCase("dw_multiplier_2", (2, 4, 8, 8), (8, 1, 3, 3), pads=(1, 1, 1, 1), group=4),
]

# the float32 implicit GEMM's 8 x 128 tile (at most 8 output channels)
FEW_CHANNELS = ConvCase("few_channels", (2, 6, 13, 11), (5, 6, 3, 3), (1, 2), (1, 1, 1, 1),
                        epilogue="residual_relu")

# sizes the emulation cannot afford, for the GPU tests: ResNet-50's stem, layer-1, layer-3
# downsample and layer-4 convs at batch 1 (a 49-pixel map) and 4; MobileNet's depthwise layers
GPU_CONV_MMA_CASES = [
    ConvCase("resnet_stem_b1", (1, 3, 224, 224), (64, 3, 7, 7), (2, 2), (3, 3, 3, 3)),
    ConvCase("resnet_layer1_3x3_b4", (4, 64, 56, 56), (64, 64, 3, 3), pads=(1, 1, 1, 1)),
    ConvCase("resnet_layer1_expand_b4_residual", (4, 64, 56, 56), (256, 64, 1, 1),
             epilogue="residual_relu"),
    ConvCase("resnet_downsample_1x1_s2_b1", (1, 1024, 14, 14), (2048, 1024, 1, 1), (2, 2),
             bias=False, epilogue=""),
    ConvCase("resnet_layer4_3x3_b1", (1, 512, 7, 7), (512, 512, 3, 3), pads=(1, 1, 1, 1)),
    ConvCase("resnet_layer4_3x3_b4", (4, 512, 7, 7), (512, 512, 3, 3), pads=(1, 1, 1, 1)),
    ConvCase("resnet_layer4_1x1_b1_residual", (1, 512, 7, 7), (2048, 512, 1, 1),
             epilogue="residual_relu"),
    ConvCase("prime_channels_b3", (3, 31, 29, 23), (53, 31, 3, 3), (2, 1), (1, 0, 2, 1)),
]

# the pipelined conv on 16-bit inputs at ResNet-50's 3 x 3 sizes (batch 8: the emulation cannot
# afford them) and odd ones, for the GPU tests
GPU_PIPELINED_CASES = [
    ConvCase("g_resnet_layer1_3x3_b8", (8, 64, 56, 56), (64, 64, 3, 3), pads=(1, 1, 1, 1),
             half_input=True, half_output=True),
    ConvCase("g_resnet_layer2_3x3_s2_b8", (8, 128, 56, 56), (128, 128, 3, 3), (2, 2), (1, 1, 1, 1),
             half_input=True),
    ConvCase("g_resnet_layer3_3x3_b8_residual", (8, 256, 14, 14), (256, 256, 3, 3), pads=(1, 1, 1, 1),
             epilogue="residual_relu", half_input=True, half_output=True),
    ConvCase("g_resnet_layer4_3x3_b1", (1, 512, 7, 7), (512, 512, 3, 3), pads=(1, 1, 1, 1),
             half_input=True),
    ConvCase("g_prime_dilated_b3", (3, 31, 29, 23), (53, 31, 3, 3), (2, 1), (1, 0, 2, 1),
             dilations=(2, 1), half_input=True, half_output=True),
    ConvCase("g_stem_float32_b4", (4, 3, 224, 224), (64, 3, 7, 7), (2, 2), (3, 3, 3, 3)),
]

GPU_DEPTHWISE_CASES = [
    ConvCase("mobilenet_dw_3x3_s2", (1, 32, 112, 112), (32, 1, 3, 3), (2, 2), (1, 1, 1, 1), group=32),
    ConvCase("mobilenet_dw_3x3_s1_b4", (4, 512, 14, 14), (512, 1, 3, 3), pads=(1, 1, 1, 1), group=512),
    ConvCase("dw_5x5_s1_7x7_b2", (2, 960, 7, 7), (960, 1, 5, 5), pads=(2, 2, 2, 2), group=960),
    ConvCase("dw_5x5_s2_odd", (1, 72, 57, 41), (72, 1, 5, 5), (2, 2), (2, 2, 2, 2), group=72,
             epilogue="residual_relu"),
]
