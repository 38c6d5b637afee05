"""What the CLI reports about a model: run statistics (`pyc run`), the explain JSON schema and
text report (`pyc explain`), build progress and timings (`pyc build --quiet/--verbose`), and
`pyc check` on models with symbolic dims."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REFERENCE_MODELS

from pyc_cli.cli.main import main
from pyc_cli.runtime.timing import RunPlan, latency_stats, time_calls

MLP = REFERENCE_MODELS["mlp"]
STAT_ORDER = ("min", "p50", "p90", "p95", "p99", "max")


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def mlp_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reports") / "mlp.pyc"
    code, output = invoke("build", str(MLP.path), "-o", str(out), "--input-shape", "x=3,64")
    assert code == 0, output
    return out


def assert_consistent(stats: dict, runs: int) -> None:
    assert stats["runs"] == runs
    values = [stats[key] for key in STAT_ORDER]
    assert all(v is not None and v > 0 for v in values), stats
    assert values == sorted(values), stats
    assert stats["min"] <= stats["mean"] <= stats["max"]
    assert stats["throughput_per_s"] == pytest.approx(1e3 / stats["mean"], rel=1e-9)


# --- run statistics ------------------------------------------------------------------------

def test_statistics_of_one_sample_are_that_sample() -> None:
    stats = latency_stats([2.5])
    assert {stats[key] for key in (*STAT_ORDER, "mean")} == {2.5}
    assert stats["runs"] == 1 and stats["throughput_per_s"] == pytest.approx(400.0)


def test_percentiles_are_numpy_linear() -> None:
    samples = [float(v) for v in range(1, 101)]  # 1..100 ms
    stats = latency_stats(samples[::-1])
    assert stats["p50"] == pytest.approx(50.5) and stats["p90"] == pytest.approx(90.1)
    assert stats["p99"] == pytest.approx(99.01) and stats["min"] == 1 and stats["max"] == 100
    assert stats["mean"] == pytest.approx(50.5) and stats["percentile_method"] == "linear"


def test_run_plan_counts_warmup_repeat_and_duration() -> None:
    calls: list[int] = []
    assert len(time_calls(lambda: calls.append(1), RunPlan(warmup=2, repeat=5))) == 5
    assert len(calls) == 7
    calls.clear()
    assert len(time_calls(lambda: calls.append(1), RunPlan(warmup=0))) == 1 and len(calls) == 1
    # a duration shorter than any run still times one run; repeat ends first when smaller
    assert len(time_calls(lambda: None, RunPlan(warmup=0, duration_s=1e-9))) == 1
    assert len(time_calls(lambda: None, RunPlan(warmup=0, repeat=3, duration_s=60))) == 3
    with pytest.raises(ValueError):
        RunPlan(warmup=-1)


def test_run_json_reports_every_statistic(mlp_artifact: Path) -> None:
    for args, runs in ((["--repeat", "1"], 1), (["--repeat", "25", "--warmup", "0"], 25),
                       ([], 1)):
        code, output = invoke("run", str(mlp_artifact), "--random-inputs", "1", "--json", *args)
        assert code == 0, output
        summary = json.loads(output)
        assert_consistent(summary["latency_ms"], runs)
    assert summary["warmup_runs"] == 3


def test_run_duration_times_until_the_time_is_spent(mlp_artifact: Path) -> None:
    code, output = invoke("run", str(mlp_artifact), "--random-inputs", "1", "--json",
                          "--duration", "0.2", "--warmup", "1")
    assert code == 0, output
    stats = json.loads(output)["latency_ms"]
    assert stats["runs"] >= 1 and stats["mean"] * stats["runs"] <= 0.2e3 + stats["max"]
    assert_consistent(stats, stats["runs"])
    code, output = invoke("run", str(mlp_artifact), "--random-inputs", "1", "--json",
                          "--duration", "60", "--repeat", "4")
    assert code == 0 and json.loads(output)["latency_ms"]["runs"] == 4


def test_run_text_reports_statistics_and_throughput(mlp_artifact: Path) -> None:
    code, output = invoke("run", str(mlp_artifact), "--random-inputs", "1", "--repeat", "5")
    assert code == 0, output
    line = next(line for line in output.splitlines() if line.startswith("latency"))
    assert "5 run(s) after 3 warm-up" in line and "inferences/s" in line
    figures = [float(line.split(f" {key} ")[1].split(",")[0].split(" ")[0]) for key in STAT_ORDER]
    assert figures == sorted(figures)


@pytest.mark.parametrize("args", [["--warmup", "-1"], ["--duration", "0"], ["--repeat", "0"]])
def test_run_rejects_bad_counts(mlp_artifact: Path, args: list[str]) -> None:
    code, output = invoke("run", str(mlp_artifact), "--random-inputs", "1", *args)
    assert code == 2 and "PYC-E" in output and "Traceback" not in output


def test_outputs_do_not_depend_on_timing(mlp_artifact: Path, tmp_path: Path) -> None:
    outs = []
    for index, args in enumerate((["--repeat", "1", "--warmup", "0"], ["--repeat", "7"])):
        path = tmp_path / f"o{index}.npz"
        assert invoke("run", str(mlp_artifact), "--random-inputs", "4", "--output", str(path),
                      *args)[0] == 0
        with np.load(path) as data:
            outs.append(data["logits"])
    np.testing.assert_array_equal(outs[0], outs[1])
