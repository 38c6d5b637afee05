"""benchmarks/regression_gate.py: the baseline's band is measured from the runs, and a check
fails only when a ratio is over baseline x (1 + band + machine allowance) on the run and on its
re-measurement.
The runs are faked here (the real ones are `make bench-check`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import regression_gate  # noqa: E402


def fake_runs(monkeypatch: pytest.MonkeyPatch, ratios: list[dict[str, float]]) -> list[list[str]]:
    """Each call of the gate's run returns the next ratios; the models each call asked for."""
    asked: list[list[str]] = []
    queue = list(ratios)

    def run(models: list[str], config: dict[str, Any]) -> dict[str, dict[str, Any]]:
        asked.append(list(models))
        ratio = queue.pop(0)
        return {m: {"model": m, "matches_ort": True, "max_abs_diff": 0.0,
                    "pyc_over_ort_p50": ratio[m]} for m in models}

    monkeypatch.setattr(regression_gate, "_run", run)
    monkeypatch.setattr(regression_gate, "_available", lambda models, unavailable: list(models))
    return asked


def test_baseline_band_is_measured_and_a_regression_fails(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "cpu.json"
    fake_runs(monkeypatch, [{"a": r, "b": 1.0} for r in (2.0, 2.1, 1.9, 2.0, 2.2)])
    assert regression_gate.write_baseline(path, ["a", "b"], 5, 1, 1, runs=5) == 0
    baseline = json.loads(path.read_text())
    assert baseline["models"]["a"]["ratio"] == 2.0
    assert baseline["models"]["a"]["band"] == pytest.approx(1.5 * 0.1)  # 2.2 is 10% off
    assert baseline["models"]["b"]["band"] == 0.0
    assert baseline["config"] == {"models": ["a", "b"], "repeat": 5, "rounds": 1, "threads": 1}
    # limit for a: 2.0 x (1 + 0.15 + 0.25) = 2.8
    assert regression_gate.MACHINE_ALLOWANCE == 0.25
    # within the band: passes
    fake_runs(monkeypatch, [{"a": 2.79, "b": 1.0}])
    assert regression_gate.check(path) == 0
    # over it once, within it on re-measurement: passes, and only that model was re-run
    asked = fake_runs(monkeypatch, [{"a": 2.9, "b": 1.0}, {"a": 2.2}])
    assert regression_gate.check(path) == 0 and asked == [["a", "b"], ["a"]]
    # over it twice: fails
    fake_runs(monkeypatch, [{"a": 2.9, "b": 1.0}, {"a": 2.85}])
    assert regression_gate.check(path) == 1


def test_wrong_outputs_are_an_error_not_a_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="differ from onnxruntime"):
        regression_gate._ratio({"model": "a", "matches_ort": False, "max_abs_diff": 1.0})


def test_a_baseline_of_another_cpu_reports_without_failing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Ratios measured on an AVX-512 CPU do not gate an AVX2 one (the engines' kernels differ
    there), nor another CPU model: the check prints them and passes; on the same CPU it fails
    as before."""
    path = tmp_path / "cpu.json"
    monkeypatch.setattr(regression_gate, "cpu_model", lambda: "Some CPU")
    fake_runs(monkeypatch, [{"a": 2.0} for _ in range(5)])
    monkeypatch.setattr(regression_gate, "vector_isa", lambda: "avx512")
    assert regression_gate.write_baseline(path, ["a"], 5, 1, 1, runs=5) == 0
    assert json.loads(path.read_text())["machine"]["vector_isa"] == "avx512"
    monkeypatch.setattr(regression_gate, "vector_isa", lambda: "avx2")
    fake_runs(monkeypatch, [{"a": 9.0}, {"a": 9.0}])
    assert regression_gate.check(path) == 0
    assert "reported, not gated" in capsys.readouterr().out
    monkeypatch.setattr(regression_gate, "vector_isa", lambda: "avx512")
    monkeypatch.setattr(regression_gate, "cpu_model", lambda: "Another CPU")
    fake_runs(monkeypatch, [{"a": 9.0}, {"a": 9.0}])
    assert regression_gate.check(path) == 0
    monkeypatch.setattr(regression_gate, "cpu_model", lambda: "Some CPU")
    fake_runs(monkeypatch, [{"a": 9.0}, {"a": 9.0}])
    assert regression_gate.check(path) == 1
