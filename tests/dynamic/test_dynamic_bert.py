"""Issue #15 on a transformers export: a tiny BERT (2 layers, hidden 32; torch's exporter with
dynamic batch and seq axes, transformers' own mask construction: Range, Unsqueeze, the mask
Gather by computed indices, `seq` read as data) built once with `input_ids=batch:1..8,seq:1..512`
runs at every (batch, seq) tried, the extremes and 1 included, against onnxruntime on fresh
random tokens, token types and padded masks; every output element must be written."""

from __future__ import annotations

from pathlib import Path

import pytest

import pyc_cli
from pyc_cli.ir.symbolic import parse_input_shapes
from tests.dynamic.checks import runs_match_onnxruntime

SHAPES = ["input_ids=batch:1..8,seq:1..512", "attention_mask=batch,seq", "token_type_ids=batch,seq"]
# the bounds of the MiniLM target: its FFN activations reach 1 MiB at the upper
# bounds, so the elementwise loops split into run-time task counts
RUNS = [(1, 1), (1, 9), (2, 13), (3, 77), (8, 512), (8, 1), (1, 512), (5, 200)]
RTOL, ATOL = 1e-4, 1e-5  # float32 layers in another summation order than onnxruntime's


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="the export needs torch")
    pytest.importorskip("transformers", reason="the export needs transformers")
    from tests.models.make_dynamic_bert import export_dynamic_bert

    return export_dynamic_bert(tmp_path_factory.mktemp("bert") / "bert.onnx")


@pytest.fixture(scope="module", params=["balanced", "memory_first"])
def built(request: pytest.FixtureRequest, exported: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Path:
    shapes, _ = parse_input_shapes(SHAPES)
    out = tmp_path_factory.mktemp("bert_art") / "art"
    return pyc_cli.build(exported, out, mode=request.param, input_shapes=shapes).artifact


def test_one_build_runs_every_shape_in_its_bounds(exported: Path, built: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.models.make_dynamic_bert import TINY, sample_inputs

    runs_match_onnxruntime(exported, built, lambda r, b, s: sample_inputs(r, TINY["vocab_size"], b, s),
                           RUNS, RTOL, ATOL, monkeypatch)


@pytest.mark.parametrize(("specs", "runs"), [
    # one dynamic axis, the other a number: the residual epilogue of the attention's output
    # projection is [1, seq, H] for an output [1, seq, H] (a static 1 before the dims)
    (["input_ids=1,seq:1..512", "attention_mask=1,seq", "token_type_ids=1,seq"],
     [(1, 1), (1, 100), (1, 512)]),
    (["input_ids=batch:1..8,128", "attention_mask=batch,128", "token_type_ids=batch,128"],
     [(1, 128), (8, 128), (3, 128)]),
], ids=["seq", "batch"])
def test_one_dynamic_axis(exported: Path, specs: list[str], runs: list[tuple[int, int]],
                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.models.make_dynamic_bert import TINY, sample_inputs

    shapes, _ = parse_input_shapes(specs)
    artifact = pyc_cli.build(exported, tmp_path / "art", input_shapes=shapes).artifact
    runs_match_onnxruntime(exported, artifact, lambda r, b, s: sample_inputs(r, TINY["vocab_size"], b, s),
                           runs, RTOL, ATOL, monkeypatch, outputs=("last_hidden_state",))
