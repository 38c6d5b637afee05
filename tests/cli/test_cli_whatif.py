"""`pyc explain ARTIFACT --what-if` and `pyc plan MODEL --compare-modes` (issue #16, point 1): the
predicted arena is the one a build with those flags writes, the flags' mistakes are PYC-coded,
and the ranking is ordered by predicted latency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REFERENCE_MODELS, invoke

CNN = REFERENCE_MODELS["cnn"]
SHAPE = "image=1,3,32,32"


@pytest.fixture(autouse=True)
def _fresh_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYC_WHATIF_CALIBRATION", str(tmp_path / "whatif.json"))
    monkeypatch.setenv("PYC_TUNING_DB", str(tmp_path / "tuning.json"))
    monkeypatch.delenv("PYC_NUM_THREADS", raising=False)


@pytest.fixture(scope="module")
def cnn_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whatif") / "cnn.pyc"
    code, output = invoke("build", str(CNN.path), "-o", str(out), "--input-shape", SHAPE,
                          "--threads", "1", "--no-cache")
    assert code == 0, output
    return out


def _what_if(artifact: Path, *args: str) -> dict:
    code, output = invoke("explain", str(artifact), *args, "--model", str(CNN.path), "--json")
    assert code == 0, output
    return json.loads(output)


def test_the_predicted_arena_is_the_one_the_build_writes(cnn_artifact: Path,
                                                         tmp_path: Path) -> None:
    data = _what_if(cnn_artifact, "--what-if", "mode=memory_first", "--what-if",
                    "winograd=off,threads=2")
    assert data["schema"] == "pyc.whatif/1"
    manifest = json.loads((cnn_artifact / "manifest.json").read_text())
    assert data["current"]["arena_bytes"] == manifest["arena_bytes"]  # the rerun is the build
    memory_first, no_winograd = data["alternatives"]
    built = tmp_path / "mf.pyc"
    code, output = invoke("build", str(CNN.path), "-o", str(built), "--input-shape", SHAPE,
                          "--mode", "memory_first", "--no-cache")
    assert code == 0, output
    assert memory_first["arena_bytes"] == json.loads(
        (built / "manifest.json").read_text())["arena_bytes"]
    assert memory_first["arena_bytes"] < data["current"]["arena_bytes"]
    assert memory_first["mode"] == "memory_first"
    assert no_winograd["threads"] >= 1
    assert any("conv2d_winograd ->" in line for line in no_winograd["kernels_changed"])
    # no timings of the artifact: every latency rests on the cost model
    assert data["timings"] is None
    assert set(memory_first["bases"]) == {"cost model"}


def test_timings_from_a_profile_file_ground_the_prediction(cnn_artifact: Path,
                                                           tmp_path: Path) -> None:
    code, output = invoke("run", str(cnn_artifact), "--random-inputs", "0", "--profile",
                          "--repeat", "5", "--json")
    assert code == 0, output
    profile = tmp_path / "profile.json"
    profile.write_text(output)
    data = _what_if(cnn_artifact, "--what-if", "kernel=block1_conv:conv2d_direct",
                    "--timings", str(profile))
    measured = json.loads(output)
    assert data["timings"]["calls"] == len(measured["profile"]["calls"])
    current = data["current"]
    assert current["measured_latency_ms"] == pytest.approx(measured["latency_ms"]["p50"])
    # the artifact itself, predicted from its own profile: the run's p50
    assert current["latency_ms"] == pytest.approx(measured["latency_ms"]["p50"], rel=1e-6)
    override = data["alternatives"][0]
    assert override["kernels_changed"] == ["block1_conv: conv2d_implicit_gemm -> conv2d_direct"]
    bases = {n["node"]: n["basis"] for n in override["nodes"]}
    # the node was timed on its own kernel: that time x the cost model's ratio of the two
    assert bases["block1_conv"] == "profile x cost ratio: block1_conv ran conv2d_implicit_gemm"
    assert bases["block2_conv"] == "profile"


def test_measure_times_the_artifact_and_each_alternative_team_size(cnn_artifact: Path) -> None:
    from pyc_cli.passes.latency_model import effective_threads

    data = _what_if(cnn_artifact, "--what-if", "threads=2", "--measure")
    assert data["timings"]["source"] == "measured now (--measure)"
    assert data["current"]["measured_latency_ms"] > 0
    assert {n["basis"] for n in data["current"]["nodes"]} == {"profile"}
    two = data["alternatives"][0]
    if effective_threads(2) == 2:  # a team of two is a run-time setting: timed, not modelled
        assert two["timings"].startswith("measured now at 2 thread(s)")
        assert {n["basis"] for n in two["nodes"]} == {"profile"}
    # the timings are kept: a later what-if on the artifact uses them without --measure
    again = _what_if(cnn_artifact, "--what-if", "mode=memory_first")
    assert again["timings"]["source"] == "measured now (--measure)"


def test_a_bad_what_if_key_is_e066_naming_the_known_keys(cnn_artifact: Path) -> None:
    code, output = invoke("explain", str(cnn_artifact), "--what-if", "colour=red")
    assert code == 2
    assert output.startswith("PYC-E066: --what-if 'colour=red': 'colour=red' is not KEY=VALUE")
    assert "keys: mode, threads, memory-budget, target, winograd, layout, kernel" in output


def test_a_kernel_override_that_cannot_apply_is_e066_listing_candidates(cnn_artifact: Path
                                                                        ) -> None:
    code, output = invoke("explain", str(cnn_artifact), "--what-if",
                          "kernel=block1_conv:matmul_naive", "--model", str(CNN.path))
    assert code == 2
    assert "PYC-E066" in output and "'matmul_naive' is not a candidate" in output
    assert "conv2d_implicit_gemm" in output
    code, output = invoke("explain", str(cnn_artifact), "--what-if", "kernel=nowhere:x",
                          "--model", str(CNN.path))
    assert code == 2 and "no compiled node of that name" in output and "block1_conv" in output


def test_what_if_flags_without_what_if_are_e050(cnn_artifact: Path) -> None:
    code, output = invoke("explain", str(cnn_artifact), "--measure")
    assert code == 2 and "PYC-E050: --measure only apply with --what-if" in output


def test_a_budget_no_mode_fits_is_reported_not_raised(cnn_artifact: Path) -> None:
    data = _what_if(cnn_artifact, "--what-if", "memory-budget=1KiB")
    assert "PYC-E011" in data["alternatives"][0]["error"]


def test_plan_compare_modes_ranks_by_predicted_latency() -> None:
    code, output = invoke("plan", str(CNN.path), "--input-shape", SHAPE, "--compare-modes",
                          "--what-if", "winograd=off", "--json")
    assert code == 0, output
    data = json.loads(output)
    ranked = data["ranked"]
    assert [row["rank"] for row in ranked] == [1, 2, 3, 4]
    assert sorted(row["label"] for row in ranked) == [
        "mode=balanced", "mode=latency_first", "mode=memory_first", "winograd=off"]
    latencies = [row["latency_ms"] for row in ranked]
    assert latencies == sorted(latencies)
    assert data["smallest_arena_bytes"] == min(row["arena_bytes"] for row in ranked)
    code, text = invoke("plan", str(CNN.path), "--input-shape", SHAPE, "--compare-modes")
    assert code == 0 and "fastest predicted first" in text and "memory_first" in text


def test_plan_needs_something_to_compare() -> None:
    code, output = invoke("plan", str(CNN.path), "--input-shape", SHAPE)
    assert code == 2 and "PYC-E050: pyc plan needs --compare-modes" in output
