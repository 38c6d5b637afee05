"""Issue #15 point 3, shape buckets: `--shape-buckets auto --shape-sample FILE` builds a static
plan for each of the sample's most frequent exact input shapes beside the generic symbolic one;
a run of exactly a bucket's shapes runs its plan, any other the generic plan; each plan's result
equals onnxruntime's on fresh random inputs; the artifact is byte-identical across builds;
`pyc explain` and `pyc run --json` show the buckets; malformed samples are PYC-E052; a compile
budget drops buckets."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS_DIR, invoke, onnxruntime_outputs

import pyc_cli
from pyc_cli.api import BuildResult
from pyc_cli.artifact.manifest import hash_tree
from pyc_cli.buckets import choose_buckets, read_sample
from pyc_cli.errors import PycError, PycWarning
from pyc_cli.ir.symbolic import parse_input_shapes
from tests.dynamic.models import mlp

SHAPE = "x=batch:1..64,32"
# x[8, 32] and x[1, 32] are frequent (buckets), x[3, 32] is 2.4% of the sample (no bucket)
SAMPLE = [{"shapes": {"x": [8, 32]}, "count": 50}, {"shapes": {"x": [1, 32]}, "count": 30},
          {"shapes": {"x": [3, 32]}, "count": 2}]
RTOL, ATOL = 1e-5, 1e-5  # float32 GEMMs of K <= 64 in another summation order than ORT's


def _sample(path: Path, data: object = SAMPLE) -> Path:
    path.write_text(json.dumps(data))
    return path


def _build(model: Path, out: Path, sample: Path, **options: object) -> BuildResult:
    shapes, _ = parse_input_shapes([SHAPE])
    return pyc_cli.build(model, out, input_shapes=shapes, shape_buckets=options.pop("buckets", "auto"),
                         shape_sample=sample, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model, artifact): the MLP 32-64-16 with buckets from SAMPLE."""
    root = tmp_path_factory.mktemp("buckets")
    model = mlp(root, sizes=(32, 64, 16))
    return model, _build(model, root / "art", _sample(root / "sample.json")).artifact


def test_the_frequent_shapes_get_buckets(built: tuple[Path, Path]) -> None:
    manifest = json.loads((built[1] / "manifest.json").read_text())
    assert [(b["id"], b["shapes"], b["count"]) for b in manifest["buckets"]] == [
        ("b0", {"x": [8, 32]}, 50), ("b1", {"x": [1, 32]}, 30)]
    for bucket in manifest["buckets"]:  # each a full static build, hashed in the one manifest
        own = json.loads((built[1] / bucket["dir"] / "manifest.json").read_text())
        assert own["inputs"][0]["shape"] == bucket["shapes"]["x"] and "dims" not in own
        assert f"{bucket['dir']}/{own['library']}" in manifest["files"]
        assert bucket["arena_bytes"] < manifest["arena_bytes"]  # sized for its shape only
    decisions = (built[1] / "decisions.jsonl").read_text()
    assert '"action":"shape_bucket"' in decisions and "x[3,32]: 2 of 82 requests" in decisions


def test_each_plan_matches_onnxruntime_and_the_dispatch_counts(built: tuple[Path, Path]) -> None:
    model_path, art = built
    rng = np.random.default_rng()
    generic = pyc_cli.load(art)
    generic.buckets = None  # the same artifact with dispatch off: every run generic
    with pyc_cli.load(art) as model:
        for batch, plan in ((8, "b0"), (1, "b1"), (3, "generic"), (64, "generic"), (8, "b0")):
            x = rng.standard_normal((batch, 32)).astype(np.float32)
            y = model.run({"x": x})["y"]
            assert model.stats.last_plan == plan and model.stats.last_dispatch_us >= 0
            np.testing.assert_allclose(y, onnxruntime_outputs(model_path, {"x": x})["y"],
                                       rtol=RTOL, atol=ATOL, err_msg=f"batch {batch}")
            np.testing.assert_allclose(y, generic.run({"x": x})["y"], rtol=RTOL, atol=ATOL)
        assert model.stats.plan_runs == {"b0": 2, "b1": 1, "generic": 2}
        assert model.run(None, {"x": np.ones((1, 32), np.float32)})[0].shape == (1, 16)
        assert model.time_runs({"x": np.ones((8, 32), np.float32)}, 2)  # timed on b0
        assert model.stats.plan_runs["b0"] == 3
        with pytest.raises(PycError) as info:  # out of bounds: the generic plan refuses it
            model.run({"x": np.ones((65, 32), np.float32)})
        assert info.value.code == "E041"
    generic.close()


def test_a_modified_bucket_is_refused_before_loading(built: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    copy = tmp_path / "art"
    shutil.copytree(built[1], copy)
    library = copy / "buckets" / "b1" / "libmodel.so"
    library.write_bytes(library.read_bytes() + b"\0")
    with pytest.raises(PycError) as info:
        pyc_cli.load(copy)
    assert info.value.code == "E031"


def test_a_bucket_modified_after_loading_is_refused_at_its_first_run(
        built: tuple[Path, Path], tmp_path: Path) -> None:
    """Buckets load lazily: the bucket's manifest is checked against the artifact's before its
    library is mapped."""
    copy = tmp_path / "art"
    shutil.copytree(built[1], copy)
    with pyc_cli.load(copy) as model:
        own = copy / "buckets" / "b1" / "manifest.json"
        own.write_text(own.read_text().replace('"threads"', '"threads" ', 1))
        model.run({"x": np.ones((8, 32), np.float32)})  # b0 is untouched
        with pytest.raises(PycError) as info:
            model.run({"x": np.ones((1, 32), np.float32)})
        assert info.value.code == "E031" and "buckets/b1" in info.value.what


def test_a_repeated_build_comes_from_the_cache_with_its_buckets(
        built: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYC_BUILD_CACHE", str(tmp_path / "cache"))
    sample = _sample(tmp_path / "s.json")
    first = _build(built[0], tmp_path / "one", sample, cache=True)
    second = _build(built[0], tmp_path / "two", sample, cache=True)
    assert not first.cached and second.cached
    assert hash_tree(second.artifact) == hash_tree(built[1])
    other = _build(built[0], tmp_path / "three", _sample(tmp_path / "o.json", SAMPLE[1:]),
                   cache=True)  # another sample: another key
    assert not other.cached


def test_two_builds_are_byte_identical(built: tuple[Path, Path], tmp_path: Path) -> None:
    again = _build(built[0], tmp_path / "again", _sample(tmp_path / "s.json"), cache=False)
    assert hash_tree(again.artifact) == hash_tree(built[1])
    assert (again.artifact / "manifest.json").read_bytes() == \
        (built[1] / "manifest.json").read_bytes()


def test_explain_and_run_show_the_buckets(built: tuple[Path, Path], tmp_path: Path) -> None:
    code, output = invoke("explain", str(built[1]))
    assert code == 0 and "Shape buckets" in output and "x[8,32]" in output
    assert "x[3,32]: 2 of 82 requests" in output
    code, output = invoke("explain", str(built[1]), "--json")
    data = json.loads(output)["shape_buckets"]
    assert [b["id"] for b in data["buckets"]] == ["b0", "b1"]
    assert data["buckets"][0]["share"] == pytest.approx(50 / 82, abs=1e-6)
    first = data["buckets"][0]  # its plan: a static kernel per node, compared with the generic's
    assert [k["node"] for k in first["kernels"]] == ["matmul0", "matmul1"]
    assert 0 <= first["kernels_unlike_generic"] <= len(first["kernels"])
    np.savez(tmp_path / "in.npz", x=np.random.default_rng().standard_normal((8, 32)).astype(np.float32))
    code, output = invoke("run", str(built[1]), "--inputs", str(tmp_path / "in.npz"),
                          "--repeat", "2", "--json")
    summary = json.loads(output)
    assert code == 0 and summary["shape_plan"]["plan"] == "b0"
    assert summary["shape_plan"]["dispatch_us"] > 0
    assert summary["run_statistics"]["plan_runs"] == {"b0": 2}  # the run, then the timed runs


def test_the_cli_builds_buckets_from_an_npz_sample(built: tuple[Path, Path], tmp_path: Path) -> None:
    rng = np.random.default_rng()
    arrays = {f"{i}/x": rng.standard_normal((batch, 32)).astype(np.float32)
              for i, batch in enumerate([4, 4, 4, 2, 4, 2, 9])}
    np.savez(tmp_path / "sample.npz", **arrays)
    assert sorted(read_sample(tmp_path / "sample.npz").values()) == [1, 2, 4]
    code, output = invoke("build", str(built[0]), "-o", str(tmp_path / "art"), "--no-cache",
                          "--input-shape", SHAPE, "--shape-buckets", "1",
                          "--shape-sample", str(tmp_path / "sample.npz"))
    assert code == 0, output
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert [b["shapes"] for b in manifest["buckets"]] == [{"x": [4, 32]}]  # N = 1: the top one


def test_choice_is_deterministic_and_bounded() -> None:
    counts = Counter({(("x", (2, 8)),): 10, (("x", (1, 8)),): 10,
                                                 (("x", (3, 8)),): 1})
    buckets, left_out = choose_buckets(counts, 1)
    assert [b.shapes for b in buckets] == [{"x": (1, 8)}]  # a tie goes to the smaller shape
    assert len(left_out) == 2 and "past the 1 bucket" in left_out[0]


@pytest.mark.parametrize("data, message", [
    ("not json", "not JSON"),
    ([], "non-empty list"),
    ([{"shapes": {"x": [8, 32]}}], "exactly `shapes` and `count`"),
    ([{"shapes": {"x": [8, 32]}, "count": 0}], "positive integer"),
    ([{"shapes": {"x": [8, "a"]}, "count": 1}], "non-negative integers"),
    ([{"shapes": {"y": [8, 32]}, "count": 1}], "inputs with symbolic dims are ['x']"),
    ([{"shapes": {"x": [65, 32]}, "count": 1}], "outside the --input-shape bounds"),
    ([{"shapes": {"x": [8, 31]}, "count": 1}], "outside the --input-shape bounds"),
])
def test_malformed_samples_are_e052(built: tuple[Path, Path], tmp_path: Path,
                                    data: object, message: str) -> None:
    sample = tmp_path / "s.json"
    sample.write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(PycError) as info:
        _build(built[0], tmp_path / "art", sample)
    assert info.value.code == "E052" and message in info.value.what, info.value.what
    assert not (tmp_path / "art").exists()


def test_bad_options_are_refused(built: tuple[Path, Path], tmp_path: Path) -> None:
    sample = _sample(tmp_path / "s.json")
    for options, code in (({"buckets": "many"}, "E050"), ({"slim": True}, "E050"),
                          ({"sample_missing": True}, "E052")):
        with pytest.raises(PycError) as info:
            if options.pop("sample_missing", False):
                _build(built[0], tmp_path / "art", tmp_path / "missing.json")
            else:
                _build(built[0], tmp_path / "art", sample, **options)
        assert info.value.code == code
    with pytest.raises(PycError) as info:  # buckets need symbolic dims to choose among
        pyc_cli.build(built[0], tmp_path / "art", input_shapes={"x": (8, 32)},
                      shape_buckets="auto", shape_sample=sample)
    assert info.value.code == "E052"


def test_a_compile_budget_drops_buckets(built: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.warns(PycWarning):
        result = _build(built[0], tmp_path / "art", _sample(tmp_path / "s.json"),
                        compile_budget=0.01, cache=False)
    manifest = json.loads((result.artifact / "manifest.json").read_text())
    assert manifest["buckets"] == []  # no room left after the generic build: both dropped
    dropped = [json.loads(line) for line in (result.artifact / "decisions.jsonl").read_text()
               .splitlines() if '"shape_bucket_dropped"' in line]
    assert [d["bucket"] for d in dropped] == ["b0", "b1"]
    code, output = invoke("explain", str(result.artifact))
    assert code == 0 and "compile budget: bucket b0" in output
    with pyc_cli.load(result.artifact) as model:  # every run generic
        model.run({"x": np.ones((8, 32), np.float32)})


def test_the_encoder_buckets_match_onnxruntime(tmp_path: Path) -> None:
    """Softmax over the keys: a bucket is an exact (batch, seq), never a padded one."""
    model_path = MODELS_DIR / "transformer.onnx"
    sample = _sample(tmp_path / "s.json", [
        {"shapes": {"input_ids": [2, 12], "attention_mask": [2, 12]}, "count": 7},
        {"shapes": {"input_ids": [1, 5], "attention_mask": [1, 5]}, "count": 3}])
    shapes, _ = parse_input_shapes(["input_ids=batch:1..4,seq:1..64", "attention_mask=batch,seq"])
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes=shapes, shape_buckets=2,
                        shape_sample=sample, cache=False).artifact
    rng = np.random.default_rng()
    with pyc_cli.load(art) as model:
        for batch, seq, plan in ((2, 12, "b0"), (1, 5, "b1"), (2, 11, "generic")):
            mask = (rng.random((batch, seq)) > 0.25).astype(np.int64)
            mask[:, 0] = 1
            feeds = {"input_ids": rng.integers(0, 100, (batch, seq)).astype(np.int64),
                     "attention_mask": mask}
            got = model.run(feeds)
            assert model.stats.last_plan == plan
            for name, value in onnxruntime_outputs(model_path, feeds).items():
                np.testing.assert_allclose(got[name], value, rtol=1e-4,
                                           atol=1e-5 * max(1.0, float(np.max(np.abs(value)))))
