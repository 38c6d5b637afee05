"""Issue #15 points 3 and 5, shape buckets: `--shape-buckets auto --shape-sample FILE` clusters the
sample into boxes of the dims, each built as a plan of its own (symbolic within the box, or
static where the box is one point) beside the generic symbolic one; a run goes to the smallest
box holding its dims, in Python and in the generated C (NAME_context_run_shaped), any other to
the generic plan; each plan's result equals onnxruntime's on fresh random inputs at the boxes'
edges (outputs poisoned first); buckets whose weights are the generic plan's share its file,
checked by hash; the artifact is byte-identical across builds; `pyc explain` and `pyc run
--json` show the buckets; malformed samples are PYC-E052; a compile budget drops buckets."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS_DIR, invoke, onnxruntime_outputs

import pyc_cli
from pyc_cli.api import BuildResult
from pyc_cli.artifact.manifest import file_sha256, hash_tree
from pyc_cli.buckets import choose_buckets, dim_bounds, read_sample
from pyc_cli.errors import PycError, PycWarning
from pyc_cli.ir.symbolic import parse_input_shapes
from tests.dynamic.checks import compile_driver, poison_outputs
from tests.dynamic.models import mlp
from tests.helpers import assert_strict_c11

REPO = Path(__file__).resolve().parents[2]
SHAPE = "x=batch:1..64,32"
# x[8, 32] alone is half the sample: a static plan of that shape (b0); x[33..40, 32] a box of
# batch 1..40 (b1, symbolic); x[50, 32] is 2% of the sample, in no box (the generic plan)
SAMPLE = [{"shapes": {"x": [8, 32]}, "count": 50}, {"shapes": {"x": [40, 32]}, "count": 30},
          {"shapes": {"x": [33, 32]}, "count": 20}, {"shapes": {"x": [50, 32]}, "count": 2}]
# (batch, the plan it runs on): each box's edges, inside and just outside
EDGES = ((8, "b0"), (7, "b1"), (9, "b1"), (1, "b1"), (40, "b1"), (41, "generic"),
         (64, "generic"), (33, "b1"))
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


def test_the_sample_is_clustered_into_boxes(built: tuple[Path, Path]) -> None:
    manifest = json.loads((built[1] / "manifest.json").read_text())
    assert [(b["id"], b["kind"], b["dims"], b["shapes"], b["count"]) for b in manifest["buckets"]] == [
        ("b0", "static", {"batch": [8, 8]}, {"x": [8, 32]}, 50),
        ("b1", "symbolic", {"batch": [1, 40]}, {"x": ["batch:1..40", 32]}, 50)]
    for bucket in manifest["buckets"]:  # each a full build, hashed in the one manifest
        own = json.loads((built[1] / bucket["dir"] / "manifest.json").read_text())
        assert f"{bucket['dir']}/{own['library']}" in manifest["files"]
        assert bucket["arena_bytes"] < manifest["arena_bytes"]  # sized for its box only
    static, symbolic = (json.loads((built[1] / b["dir"] / "manifest.json").read_text())
                        for b in manifest["buckets"])
    assert static["inputs"][0]["shape"] == [8, 32] and "dims" not in static
    assert symbolic["dims"] == [{"name": "batch", "lo": 1, "hi": 40}]
    decisions = (built[1] / "decisions.jsonl").read_text()
    assert '"action":"shape_bucket"' in decisions and "batch=50: 2 of 102 requests" in decisions


def test_each_bucket_says_whether_its_kernels_beat_the_generic_plans(
        built: tuple[Path, Path]) -> None:
    """The decision log says why each box exists beyond its share of the sample: the static
    plan's GEMMs are the static kernels (the generic plan's read M at run time), costed by the
    cost model against the generic plan's at the box's largest request; the symbolic box picks
    the generic plan's kernels, so it buys its arena, not speed (1.00x)."""
    manifest = json.loads((built[1] / "manifest.json").read_text())
    decisions = [json.loads(line) for line in (built[1] / "decisions.jsonl").read_text().splitlines()]
    logged = {d["bucket"]: d for d in decisions if d["action"] == "shape_bucket"}
    by_id = {b["id"]: b for b in manifest["buckets"]}
    assert by_id["b1"]["kernels_changed"] == 0 and by_id["b1"]["predicted_speedup"] == 1.0
    assert "the same kernels as the generic plan" in logged["b1"]["reason"]
    assert logged["b1"]["predicted_speedup"] == 1.0
    assert by_id["b0"]["kernels_changed"] > 0
    assert by_id["b0"]["predicted_speedup"] == logged["b0"]["predicted_speedup"] > 0
    assert "choose other kernels than the generic plan" in logged["b0"]["reason"]
    # `pyc explain` prints the manifest's reasons: the same words
    assert [b["reason"] for b in manifest["buckets"]] == [logged["b0"]["reason"],
                                                          logged["b1"]["reason"]]


def test_buckets_share_the_generic_weights_verified_by_hash(built: tuple[Path, Path]) -> None:
    """A bucket whose weights are byte for byte the generic plan's keeps no copy: its manifest
    names the sha256 of the artifact's weights.bin; the symbolic box's always are."""
    manifest = json.loads((built[1] / "manifest.json").read_text())
    by_id = {b["id"]: b for b in manifest["buckets"]}
    assert by_id["b1"]["shared_weights"]
    for bucket in manifest["buckets"]:
        where = built[1] / bucket["dir"]
        own = json.loads((where / "manifest.json").read_text())
        if bucket["shared_weights"]:
            assert own["weights"]["shared"] == file_sha256(built[1] / "weights.bin")
            assert not (where / "weights.bin").exists() and "weights.bin" not in own["files"]
        else:
            assert (where / "weights.bin").is_file() and "shared" not in own["weights"]
    with pyc_cli.load(built[1]) as model:  # in memory too: b1 reads the generic plan's copy
        model.run({"x": np.ones((9, 32), np.float32)})
        b1 = model.buckets.model("b1")
        addresses = []
        for plan, prefix in ((model, "mlp_dynamic"), (b1, "mlp_dynamic_b1")):
            data = getattr(plan._keepalive, f"{prefix}_weights_data")
            data.restype, data.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
            addresses.append(data(plan._handle))
        assert addresses[0] and addresses[0] == addresses[1]
    with pytest.raises(PycError) as info:  # a bucket is no artifact of its own
        pyc_cli.load(built[1] / "buckets" / "b1")
    assert info.value.code == "E030" and "shape bucket" in info.value.what


def test_shared_weights_modified_after_loading_are_refused(built: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    """The bucket hashes the artifact's weights file again when it loads (lazily)."""
    copy = tmp_path / "art"
    shutil.copytree(built[1], copy)
    with pyc_cli.load(copy) as model:
        weights = copy / "weights.bin"
        data = bytearray(weights.read_bytes())
        data[0] ^= 1
        weights.write_bytes(bytes(data))
        with pytest.raises(PycError) as info:
            model.run({"x": np.ones((9, 32), np.float32)})  # b1: shares them
        assert info.value.code == "E031" and "buckets/b1" in info.value.what


def test_each_plan_matches_onnxruntime_at_the_box_edges(built: tuple[Path, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    model_path, art = built
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    generic = pyc_cli.load(art)
    generic.buckets = None  # the same artifact with dispatch off: every run generic
    with pyc_cli.load(art) as model:
        for batch, plan in EDGES:
            x = rng.standard_normal((batch, 32)).astype(np.float32)
            y = model.run({"x": x})["y"]
            assert model.stats.last_plan == plan, batch
            assert model.stats.last_dispatch_us >= 0
            np.testing.assert_allclose(y, onnxruntime_outputs(model_path, {"x": x})["y"],
                                       rtol=RTOL, atol=ATOL, err_msg=f"batch {batch}")
            np.testing.assert_allclose(y, generic.run({"x": x})["y"], rtol=RTOL, atol=ATOL)
        assert model.stats.plan_runs == {"b0": 1, "b1": 5, "generic": 2}
        assert model.trim() == 0  # balanced plans, the buckets loaded too: no grown arena
        assert model.run(None, {"x": np.ones((1, 32), np.float32)})[0].shape == (1, 16)
        assert model.time_runs({"x": np.ones((8, 32), np.float32)}, 2)  # timed on b0
        assert model.stats.plan_runs["b0"] == 2
        with pytest.raises(PycError) as info:  # out of bounds: the generic plan refuses it
            model.run({"x": np.ones((65, 32), np.float32)})
        assert info.value.code == "E041"
        with pytest.raises(PycError) as info:  # a static axis of another size: the same
            model.run({"x": np.ones((8, 31), np.float32)})
        assert info.value.code == "E041"
    generic.close()



def _drive(exe: Path, art: Path, tmp_path: Path, batch: int, x: np.ndarray,
           env: dict[str, str] | None = None) -> tuple[str, np.ndarray]:
    x.tofile(tmp_path / "x.bin")
    ran = subprocess.run([str(exe), str(art / "weights.bin"), str(tmp_path / "x.bin"),
                          str(tmp_path / "y.bin"), str(batch), "32"], capture_output=True,
                         text=True, check=False, env={**os.environ, **(env or {})})
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "again same" in ran.stdout  # the second run on the bucket's context: same bytes
    return ran.stdout, np.fromfile(tmp_path / "y.bin", np.float32).reshape(batch, 16)


def test_the_c_abi_dispatches_to_the_buckets(built: tuple[Path, Path], tmp_path: Path) -> None:
    """NAME_context_run_shaped of the generic plan's C runs each run in the smallest box holding
    its dims (the bucket's library loaded from buckets/ID/ beside the weights file, on the
    generic plan's weights where they are the same), others on the generic plan; outputs match
    onnxruntime. Dispatch off, or a bucket whose library is missing: the generic plan."""
    model_path, art = built
    for plan in (art, art / "buckets" / "b0", art / "buckets" / "b1"):
        assert_strict_c11("gcc", plan)  # the dispatch table, NAME_create_borrowed
    exe = compile_driver(art, "shaped_driver.c", tmp_path / "driver", "-DPYC_TEST_BUCKETS")
    rng = np.random.default_rng()
    order = {"b0": 0, "b1": 1}  # the dispatch order: the smaller box first
    for batch, plan in EDGES:
        x = rng.standard_normal((batch, 32)).astype(np.float32)
        out, y = _drive(exe, art, tmp_path, batch, x)
        assert f"plan {order.get(plan, -1)} {plan}" in out, (batch, out)
        assert f"output {batch} 16" in out
        np.testing.assert_allclose(y, onnxruntime_outputs(model_path, {"x": x})["y"],
                                   rtol=RTOL, atol=ATOL, err_msg=f"batch {batch}")
    x = rng.standard_normal((9, 32)).astype(np.float32)
    out, y = _drive(exe, art, tmp_path, 9, x, {"PYC_TEST_DISPATCH_OFF": "1"})
    assert "plan -1 generic" in out
    np.testing.assert_allclose(y, onnxruntime_outputs(model_path, {"x": x})["y"], rtol=RTOL, atol=ATOL)
    copy = tmp_path / "art"
    shutil.copytree(art, copy)
    (copy / "buckets" / "b1" / "libmodel.so").unlink()
    out, y = _drive(exe, copy, tmp_path, 9, x)
    assert "plan -1 generic" in out  # b1 unavailable: the generic plan runs it
    np.testing.assert_allclose(y, onnxruntime_outputs(model_path, {"x": x})["y"], rtol=RTOL, atol=ATOL)


def test_the_c_dispatch_refuses_a_modified_bucket_library(built: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    """The generic plan's C holds each bucket library's sha256 (the one the manifest lists,
    known because the buckets are built before its code) and checks it before dlopen: a run in
    the box of a modified library returns PYC_STATUS_BUCKET_UNVERIFIED (7) and never maps it;
    other boxes and the generic plan still run, and match onnxruntime."""
    model_path, art = built
    manifest = json.loads((art / "manifest.json").read_text())
    source = (art / "src" / "model.c").read_text()
    for bucket in ("b0", "b1"):
        digest = manifest["files"][f"buckets/{bucket}/libmodel.so"]
        assert ", ".join(f"0x{digest[i:i + 2]}" for i in range(0, 64, 2)) in source
    copy = tmp_path / "art"
    shutil.copytree(art, copy)
    library = copy / "buckets" / "b1" / "libmodel.so"
    data = bytearray(library.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: still a loadable library, not the one built
    library.write_bytes(bytes(data))
    exe = compile_driver(copy, "shaped_driver.c", tmp_path / "driver", "-DPYC_TEST_BUCKETS")
    rng = np.random.default_rng()
    for batch in (9, 1):  # b1's box: refused, every time
        x = rng.standard_normal((batch, 32)).astype(np.float32)
        x.tofile(tmp_path / "x.bin")
        ran = subprocess.run([str(exe), str(copy / "weights.bin"), str(tmp_path / "x.bin"),
                              str(tmp_path / "y.bin"), str(batch), "32"], capture_output=True,
                             text=True, check=False)
        assert ran.returncode == 1 and "status 7: a shape bucket's library does not match" in \
            ran.stdout, ran.stdout + ran.stderr
    for batch, plan in ((8, "plan 0 b0"), (50, "plan -1 generic")):  # the others still run
        x = rng.standard_normal((batch, 32)).astype(np.float32)
        out, y = _drive(exe, copy, tmp_path, batch, x)
        assert plan in out
        np.testing.assert_allclose(y, onnxruntime_outputs(model_path, {"x": x})["y"],
                                   rtol=RTOL, atol=ATOL)


def test_the_c_sha256_matches_hashlib(tmp_path: Path) -> None:
    """runtime_c/pyc_sha256.h (what the C dispatch checks bucket libraries with) against
    hashlib, at the padding's edges (55, 56, 63, 64 bytes) and over many blocks, fed in chunks
    that split blocks."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    assert compiler
    exe = tmp_path / "sha256"
    subprocess.run([compiler, "-std=c11", "-O2", "-Wall", "-Werror", "-I", str(REPO / "runtime_c"),
                    str(REPO / "tests" / "c" / "sha256_driver.c"), "-o", str(exe)], check=True)
    rng = np.random.default_rng()
    files = []
    for size in (0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 200_003):
        path = tmp_path / f"f{size}"
        path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        files.append(path)
    for chunk in (1, 7, 64, 65536):
        out = subprocess.run([str(exe), str(chunk), *map(str, files)], capture_output=True,
                             text=True, check=True).stdout.split()
        assert out == [file_sha256(path) for path in files], chunk


def test_the_python_runtime_keeps_the_c_dispatch_off(built: tuple[Path, Path]) -> None:
    """Loaded from Python, the generic plan's own dispatch is off (the runtime verifies a
    bucket's files before mapping its code, from a copy named by its hash): a run of a box's
    shape on the generic plan never maps buckets/ID/libmodel.so itself."""
    with pyc_cli.load(built[1]) as model:
        model.buckets = None
        model.run({"x": np.ones((9, 32), np.float32)})
        maps = Path("/proc/self/maps").read_text() if Path("/proc/self/maps").exists() else ""
        assert str(built[1] / "buckets") not in maps


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
    assert "batch=50: 2 of 102 requests" in output and "batch=1..40" in output
    assert "x[8,32] (static)" in output
    code, output = invoke("explain", str(built[1]), "--json")
    data = json.loads(output)["shape_buckets"]
    assert [b["id"] for b in data["buckets"]] == ["b0", "b1"]
    assert data["buckets"][0]["share"] == pytest.approx(50 / 102, abs=1e-6)
    assert [(b["kind"], b["shared_weights"]) for b in data["buckets"]][1] == ("symbolic", True)
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
    # N = 1: the box that lowers the sample's cost the most, batch 1..9 (7 x 55 of 7 x 64)
    assert [b["shapes"] for b in manifest["buckets"]] == [{"x": ["batch:1..9", 32]}]


def test_choice_is_deterministic_and_bounded() -> None:
    """A long-tailed 2-D sample: boxes from the dims' lower bounds, at most the count asked
    for, each serving some requests, the same boxes for the same sample; a point alone in its
    box is an exact (static) bucket."""
    shapes, _ = parse_input_shapes(["ids=batch:1..8,seq:1..512", "mask=batch,seq"])
    bounds = dim_bounds(shapes)
    rng = np.random.default_rng(0)
    seq = np.clip(np.round(np.exp(rng.normal(np.log(24), 1.0, 500))), 1, 512).astype(int)
    batch = rng.integers(1, 9, 500)
    points = Counter(zip(batch.tolist(), seq.tolist()))
    first, left = choose_buckets(points, bounds, shapes, 3)
    again, _ = choose_buckets(Counter(dict(reversed(list(points.items())))), bounds, shapes, 3)
    assert first == again and 1 <= len(first) <= 3
    assert all(b.box[0][1] == 1 and b.box[1][1] == 1 and b.count > 0 for b in first)
    assert sum(b.count for b in first) + sum(
        int(line.split(": ")[1].split(" of")[0]) for line in left if "more shapes" not in line) \
        <= 500
    one, _ = choose_buckets(points, bounds, shapes, 1)
    assert one[0].box == first[0].box  # the first pick does not depend on the count
    assert one[0].shapes == {"ids": ("batch:1..8", f"seq:1..{one[0].box[1][2]}"),
                             "mask": ("batch:1..8", f"seq:1..{one[0].box[1][2]}")} or \
        one[0].box[0][2] < 8
    exact, _ = choose_buckets(Counter({(2, 100): 10}), bounds, shapes, 2)
    assert [(b.box, b.exact, b.shapes) for b in exact] == [
        ((("batch", 2, 2), ("seq", 100, 100)), True, {"ids": (2, 100), "mask": (2, 100)})]


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


def test_the_encoder_buckets_match_onnxruntime(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Softmax over the keys: a box's plan runs each (batch, seq) in it unpadded, symbolic
    within the box; runs at its corners and just outside match onnxruntime."""
    model_path = MODELS_DIR / "transformer.onnx"
    sample = _sample(tmp_path / "s.json", [
        {"shapes": {"input_ids": [2, 12], "attention_mask": [2, 12]}, "count": 7},
        {"shapes": {"input_ids": [1, 5], "attention_mask": [1, 5]}, "count": 3}])
    shapes, _ = parse_input_shapes(["input_ids=batch:1..4,seq:1..64", "attention_mask=batch,seq"])
    art = pyc_cli.build(model_path, tmp_path / "art", input_shapes=shapes, shape_buckets=2,
                        shape_sample=sample, cache=False).artifact
    manifest = json.loads((art / "manifest.json").read_text())
    # (2, 12) holds every request of the sample in a box of 24 (the generic plan's: 256)
    assert [(b["id"], b["dims"]) for b in manifest["buckets"]] == [
        ("b0", {"batch": [1, 2], "seq": [1, 12]})]
    poison_outputs(monkeypatch)
    rng = np.random.default_rng()
    with pyc_cli.load(art) as model:
        for batch, seq, plan in ((2, 12, "b0"), (1, 5, "b0"), (1, 1, "b0"), (2, 13, "generic"),
                                 (3, 12, "generic"), (4, 64, "generic")):
            mask = (rng.random((batch, seq)) > 0.25).astype(np.int64)
            mask[:, 0] = 1
            feeds = {"input_ids": rng.integers(0, 100, (batch, seq)).astype(np.int64),
                     "attention_mask": mask}
            got = model.run(feeds)
            assert model.stats.last_plan == plan
            for name, value in onnxruntime_outputs(model_path, feeds).items():
                np.testing.assert_allclose(got[name], value, rtol=1e-4,
                                           atol=1e-5 * max(1.0, float(np.max(np.abs(value)))))
