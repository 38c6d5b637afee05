"""Shared fixtures: the reference models, fresh random inputs, and the onnxruntime oracle."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

MODELS_DIR = Path(__file__).resolve().parent / "models"
# every `pyc build` reads the tuning database: tests get an empty one, never the user's
os.environ["PYC_TUNING_DB"] = str(Path(tempfile.mkdtemp(prefix="pyc-test-tuning-")) / "tuning.json")
# every `pyc build` runs the whole pipeline: the build cache (tests/artifact/test_build_cache.py
# turns it on for itself) would let one test's build stand in for another's
os.environ["PYC_BUILD_CACHE"] = "off"
# a contract's latency clause reads this machine's calibration store (earlier profiles): tests
# get an empty one (tests that calibrate set their own), never the user's
os.environ["PYC_WHATIF_CALIBRATION"] = str(
    Path(tempfile.mkdtemp(prefix="pyc-test-whatif-")) / "whatif.json")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "early: a long test, run first so that it cannot be the "
                            "last one running while the other xdist workers have nothing left")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """`-n N` without `--dist` means pytest-xdist's `load`, which hands each worker chunks of
    consecutive tests that no other worker can take back: one worker may still be running its
    chunk's slow tests while the others wait at the end. `worksteal` lets an idle worker take
    half of another's queue. An explicit `--dist` is kept."""
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", None) == "no":
        config.option.dist = "worksteal"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `early` first, the rest in pytest's order (a stable sort)."""
    items.sort(key=lambda item: item.get_closest_marker("early") is None)


@dataclass(frozen=True)
class ReferenceModel:
    name: str
    path: Path
    shapes: dict[str, tuple[int, ...]]

    def random_feeds(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Fresh random inputs: N(0,1) floats; token ids in range; a mask with padded tails."""
        feeds: dict[str, np.ndarray] = {}
        for name, shape in self.shapes.items():
            if name == "input_ids":
                feeds[name] = rng.integers(0, 1000, shape, dtype=np.int64)
            elif name == "attention_mask":
                mask = np.ones(shape, np.int64)
                for row in range(shape[0]):
                    mask[row, shape[1] - int(rng.integers(0, max(1, shape[1] // 2))):] = 0
                feeds[name] = mask
            else:
                feeds[name] = rng.standard_normal(shape).astype(np.float32)
        return feeds


REFERENCE_MODELS = {
    "mlp": ReferenceModel("mlp", MODELS_DIR / "mlp.onnx", {"x": (3, 64)}),
    "cnn": ReferenceModel("cnn", MODELS_DIR / "cnn.onnx", {"image": (2, 3, 32, 32)}),
    "transformer": ReferenceModel("transformer", MODELS_DIR / "transformer.onnx",
                                  {"input_ids": (2, 24), "attention_mask": (2, 24)}),
}


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A fresh random generator per test; its seed is printed so a failure can be replayed."""
    seed = int(np.random.SeedSequence().entropy % (2**32))  # type: ignore[operator]
    print(f"random seed for {request.node.name}: {seed}")
    return np.random.default_rng(seed)


def onnxruntime_outputs(model_path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def invoke(*args: str) -> tuple[int, str]:
    """Run the `pyc` command line in-process: (exit code, output)."""
    from click.testing import CliRunner

    from pyc_cli.cli.main import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def mlp_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference MLP built once per test module (x = 3 x 64)."""
    out = tmp_path_factory.mktemp("cli") / "mlp.pyc"
    code, output = invoke("build", str(REFERENCE_MODELS["mlp"].path), "-o", str(out),
                          "--input-shape", "x=3,64")
    assert code == 0, output
    return out
