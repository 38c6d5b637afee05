"""The dynamic-shape tests' one check (issue #15): a model built once with symbolic dims runs
at every (batch, seq) of a list against onnxruntime, on fresh random inputs, its output buffers
poisoned with NaN first (every element of the actual shape must be written)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import onnxruntime_outputs

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.runtime.native import CompiledModel

Feeds = Callable[[np.random.Generator, int, int], dict[str, np.ndarray]]
# how onnxruntime refuses a run whose sizes do not fit the model
ORT_ERRORS = (ort.capi.onnxruntime_pybind11_state.Fail,
              ort.capi.onnxruntime_pybind11_state.InvalidArgument,
              ort.capi.onnxruntime_pybind11_state.RuntimeException)


def poison_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run's output buffers start as NaN (upper-bound sized, as the runtime allocates)."""
    def poisoned(self: CompiledModel) -> list[np.ndarray]:
        return [np.full(spec.shape, np.nan, spec.dtype) for spec in self.outputs]
    monkeypatch.setattr(CompiledModel, "_output_buffers", poisoned)


def runs_match_onnxruntime(model_path: Path, artifact: Path, feeds: Feeds,
                           runs: Iterable[tuple[int, int]], rtol: float, atol: float,
                           monkeypatch: pytest.MonkeyPatch, outputs: tuple[str, ...] = ()) -> None:
    """Each output (or those named) has onnxruntime's shape and values within rtol and
    atol x max(1, max |expected|) at every (batch, seq) of `runs`."""
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(artifact) as model:
        for batch, seq in runs:
            given = feeds(rng, batch, seq)
            expected = onnxruntime_outputs(model_path, given)
            got = model.run(given)
            for name in outputs or tuple(expected):
                value = expected[name]
                assert got[name].shape == value.shape, (batch, seq, name)
                np.testing.assert_allclose(got[name], value, rtol=rtol,
                                           atol=atol * max(1.0, float(np.max(np.abs(value)))),
                                           err_msg=f"{name} at batch {batch}, seq {seq}")


def compile_driver(art: Path, driver: str, exe: Path, *defines: str) -> Path:
    """tests/c/DRIVER compiled and linked with the artifact's C, as the build compiled it
    (`defines`: extra -D options, e.g. the bucket steps of shaped_driver.c)."""
    manifest = json.loads((art / "manifest.json").read_text())
    compiler = shutil.which("gcc") or shutil.which("cc")
    assert compiler
    subprocess.run([compiler, *manifest["toolchain"]["flags"], *defines,
                    f"-DPYC_NAME={manifest['symbol_prefix']}", "-I", str(art / "src"),
                    str(art / "src" / "model.c"), str(art / "src" / "pyc_runtime.c"),
                    str(Path(__file__).resolve().parents[1] / "c" / driver), "-o", str(exe),
                    *manifest["toolchain"]["libraries"]], check=True)
    return exe


def runs_and_refusals_match_onnxruntime(path: Path, artifact: Path,
                                        feeds: Iterable[dict[str, np.ndarray]],
                                        refused: Iterable[dict[str, np.ndarray]],
                                        monkeypatch: pytest.MonkeyPatch,
                                        rtol: float, atol: float) -> None:
    """Each of `feeds` matches onnxruntime (shape and values, within rtol and atol; output
    buffers poisoned); each of `refused` fails in onnxruntime and is refused by PyC with
    PYC-E041 (nothing written past a buffer)."""
    poison_outputs(monkeypatch)
    with pyc_cli.load(artifact) as model:
        for given in feeds:
            want = onnxruntime_outputs(path, given)
            got = model.run(given)
            shapes = {k: v.shape for k, v in given.items()}
            for name, value in want.items():
                assert got[name].shape == value.shape, (name, shapes)
                np.testing.assert_allclose(got[name], value, rtol=rtol, atol=atol,
                                           err_msg=f"{name} at {shapes}")
        for given in refused:
            with pytest.raises(ORT_ERRORS):
                onnxruntime_outputs(path, given)
            with pytest.raises(PycError) as error:
                model.run(given)
            assert error.value.code == "E041", {k: v.shape for k, v in given.items()}
