"""The build cache (pyc_cli/build_cache.py): a repeated build is a byte-identical copy of the
first; anything the artifact depends on (model bytes, external data, options, the tuning
database) is a different key; a damaged entry is dropped and rebuilt; the cache can be turned
off, prunes its least recently used entries, and `pyc build --no-cache` bypasses it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REFERENCE_MODELS, invoke
from onnx import TensorProto, helper, numpy_helper

import pyc_cli
from pyc_cli import build_cache
from pyc_cli.artifact.manifest import hash_tree
from pyc_cli.passes.tuning import InMemoryTuningDatabase

MLP = REFERENCE_MODELS["mlp"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(build_cache.ENV, str(root))
    return root


def build(model: Path, out: Path, **options: object) -> pyc_cli.api.BuildResult:
    return pyc_cli.build(model, out, input_shapes={"x": (3, 64)}, cache=True, **options)  # type: ignore[arg-type]


def entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) \
        if root.exists() else []


def test_a_repeated_build_is_a_byte_identical_copy(cache: Path, tmp_path: Path) -> None:
    first = build(MLP.path, tmp_path / "a.pyc")
    assert not first.cached and len(entries(cache)) == 1
    key = entries(cache)[0]
    # the build report says whether the cache answered (the artifact is the same either way)
    assert f"not in the build cache: built, and kept there ({key[:12]})" in first.notes
    second = build(MLP.path, tmp_path / "b.pyc")
    assert second.cached and any(note.startswith(f"copied from the build cache ({key[:12]}")
                                 for note in second.notes)
    assert not any("not in the build cache" in note for note in second.notes)
    assert hash_tree(tmp_path / "a.pyc") == hash_tree(tmp_path / "b.pyc")
    assert len(second.graph.nodes) == len(first.graph.nodes)
    assert second.plan.arena_bytes == first.plan.arena_bytes
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    with pyc_cli.load(tmp_path / "a.pyc") as a, pyc_cli.load(tmp_path / "b.pyc") as b:
        for name, value in a.run({"x": x}).items():
            np.testing.assert_array_equal(value, b.run({"x": x})[name])


def test_options_model_bytes_and_tuning_database_change_the_key(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build(MLP.path, tmp_path / "a.pyc")
    assert not build(MLP.path, tmp_path / "b.pyc", threads=1).cached
    assert not build(MLP.path, tmp_path / "c.pyc", mode="memory_first").cached
    assert not build(MLP.path, tmp_path / "d.pyc", slim=True).cached
    changed = onnx.load(MLP.path)
    weight = changed.graph.initializer[0]
    values = numpy_helper.to_array(weight).copy()
    values.flat[0] += 1
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(changed, tmp_path / "mlp.onnx")
    assert not build(tmp_path / "mlp.onnx", tmp_path / "e.pyc").cached
    db = tmp_path / "tuning.json"
    # a database file that does not exist holds no choices: the build of a.pyc stands in
    assert build(MLP.path, tmp_path / "f.pyc", tuning_db=db).cached
    db.write_text('{"format": "pyc-tuning-db", "version": 1, "machines": {}}')  # its bytes count
    assert not build(MLP.path, tmp_path / "g.pyc", tuning_db=db).cached
    assert build(MLP.path, tmp_path / "h.pyc", tuning_db=db).cached
    assert len(entries(cache)) == 6


def test_external_data_is_part_of_the_key(cache: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((64, 8)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m" / "model.onnx"
    path.parent.mkdir()
    onnx.save(model, path, save_as_external_data=True, location="weights.data",
              size_threshold=0)
    assert not build(path, tmp_path / "a.pyc").cached
    assert build(path, tmp_path / "b.pyc").cached
    data = bytearray((path.parent / "weights.data").read_bytes())
    data[0] ^= 0xFF
    (path.parent / "weights.data").write_bytes(bytes(data))
    assert not build(path, tmp_path / "c.pyc").cached


def test_a_damaged_entry_is_dropped_and_rebuilt(cache: Path, tmp_path: Path) -> None:
    build(MLP.path, tmp_path / "a.pyc")
    [entry] = entries(cache)
    weights = cache / entry / "artifact" / "weights.bin"
    weights.write_bytes(b"\0" * weights.stat().st_size)
    again = build(MLP.path, tmp_path / "b.pyc")
    assert not again.cached
    assert hash_tree(tmp_path / "a.pyc") == hash_tree(tmp_path / "b.pyc")
    assert build(MLP.path, tmp_path / "c.pyc").cached  # the rebuild was kept


def test_off_a_tuning_object_and_no_cache_bypass_it(cache: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert not build(MLP.path, tmp_path / "a.pyc", tuning=InMemoryTuningDatabase({})).cached
    assert entries(cache) == []
    monkeypatch.setenv(build_cache.ENV, "off")
    assert not build(MLP.path, tmp_path / "b.pyc").cached and entries(cache) == []
    monkeypatch.setenv(build_cache.ENV, str(cache))
    args = ["build", str(MLP.path), "-o", str(tmp_path / "c.pyc"), "--input-shape", "x=3,64"]
    code, output = invoke(*args, "--no-cache")
    assert code == 0 and entries(cache) == []
    code, output = invoke(*args, "--force")
    assert code == 0 and len(entries(cache)) == 1 and "copied from the build cache" not in output
    assert "not in the build cache: built, and kept there" in output
    code, output = invoke(*args, "--force")
    assert code == 0 and "copied from the build cache" in output


def test_prune_removes_the_least_recently_used(cache: Path, tmp_path: Path) -> None:
    build(MLP.path, tmp_path / "a.pyc")
    build(MLP.path, tmp_path / "b.pyc", threads=1)
    old, new = sorted(entries(cache), key=lambda e: (cache / e).stat().st_mtime)
    os.utime(cache / old, (1, 1))
    size = sum(p.stat().st_size for p in (cache / new).rglob("*") if p.is_file())
    build_cache.prune(cache, limit=size)
    assert entries(cache) == [new]


def test_a_latency_clause_keys_the_build_on_this_machines_calibration(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A latency clause is predicted from the calibration store: a build after the store
    changed is planned and checked again, not copied; a build without the clause ignores it."""
    import json

    from pyc_cli.passes import latency_model
    from pyc_cli.targets import get_target

    store = tmp_path / "whatif.json"
    monkeypatch.setenv(latency_model.STORE_ENV, str(store))
    machine = latency_model.machine_key(get_target("cpu").cpu_record())  # type: ignore[attr-defined]

    def calibrate(ms_per_cost: float) -> None:
        store.write_text(json.dumps({"format": latency_model.STORE_FORMAT, "artifacts": {},
                                     "machines": {machine: {"kernels": {}, "ops": {},
                                                            "overall": ms_per_cost}}}))

    calibrate(1e-12)
    assert not build(MLP.path, tmp_path / "a.pyc", contract="latency_p50<=1s").cached
    assert build(MLP.path, tmp_path / "b.pyc", contract="latency_p50<=1s").cached
    assert not build(MLP.path, tmp_path / "c.pyc").cached
    calibrate(1e-11)
    assert not build(MLP.path, tmp_path / "d.pyc", contract="latency_p50<=1s").cached
    assert build(MLP.path, tmp_path / "e.pyc").cached
