"""Issue #15 on an export with dynamic axes: the toy encoder (tests/models/transformer.onnx,
batch and seq dynamic; its Reshape targets and position-table Slice come from Shape
subgraphs) built once with `input_ids=batch:1..4,seq:1..64` runs at every (batch, seq) tried,
the extremes and 1 included, against onnxruntime on fresh random tokens and masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS_DIR

import pyc_cli
from pyc_cli.errors import PycError
from pyc_cli.ir.symbolic import parse_input_shapes
from tests.dynamic.checks import runs_match_onnxruntime

MODEL = MODELS_DIR / "transformer.onnx"
SHAPES = ["input_ids=batch:1..4,seq:1..64", "attention_mask=batch,seq"]
RUNS = [(1, 1), (1, 7), (2, 13), (3, 64), (4, 64), (4, 1)]
RTOL, ATOL = 1e-4, 1e-5  # float32 layers in another summation order than onnxruntime's


@pytest.fixture(scope="module", params=["balanced", "memory_first"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    shapes, _ = parse_input_shapes(SHAPES)
    out = tmp_path_factory.mktemp("encoder") / "art"
    return pyc_cli.build(MODEL, out, mode=request.param, input_shapes=shapes).artifact


def _feeds(rng: np.random.Generator, batch: int, seq: int) -> dict[str, np.ndarray]:
    mask = (rng.random((batch, seq)) > 0.25).astype(np.int64)
    mask[:, 0] = 1  # every row attends somewhere
    return {"input_ids": rng.integers(0, 100, (batch, seq)).astype(np.int64), "attention_mask": mask}


def test_one_build_runs_every_shape_in_its_bounds(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs_match_onnxruntime(MODEL, built, _feeds, RUNS, RTOL, ATOL, monkeypatch)


def test_a_sequence_past_its_bound_is_refused(built: Path) -> None:
    with pyc_cli.load(built) as model, pytest.raises(PycError) as info:
        model.run(_feeds(np.random.default_rng(), 1, 65))
    assert info.value.code == "E041" and "seq" in info.value.what and "1..64" in info.value.what
