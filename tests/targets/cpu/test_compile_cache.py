"""The opt-in compile cache (PYC_COMPILE_CACHE): a hit gives the library a fresh build gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pyc_cli
from pyc_cli.targets.cpu import compile_cache

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_same_source_is_compiled_once_and_gives_the_same_library(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(compile_cache.ENV, str(cache))
    compiled: list[list[str]] = []
    real_run = pyc_cli.targets.cpu.target.CpuTarget._run

    def counting_run(command: list[str], cwd: Path) -> None:
        compiled.append(command)
        real_run(command, cwd)

    monkeypatch.setattr(pyc_cli.targets.cpu.target.CpuTarget, "_run", staticmethod(counting_run))
    shapes = {"x": [1, 64]}
    first = pyc_cli.build(MODELS / "mlp.onnx", tmp_path / "a", input_shapes=shapes).artifact
    second = pyc_cli.build(MODELS / "mlp.onnx", tmp_path / "b", input_shapes=shapes).artifact
    assert len(compiled) == 1 and len(list(cache.iterdir())) == 1
    assert (first / "libmodel.so").read_bytes() == (second / "libmodel.so").read_bytes()
    x = rng.standard_normal((1, 64)).astype(np.float32)
    with pyc_cli.load(first) as fresh, pyc_cli.load(second) as cached:
        np.testing.assert_array_equal(cached.run({"x": x})["logits"], fresh.run({"x": x})["logits"])


def test_the_key_covers_sources_and_flags(tmp_path: Path) -> None:
    (tmp_path / "model.c").write_text("int f(void) { return 1; }\n")
    command = ["cc", "-O3", "-o", "/x/lib.so", "model.c"]
    base = compile_cache.key(command, "/x/lib.so", tmp_path, b"gcc")
    elsewhere = ["cc", "-O3", "-o", "/y/lib.so", "model.c"]
    assert compile_cache.key(elsewhere, "/y/lib.so", tmp_path, b"gcc") == base
    assert compile_cache.key(["cc", "-O2", *command[2:]], "/x/lib.so", tmp_path, b"gcc") != base
    assert compile_cache.key(command, "/x/lib.so", tmp_path, b"clang") != base
    (tmp_path / "model.c").write_text("int f(void) { return 2; }\n")
    assert compile_cache.key(command, "/x/lib.so", tmp_path, b"gcc") != base
