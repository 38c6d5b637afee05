"""benchmarks/bench_whatif.py's matrix and figures (issue #16 point 1): the real benchmark models
are in the matrix, reported apart, skipped with a reason where their files are absent, and the
agreement figures follow the tie rule on hand-made pairs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_whatif  # noqa: E402
import real_models  # noqa: E402


def test_the_real_models_are_in_the_matrix() -> None:
    assert set(bench_whatif.REAL) >= {"resnet50_b1", "minilm_b1_s128", "ppocr_det", "ppocr_rec",
                                      "mlp512_b1"}
    cases = {c.name: c for c in bench_whatif.CASES}
    for name in bench_whatif.REAL:
        texts = [b for _, b in bench_whatif.pairs_for(cases[name])]
        assert {"mode=memory_first", "threads=2", "kernel=@slowest"} <= set(texts)
    assert "winograd=off" in [b for _, b in bench_whatif.pairs_for(cases["resnet50_b1"])]


def test_an_absent_real_model_is_skipped_with_its_reason(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(real_models, "RAPID", tmp_path / "absent")
    cases = {c.name: c for c in bench_whatif.CASES}
    assert "absent" in str(bench_whatif._missing(cases["ppocr_det"]))
    assert bench_whatif._missing(cases["cnn"]) is None


def _row(pa: float, pb: float, ma: float, mb: float, noise: float = 0.0) -> dict[str, Any]:
    return {"model": "m", "a": "A", "b": "mode=memory_first", "predicted_a_ms": pa,
            "predicted_b_ms": pb, "measured_a_ms": ma, "measured_b_ms": mb, "model_b_ms": pb,
            "noise_a": noise, "noise_b": noise, "predicted_a_arena": 1, "predicted_b_arena": 2,
            "built_a_arena": 1, "built_b_arena": 2}


def test_the_figures_follow_the_tie_rule() -> None:
    rows = [_row(1.0, 2.0, 1.0, 1.9),     # B slower, both say so: agrees, B within 20%
            _row(1.0, 1.01, 1.0, 1.02),   # a predicted tie, a measured tie (gap < 3%): agrees
            _row(1.0, 1.2, 1.0, 1.1, noise=0.1),  # a measured gap inside the spread: a tie
            _row(1.0, 0.5, 1.0, 1.5)]     # B predicted faster, measured slower: -67%
    summary = bench_whatif.summarize(rows)
    assert summary["pairs"] == 4
    assert summary["winner_agreement"] == pytest.approx(2 / 4)
    assert summary["winner_agreement_strict"] == pytest.approx(3 / 4)
    assert summary["b_within_20pct"] == pytest.approx(3 / 4)
    assert summary["arena_exact"] == 1.0


def test_the_paired_ratio_cancels_a_drifting_load() -> None:
    """A and B 10% apart in every round while the load doubles the times halfway: the pooled
    p50s mix the halves, the paired ratio is 1.1 exactly."""
    a_rounds = [1.0] * 5 + [2.0] * 5
    b_rounds = [1.1 * t for t in a_rounds]
    assert bench_whatif.paired_ratio(a_rounds, b_rounds) == pytest.approx(1.1)
    row = _row(1.0, 1.1, 1.5, 1.65)
    row["paired_ratio"] = 1.1
    summary = bench_whatif.summarize([row])
    assert summary["paired_winner_agreement"] == 1.0
    assert summary["paired_ratio_median_abs_error"] == pytest.approx(0.0, abs=1e-12)
