"""The memory benchmark's model set: where each model comes from and what it is fed.

- `densenet121`, `inception_v2`, `inception_v1`: the onnx package's "light" model zoo
  (onnx/backend/test/data/light). Their weights are `ConstantOfShape` fills (every weight
  0.02); `materialize_light` replaces each such weight with a seeded random initializer of the
  same shape (BatchNorm variances positive), drops the shape initializers and the
  initializer-shadowing graph inputs, sets IR version 8 and writes the result to a scratch dir.
- `unet`, `transformer`, `cnn`: committed models in tests/models/ (unet.onnx is written by
  tests/models/make_unet.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "tests" / "models"
LIGHT_DIR = Path(onnx.__file__).resolve().parent / "backend" / "test" / "data" / "light"
IR_VERSION = 8


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: str  # "light:<file>" or "tests:<file>"
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    note: str = ""

    @property
    def path_hint(self) -> Path:
        kind, _, file = self.source.partition(":")
        return (LIGHT_DIR if kind == "light" else MODELS_DIR) / file


SPECS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("densenet121", "light:light_densenet121.onnx", {"data_0": (1, 3, 224, 224)},
              "onnx light zoo, random weights"),
    ModelSpec("inception_v2", "light:light_inception_v2.onnx", {"data_0": (1, 3, 224, 224)},
              "onnx light zoo, random weights"),
    ModelSpec("inception_v1", "light:light_inception_v1.onnx", {"data_0": (1, 3, 224, 224)},
              "onnx light zoo, random weights (has LRN)"),
    ModelSpec("unet", "tests:unet.onnx", {"image": (1, 3, 128, 128)},
              "tests/models/make_unet.py (Resize nearest ×2, concat skips)"),
    ModelSpec("transformer", "tests:transformer.onnx",
              {"input_ids": (1, 128), "attention_mask": (1, 128)}, "tests/models"),
    ModelSpec("cnn", "tests:cnn.onnx", {"image": (1, 3, 32, 32)}, "tests/models"),
)}
DEFAULT_MODELS = tuple(SPECS)


def _weight_fill(rng: np.random.Generator, shape: tuple[int, ...], op: str,
                 slot: int) -> np.ndarray:
    """A plausible random weight for input `slot` of an `op` node (keeps activations O(1))."""
    if op == "BatchNormalization":
        if slot == 1:  # scale
            return 1.0 + 0.1 * rng.standard_normal(shape)
        if slot == 4:  # variance: must be positive
            return rng.uniform(0.5, 1.5, shape)
        return 0.1 * rng.standard_normal(shape)  # bias, mean
    if op in ("Conv", "Gemm") and slot == 1 and len(shape) >= 2:
        # Conv weights are [out, in, kh, kw]; the zoo's Gemm weights are [out, in] (transB=1)
        fan_in = math.prod(shape[1:])
        return rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
    return 0.05 * rng.standard_normal(shape)  # biases and anything else


def materialize_light(source: Path, dest: Path, seed: int = 0) -> dict[str, int]:
    """Write `source` with every ConstantOfShape weight replaced by a random initializer."""
    model = onnx.load(str(source))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, tuple[str, int]] = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            consumers.setdefault(name, (node.op_type, slot))
    rng = np.random.default_rng(seed)
    kept, new_inits, dropped_shapes = [], [], set()
    for node in graph.node:
        shape_name = node.input[0] if node.op_type == "ConstantOfShape" else ""
        if shape_name not in inits:
            kept.append(node)  # not a weight fill (its shape is computed): leave it
            continue
        shape = tuple(int(d) for d in numpy_helper.to_array(inits[shape_name]))
        op, slot = consumers.get(node.output[0], ("", 0))
        value = _weight_fill(rng, shape, op, slot).astype(np.float32)
        new_inits.append(numpy_helper.from_array(value, name=node.output[0]))
        dropped_shapes.add(shape_name)
    replaced = len(new_inits)
    still_used = {name for node in kept for name in node.input}
    initializers = [i for i in graph.initializer
                    if i.name not in dropped_shapes or i.name in still_used] + new_inits
    init_names = {i.name for i in initializers}
    inputs = [i for i in graph.input if i.name not in init_names and i.name not in dropped_shapes]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.input[:]
    graph.input.extend(inputs)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dest))
    return {"constant_of_shape_replaced": replaced, "nodes": len(kept)}


def prepare(name: str, workdir: Path, seed: int = 0) -> tuple[Path, dict[str, int]]:
    """The .onnx to benchmark for `name` (zoo models are materialized into `workdir`)."""
    spec = SPECS[name]
    if not spec.source.startswith("light:"):
        return spec.path_hint, {}
    dest = workdir / f"{name}.onnx"
    return dest, materialize_light(spec.path_hint, dest, seed)


# the scale and shift of each BatchNormalization that feeds a residual Sum: with the light
# zoo's random weights unscaled, activations double every block or two and pass float16's
# 65504 in the last stage (torch fp16 would give inf); scaled, they stay under 30
RESIDUAL_BN_SCALE = 0.3


def resnet50_logits(scratch: Path, dest: Path, batch: int) -> None:
    """The light zoo's ResNet-50 with random weights (materialize_light), its batch set to
    `batch` (the input, and the Reshape before the classifier), residual branches scaled by
    RESIDUAL_BN_SCALE, and the classifier's logits as the output (torchvision's ResNet-50 ends
    there too; the zoo's final Softmax is dropped: logits are a stricter check than a softmax
    over 1000 classes)."""
    materialize_light(LIGHT_DIR / "light_resnet50.onnx", scratch)
    model = onnx.load(str(scratch))
    graph = model.graph
    softmax = graph.node[-1]
    assert softmax.op_type == "Softmax", softmax.op_type
    logits = softmax.input[0]
    graph.node.remove(softmax)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, [batch, 1000]))
    graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    into_sum = {name for node in graph.node if node.op_type == "Sum" for name in node.input}
    scaled = {node.input[k] for node in graph.node
              if node.op_type == "BatchNormalization" and node.output[0] in into_sum for k in (1, 2)}
    reshapes = {n.input[1] for n in graph.node if n.op_type == "Reshape"}
    for index, init in enumerate(graph.initializer):
        array = numpy_helper.to_array(init).copy()
        if init.name in reshapes:
            array[0] = batch
        elif init.name in scaled:
            array *= np.float32(RESIDUAL_BN_SCALE)
        else:
            continue
        graph.initializer[index].CopyFrom(numpy_helper.from_array(array, init.name))
    del graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))
