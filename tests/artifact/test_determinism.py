"""The same model, flags and toolchain give a byte-identical artifact (library included),
regardless of the output path, the working directory or Python's hash seed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REFERENCE_MODELS


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _build_in_subprocess(model: Path, out: Path, shapes: list[str], seed: str, cwd: Path) -> None:
    args = [sys.executable, "-m", "pyc_cli.cli.main", "build", str(model), "-o", str(out)]
    for shape in shapes:
        args += ["--input-shape", shape]
    env = dict(os.environ, PYTHONHASHSEED=seed)
    subprocess.run(args, check=True, env=env, cwd=cwd, capture_output=True)


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    ref = REFERENCE_MODELS["transformer"]
    shapes = [f"{k}={','.join(map(str, v))}" for k, v in ref.shapes.items()]
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "deeper").mkdir(parents=True)
    _build_in_subprocess(ref.path, tmp_path / "a" / "one.pyc", shapes, "1", tmp_path / "a")
    _build_in_subprocess(ref.path, tmp_path / "b" / "deeper" / "two.pyc", shapes, "987",
                         tmp_path / "b")
    first = _tree(tmp_path / "a" / "one.pyc")
    second = _tree(tmp_path / "b" / "deeper" / "two.pyc")
    assert sorted(first) == sorted(second)
    different = [name for name in first if first[name] != second[name]]
    assert not different, f"files differ between identical builds: {different}"
    assert "libmodel.so" in first
    for name, data in first.items():
        assert str(tmp_path).encode() not in data, f"{name} embeds a build path"
