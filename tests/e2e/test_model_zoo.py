"""The nine 'light' ONNX zoo models compile and match.

Their weights are constant fills (ConstantOfShape), so two checks per model: (1) the stored
expected output for the backend runner's input (arange(n)/n), with the zoo's own tolerances;
(2) the same architecture with fresh random weights against onnxruntime on random inputs
(rtol 1e-4, atol 1e-5 relative to the output scale), which is the check that can actually fail
on a wrong kernel.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import onnxruntime_outputs
from onnx import numpy_helper

import pyc_cli

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_models import materialize_light  # noqa: E402  (random weights for the zoo models)

# (model, rtol, atol) as listed by onnx.backend.test.case.model
ZOO = [("bvlc_alexnet", 1e-3, 1e-7), ("densenet121", 2e-3, 1e-7), ("inception_v1", 1e-3, 1e-7),
       ("inception_v2", 1e-3, 1e-7), ("resnet50", 1e-3, 1e-7), ("shufflenet", 1e-3, 1e-7),
       ("squeezenet", 1e-3, 1e-7), ("vgg19", 1e-3, 1e-7), ("zfnet512", 1e-3, 1e-7)]


def _runner_input(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The input the ONNX backend runner feeds these models: arange(n) / n in the input shape."""
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        shape = tuple(d.dim_value or 1 for d in value.type.tensor_type.shape.dim)
        n = int(np.prod(shape))
        feeds[value.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
    return feeds


@pytest.mark.parametrize(("name", "rtol", "atol"), ZOO, ids=[z[0] for z in ZOO])
def test_light_model_matches_stored_output(name: str, rtol: float, atol: float,
                                           tmp_path: Path) -> None:
    path = LIGHT / f"light_{name}.onnx"
    feeds = _runner_input(onnx.load(str(path)))
    expected = numpy_helper.to_array(onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb")))
    pyc_cli.build(path, tmp_path / "art")
    with pyc_cli.load(tmp_path / "art") as model:
        (ours,) = model.run(feeds).values()
    np.testing.assert_allclose(ours, expected.reshape(ours.shape), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", [z[0] for z in ZOO])
def test_light_model_with_random_weights_matches_onnxruntime(name: str, rng: np.random.Generator,
                                                            tmp_path: Path) -> None:
    path = tmp_path / f"{name}.onnx"
    materialize_light(LIGHT / f"light_{name}.onnx", path, seed=int(rng.integers(1 << 31)))
    pyc_cli.build(path, tmp_path / "art")
    with pyc_cli.load(tmp_path / "art") as model:
        feeds = {s.name: rng.standard_normal(s.shape).astype(s.dtype) for s in model.inputs}
        ours = model.run(feeds)
    expected = onnxruntime_outputs(path, feeds)
    for key, value in expected.items():
        scale = float(np.abs(value).max()) or 1.0
        np.testing.assert_allclose(ours[key], value, rtol=1e-4, atol=1e-5 * scale)
