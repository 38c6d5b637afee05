"""The OpenMP wait policy a loaded artifact gets: libgomp reads GOMP_SPINCOUNT once, when it is
loaded, so loading an artifact sets it (10000 spins instead of libgomp's ~300k, which burn a
shared core's time slice waiting for a descheduled team thread) where the process set neither
GOMP_SPINCOUNT nor OMP_WAIT_POLICY and has not loaded libgomp yet; a user's setting wins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import init, make_model, vinfo
from onnx import helper

from pyc_cli.runtime.native import OMP_SPIN_COUNT, default_omp_spin


def _maps(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "maps"
    path.write_text(text)
    return path


def test_unset_variables_get_the_spin_count(tmp_path: Path) -> None:
    env: dict[str, str] = {"PATH": "/bin"}
    assert default_omp_spin(env, _maps(tmp_path, "7f00 r-xp /usr/lib/libc.so.6\n"))
    assert env == {"PATH": "/bin", "GOMP_SPINCOUNT": OMP_SPIN_COUNT}


@pytest.mark.parametrize("preset", [{"GOMP_SPINCOUNT": "300000"}, {"OMP_WAIT_POLICY": "passive"},
                                    {"OMP_WAIT_POLICY": "active"}])
def test_a_users_setting_wins(preset: dict[str, str], tmp_path: Path) -> None:
    env = dict(preset)
    assert not default_omp_spin(env, _maps(tmp_path, ""))
    assert env == preset


def test_nothing_is_set_once_libgomp_is_loaded(tmp_path: Path) -> None:
    """libgomp already mapped has read its variables: setting one now would only mislead."""
    env: dict[str, str] = {}
    assert not default_omp_spin(env, _maps(tmp_path, "7f00 r-xp /usr/lib/libgomp.so.1.0.0\n"))
    assert env == {}


@pytest.mark.parametrize("preset,expected", [({}, OMP_SPIN_COUNT),
                                             ({"OMP_WAIT_POLICY": "passive"}, "None")])
def test_loading_an_artifact_sets_it_first(preset: dict[str, str], expected: str,
                                           tmp_path: Path, rng: np.random.Generator) -> None:
    """A fresh process that loads an artifact (before anything maps libgomp) has the spin count
    set, unless it chose a wait policy; the model runs as before (against onnxruntime)."""
    w = rng.standard_normal((37, 53)).astype(np.float32)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [vinfo("x", (5, 37))],
                       [vinfo("y", (5, 53))], [init("w", w)])
    onnx.save(model, tmp_path / "m.onnx")
    script = f"""
import os
import numpy as np
import onnxruntime as ort
import pyc_cli
art = pyc_cli.build({str(tmp_path / 'm.onnx')!r}, {str(tmp_path / 'a')!r}).artifact
x = np.random.default_rng(0).standard_normal((5, 37)).astype(np.float32)
with pyc_cli.load(art) as m:
    got = m.run({{"x": x}})["y"]
want = ort.InferenceSession({str(tmp_path / 'm.onnx')!r}).run(None, {{"x": x}})[0]
np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
print(os.environ.get("GOMP_SPINCOUNT"))
"""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", script], env={**env, **preset}, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == expected
