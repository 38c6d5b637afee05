"""Issue #16 point 5, the online feedback planner: with PYC_TELEMETRY=PATH the runtime records each
run's shapes, plan and latency (and, sampled, a static plan's kernel timings) into a versioned
JSON file merged across models and processes; `pyc build --feedback PATH` replans from it: shape
buckets from the observed shapes (the bucket clustering), kernels timed faster, the thread count
measured fastest, each decision serving `feedback:...` and shown by `pyc explain`. Rebuilt plans
match onnxruntime; the same telemetry gives a byte-identical artifact; telemetry that is
malformed, of another model or other dims is PYC-E068."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke, onnxruntime_outputs

import pyc_cli
from pyc_cli import telemetry as tm
from pyc_cli.artifact.manifest import hash_tree
from pyc_cli.errors import PycError, PycWarning
from pyc_cli.feedback import Feedback, FeedbackTuning, thread_choice
from pyc_cli.ir.annotations import KernelChoice
from pyc_cli.ir.symbolic import parse_input_shapes
from pyc_cli.passes.tuning import InMemoryTuningDatabase, KernelSignature, signature_key
from tests.dynamic.checks import poison_outputs
from tests.dynamic.models import mlp, small_cnn

REPO = Path(__file__).resolve().parents[2]
SHAPE = "x=batch:1..64,32"
# the initial sample: small batches only -> one box batch 1..4
SAMPLE = [{"shapes": {"x": [4, 32]}, "count": 50}, {"shapes": {"x": [2, 32]}, "count": 50}]
# what the deployment then sent (the drift): batch 40 most often, a few small ones
OBSERVED = [(40, 30), (4, 10), (2, 5)]
RTOL, ATOL = 1e-5, 1e-5  # float32 GEMMs of K <= 64 in another summation order than ORT's


def _build(model: Path, out: Path, **options: object) -> Path:
    shapes, _ = parse_input_shapes([SHAPE])
    return pyc_cli.build(model, out, input_shapes=shapes, cache=False,  # type: ignore[arg-type]
                         **options).artifact


def _record(art: Path, path: Path, batches: list[tuple[int, int]],
            monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """Runs of each (batch, count) on `art` with PYC_TELEMETRY=path (fresh random inputs)."""
    monkeypatch.setenv("PYC_TELEMETRY", str(path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rng = np.random.default_rng()
    with pyc_cli.load(art) as model:
        for batch, count in batches:
            for _ in range(count):
                model.run({"x": rng.standard_normal((batch, 32)).astype(np.float32)})
    monkeypatch.delenv("PYC_TELEMETRY")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(model, original artifact, telemetry of OBSERVED on it)."""
    root = tmp_path_factory.mktemp("feedback")
    model = mlp(root, sizes=(32, 64, 16))
    (root / "sample.json").write_text(json.dumps(SAMPLE))
    art = _build(model, root / "art", shape_sample=root / "sample.json")
    path = root / "telemetry.json"
    with pytest.MonkeyPatch.context() as patch:
        _record(art, path, OBSERVED, patch)
    return model, art, path


def test_telemetry_records_shapes_plans_and_latency(recorded: tuple[Path, Path, Path]) -> None:
    model, art, path = recorded
    data = json.loads(path.read_text())
    manifest = json.loads((art / "manifest.json").read_text())
    assert data["format"] == "pyc-telemetry" and data["version"] == 1
    assert data["model"] == {"sha256": manifest["model"]["sha256"], "dims": ["batch"],
                             "inputs": ["x"]}
    assert data["runs"] == 45
    # the histogram, with the plan that served each shape (the old box is batch 1..4)
    assert [(e["shapes"], e["count"], e["plans"]) for e in data["shapes"]] == [
        ({"x": [2, 32]}, 5, {"b0": 5}), ({"x": [4, 32]}, 10, {"b0": 10}),
        ({"x": [40, 32]}, 30, {"generic": 30})]
    latency = {(e["plan"], e["dims"]["batch"]): e for e in data["latency"]}
    assert sorted(latency) == [("b0", 2), ("b0", 4), ("generic", 40)]
    for entry in latency.values():
        assert sum(entry["hist"].values()) == entry["runs"]
        assert 0 < entry["min_ms"] <= entry["sum_ms"] / entry["runs"] <= entry["max_ms"]
        p50 = tm.time_hist_percentile(entry["hist"], 50)
        assert entry["min_ms"] / 1.1 <= p50 <= entry["max_ms"] * 1.1
    assert data["kernels"] == []  # no plan reached PYC_TELEMETRY_KERNEL_EVERY's 50 runs
    assert tm.read(path).to_json() == data  # reads back as written


def test_telemetry_merges_across_models_and_processes(recorded: tuple[Path, Path, Path],
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _, art, _ = recorded
    path = tmp_path / "t.json"
    _record(art, path, [(8, 3)], monkeypatch, PYC_TELEMETRY_FLUSH_EVERY="1")
    _record(art, path, [(8, 2), (3, 1)], monkeypatch)
    # two processes at once, each 20 runs flushed every 2: the file's lock keeps every run
    script = ("import numpy as np, pyc_cli, sys\n"
              "m = pyc_cli.load(sys.argv[1])\n"
              "for _ in range(20): m.run({'x': np.ones((5, 32), np.float32)})\n"
              "m.close()\n")
    env = {**os.environ, "PYC_TELEMETRY": str(path), "PYC_TELEMETRY_FLUSH_EVERY": "2",
           "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(art)], env=env) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    data = json.loads(path.read_text())
    assert data["runs"] == 3 + 3 + 40
    assert {tuple(e["shapes"]["x"]): e["count"] for e in data["shapes"]} == \
        {(8, 32): 5, (3, 32): 1, (5, 32): 40}
    assert not list(tmp_path.glob(".t.json.*.tmp"))  # every write replaced the file atomically


def test_feedback_rebuild_moves_the_buckets_to_the_observed_mix(
        recorded: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, art, path = recorded
    old = [b["dims"] for b in json.loads((art / "manifest.json").read_text())["buckets"]]
    assert old == [{"batch": [1, 4]}]
    new_art = _build(model, tmp_path / "fb", feedback=path)
    manifest = json.loads((new_art / "manifest.json").read_text())
    # batch 40 (2/3 of the runs) now has a box; the small ones keep theirs
    assert [(b["id"], b["dims"], b["count"]) for b in manifest["buckets"]] == [
        ("b0", {"batch": [1, 40]}, 30), ("b1", {"batch": [1, 4]}, 15)]
    assert manifest["flags"]["feedback"]["runs"] == 45
    decisions = [json.loads(line) for line in (new_art / "decisions.jsonl").read_text().splitlines()]
    fed = {d["action"]: d for d in decisions if d["serves"].startswith("feedback:")}
    assert fed["feedback"]["serves"] == "feedback:telemetry"
    assert fed["feedback_shape_buckets"]["serves"] == "feedback:shape_histogram"
    assert "x[40, 32] x30" in fed["feedback_shape_buckets"]["reason"]
    assert "generic 30" in fed["feedback_shape_buckets"]["reason"]  # how the old one served it
    assert [d["serves"] for d in decisions if d["action"] == "shape_bucket"] == \
        ["feedback:shape_histogram"] * 2
    # every plan of the rebuilt artifact matches onnxruntime (outputs poisoned first)
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(new_art) as rebuilt:
        for batch, plan in ((40, "b0"), (39, "b0"), (4, "b1"), (1, "b1"), (41, "generic"),
                            (64, "generic")):
            x = rng.standard_normal((batch, 32)).astype(np.float32)
            y = rebuilt.run({"x": x})["y"]
            assert rebuilt.stats.last_plan == plan, batch
            np.testing.assert_allclose(y, onnxruntime_outputs(model, {"x": x})["y"],
                                       rtol=RTOL, atol=ATOL, err_msg=f"batch {batch}")
    code, output = invoke("explain", str(new_art))
    assert code == 0 and "Feedback" in output and "feedback:shape_histogram" in output
    code, output = invoke("explain", str(new_art), "--json")
    entries = json.loads(output)["feedback"]
    assert {e["serves"] for e in entries} == {"feedback:telemetry", "feedback:shape_histogram"}


def test_the_same_telemetry_gives_a_byte_identical_artifact(recorded: tuple[Path, Path, Path],
                                                            tmp_path: Path) -> None:
    model, _, path = recorded
    first = _build(model, tmp_path / "one", feedback=path)
    second = _build(model, tmp_path / "two", feedback=path)
    assert hash_tree(first) == hash_tree(second)
    assert (first / "manifest.json").read_bytes() == (second / "manifest.json").read_bytes()


def test_the_build_cache_keys_on_the_telemetry(recorded: tuple[Path, Path, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The same telemetry: the cached artifact; other telemetry (one more run): a new build."""
    model, art, path = recorded
    monkeypatch.setenv("PYC_BUILD_CACHE", str(tmp_path / "cache"))
    shapes, _ = parse_input_shapes([SHAPE])
    first = pyc_cli.build(model, tmp_path / "one", input_shapes=shapes, feedback=path, cache=True)
    second = pyc_cli.build(model, tmp_path / "two", input_shapes=shapes, feedback=path, cache=True)
    assert not first.cached and second.cached
    assert hash_tree(first.artifact) == hash_tree(second.artifact)
    more = tmp_path / "more.json"
    more.write_bytes(path.read_bytes())
    _record(art, more, [(40, 1)], monkeypatch)
    third = pyc_cli.build(model, tmp_path / "three", input_shapes=shapes, feedback=more, cache=True)
    assert not third.cached


def test_the_cli_records_and_rebuilds(recorded: tuple[Path, Path, Path], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    model, art, _ = recorded
    path = tmp_path / "t.json"
    np.savez(tmp_path / "in.npz", x=np.random.default_rng().standard_normal((40, 32)).astype(np.float32))
    monkeypatch.setenv("PYC_TELEMETRY", str(path))
    code, output = invoke("run", str(art), "--inputs", str(tmp_path / "in.npz"), "--repeat", "4")
    monkeypatch.delenv("PYC_TELEMETRY")
    assert code == 0, output
    data = json.loads(path.read_text())
    assert data["runs"] >= 5 and data["shapes"][0]["shapes"] == {"x": [40, 32]}
    code, output = invoke("build", str(model), "-o", str(tmp_path / "fb"), "--no-cache",
                          "--input-shape", SHAPE, "--feedback", str(path))
    assert code == 0, output
    manifest = json.loads((tmp_path / "fb" / "manifest.json").read_text())
    assert [b["dims"] for b in manifest["buckets"]] == [{"batch": [40, 40]}]  # one exact shape


def _telemetry(sha: str, dims: list[str], **extra: object) -> dict[str, object]:
    return {"format": "pyc-telemetry", "version": 1,
            "model": {"sha256": sha, "dims": dims, "inputs": ["x"]}, "runs": 1,
            "shapes": [{"shapes": {"x": [3, 32]}, "count": 1, "plans": {"generic": 1}}],
            "latency": [], "kernels": [], **extra}


@pytest.mark.parametrize("content, message", [
    ("not json", "not JSON"),
    ({"format": "other"}, "not a pyc-telemetry file"),
    ("VERSION2", "format version 2"),
    ("OTHER_MODEL", "recorded for another model"),
    ("OTHER_DIMS", "recorded with the dims ['seq']"),
    ("BAD_SHAPES", "shapes entry 0"),
    ("BAD_LATENCY", "latency entry 0"),
    ("OUT_OF_BOUNDS", "outside the --input-shape bounds"),
])
def test_bad_telemetry_is_e068(recorded: tuple[Path, Path, Path], tmp_path: Path,
                               content: object, message: str) -> None:
    model, art, _ = recorded
    sha = json.loads((art / "manifest.json").read_text())["model"]["sha256"]
    good = _telemetry(sha, ["batch"])
    cases = {
        "VERSION2": {**good, "version": 2},
        "OTHER_MODEL": _telemetry("0" * 64, ["batch"]),
        "OTHER_DIMS": _telemetry(sha, ["seq"]),
        "BAD_SHAPES": {**good, "shapes": [{"shapes": {"x": [3, 32]}, "count": 2,
                                           "plans": {"generic": 1}}]},
        "BAD_LATENCY": {**good, "latency": [{"plan": "generic", "dims": {"batch": 3}}]},
        "OUT_OF_BOUNDS": {**good, "shapes": [{"shapes": {"x": [65, 32]}, "count": 1,
                                              "plans": {"generic": 1}}]},
    }
    path = tmp_path / "t.json"
    data = cases.get(content, content) if isinstance(content, str) else content
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(PycError) as info:
        _build(model, tmp_path / "art", feedback=path)
    assert info.value.code == "E068" and message in info.value.what, info.value.what
    assert not (tmp_path / "art").exists()
    with pytest.raises(PycError) as info:
        _build(model, tmp_path / "art", feedback=tmp_path / "missing.json")
    assert info.value.code == "E068"


def test_a_file_of_another_model_is_left_alone_and_warned(recorded: tuple[Path, Path, Path],
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _, art, _ = recorded
    path = tmp_path / "t.json"
    foreign = json.dumps(_telemetry("0" * 64, ["batch"]))
    path.write_text(foreign)
    with pytest.warns(PycWarning, match="PYC-E068.*another model"):
        _record(art, path, [(3, 2)], monkeypatch)  # runs still succeed
    assert path.read_text() == foreign


def test_thread_split_is_chosen_from_measured_runs() -> None:
    telemetry = tm.Telemetry({"sha256": "x", "dims": ["batch"], "inputs": ["x"]})
    for threads, ms in ((1, 4.0), (2, 3.0), (4, 3.5)):
        telemetry.add_run({"x": [8, 32]}, "generic", {"batch": 8}, threads, [ms] * 4)
    telemetry.add_run({"x": [2, 32]}, "b0", {"batch": 2}, 1, [1.0] * 3)  # one count: not compared
    chosen = thread_choice(Feedback(Path("t.json"), "0", telemetry))
    assert chosen is not None and chosen[0] == 2 and "2 threads 3.000 ms" in chosen[1]
    lone = tm.Telemetry(telemetry.model)
    lone.add_run({"x": [8, 32]}, "generic", {"batch": 8}, 1, [1.0] * 5)
    assert thread_choice(Feedback(Path("t.json"), "0", lone)) is None


def test_runs_at_two_thread_counts_set_the_rebuilds_threads(
        recorded: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same artifact run with PYC_NUM_THREADS=1 and =2: the rebuild's default thread count
    is the one whose runs were faster (whichever it was here), logged as feedback:thread_split;
    an explicit --threads is kept."""
    model, art, _ = recorded
    path = tmp_path / "t.json"
    for threads in ("1", "2"):
        _record(art, path, [(40, 5), (3, 5)], monkeypatch, PYC_NUM_THREADS=threads)
    monkeypatch.delenv("PYC_NUM_THREADS")
    data = tm.read(path)
    means = {}
    for entry in data.latency.values():
        means.setdefault(entry["threads"], []).append(entry["sum_ms"] / entry["runs"])
    assert sorted(means) == [1, 2]
    rebuilt = _build(model, tmp_path / "fb", feedback=path)
    manifest = json.loads((rebuilt / "manifest.json").read_text())
    decisions = [json.loads(line) for line in (rebuilt / "decisions.jsonl").read_text().splitlines()]
    chosen = next(d for d in decisions if d["action"] == "feedback_threads")
    assert chosen["serves"] == "feedback:thread_split"
    assert manifest["flags"]["threads"] == chosen["after"] in (1, 2)
    expected = thread_choice(Feedback(path, "0", data))
    assert expected is not None and expected[0] == chosen["after"]
    kept = _build(model, tmp_path / "kept", feedback=path, threads=3)
    assert json.loads((kept / "manifest.json").read_text())["flags"]["threads"] == 3


def test_timed_kernels_choose_where_two_were_measured() -> None:
    signature = KernelSignature("cpu", "MatMul", ("f32[8,32]", "f32[32,64]"), ("f32[8,64]",), ())
    key = signature_key(signature)
    tuning = FeedbackTuning(None, {key: {"matmul_a": 2.0, "matmul_b": 1.5}})
    assert tuning.lookup(signature) == KernelChoice("matmul_b")
    assert tuning.serves(signature) == "feedback:kernel_time"
    assert [m.candidate for m in tuning.measurements(signature)] == ["matmul_b", "matmul_a"]
    assert FeedbackTuning(None, {key: {"matmul_a": 2.0}}).lookup(signature) is None  # one: no choice
    base = InMemoryTuningDatabase({signature: KernelChoice("matmul_a")})  # --tune's wins
    both = FeedbackTuning(base, {key: {"matmul_a": 2.0, "matmul_b": 1.5}})
    assert both.lookup(signature) == KernelChoice("matmul_a")
    assert both.serves(signature) == "tuning:measured"


def test_a_static_plan_is_sampled_kernel_by_kernel(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    model = mlp(tmp_path, sizes=(32, 64, 16))
    art = pyc_cli.build(model, tmp_path / "art", input_shapes={"x": (8, 32)}, cache=False).artifact
    path = tmp_path / "t.json"
    monkeypatch.setenv("PYC_TELEMETRY", str(path))
    monkeypatch.setenv("PYC_TELEMETRY_KERNEL_EVERY", "3")
    rng = np.random.default_rng()
    with pyc_cli.load(art) as loaded:
        for _ in range(3):
            loaded.run({"x": rng.standard_normal((8, 32)).astype(np.float32)})
        loaded.telemetry._profiler.drain()  # the third run's sample, timed in the background
        for _ in range(3):
            loaded.run({"x": rng.standard_normal((8, 32)).astype(np.float32)})
    data = json.loads(path.read_text())
    assert data["runs"] == 6 and data["model"]["dims"] == []
    kernels = data["kernels"]
    assert [(k["node"], k["kernel"]) for k in kernels] == [
        ("matmul0", "matmul_packed_const"), ("matmul1", "matmul_packed_const")]
    assert all(k["samples"] >= 1 and k["min_ms"] > 0 and k["signature"].startswith('["MatMul"')
               for k in kernels)
    rebuilt = pyc_cli.build(model, tmp_path / "fb", input_shapes={"x": (8, 32)}, cache=False,
                            feedback=path).artifact
    decisions = (rebuilt / "decisions.jsonl").read_text()
    assert '"serves":"feedback:kernel_time"' in decisions
    assert "feedback_shape_buckets" not in decisions  # a static model has no buckets


def test_a_bucket_plan_is_timed_kernel_by_kernel_at_the_runs_shape(
        recorded: tuple[Path, Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A symbolic bucket's kernels are timed at the sampled run's own dims (batch 3 in the box
    1..4); the generic plan of an artifact with buckets is not sampled."""
    _, art, _ = recorded
    path = tmp_path / "t.json"
    monkeypatch.setenv("PYC_TELEMETRY", str(path))
    monkeypatch.setenv("PYC_TELEMETRY_KERNEL_EVERY", "2")
    rng = np.random.default_rng()
    with pyc_cli.load(art) as loaded:
        for batch in (3, 3, 40, 40):
            x = rng.standard_normal((batch, 32)).astype(np.float32)
            np.testing.assert_allclose(loaded.run({"x": x})["y"],
                                       loaded.run({"x": x})["y"])  # runs unchanged by sampling
        loaded.telemetry._profiler.drain()
    data = json.loads(path.read_text())
    kernels = data["kernels"]
    assert {(k["plan"], json.dumps(k["dims"])) for k in kernels} == {("b0", '{"batch": 3}')}
    assert [(k["node"], k["signature"]) for k in kernels] == [("matmul0", None), ("matmul1", None)]
    assert all(k["kernel"].endswith("rows") and k["samples"] >= 1 and k["min_ms"] > 0
               for k in kernels)


def test_kernel_timings_of_two_kernels_choose_the_faster(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A static CNN's telemetry with sampled kernel timings; a second entry for conv0's kernel
    work timed on conv2d_direct (as a plan or build that ran it so would have recorded it),
    faster than the measured one: the rebuild takes conv2d_direct there, serving
    feedback:kernel_time, and still matches onnxruntime."""
    model = small_cnn(tmp_path)
    shape = {"x": (2, 3, 16, 16)}
    art = pyc_cli.build(model, tmp_path / "art", input_shapes=shape, cache=False).artifact
    path = tmp_path / "t.json"
    monkeypatch.setenv("PYC_TELEMETRY", str(path))
    monkeypatch.setenv("PYC_TELEMETRY_KERNEL_EVERY", "1")
    rng = np.random.default_rng()
    with pyc_cli.load(art) as loaded:
        loaded.run({"x": rng.standard_normal(shape["x"]).astype(np.float32)})
        loaded.telemetry._profiler.drain()
    monkeypatch.delenv("PYC_TELEMETRY")
    data = json.loads(path.read_text())
    conv0 = next(k for k in data["kernels"] if k["node"] == "conv0")
    assert conv0["kernel"] != "conv2d_direct"
    data["kernels"].append({**conv0, "plan": "other", "kernel": "conv2d_direct",
                            "sum_ms": conv0["min_ms"] / 2, "min_ms": conv0["min_ms"] / 2,
                            "samples": 1})
    path.write_text(json.dumps(data))
    rebuilt = pyc_cli.build(model, tmp_path / "fb", input_shapes=shape, cache=False,
                            feedback=path).artifact
    decisions = [json.loads(line) for line in (rebuilt / "decisions.jsonl").read_text().splitlines()]
    chosen = next(d for d in decisions if d["action"] == "select_kernel" and d["nodes"] == ["conv0"])
    assert chosen["after"] == "conv2d_direct" and chosen["serves"] == "feedback:kernel_time"
    assert "run telemetry" in chosen["reason"]
    assert [m["candidate"] for m in chosen["measured"]] == ["conv2d_direct", conv0["kernel"]]
    poison_outputs(monkeypatch)
    x = rng.standard_normal(shape["x"]).astype(np.float32)
    with pyc_cli.load(rebuilt) as loaded:
        got = loaded.run({"x": x})
    want = onnxruntime_outputs(model, {"x": x})
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5)
