"""The CUDA source and launch plan of the reference transformer must not change unnoticed
(`python tests/golden_tool.py --write` accepts a change). Rendering needs no NVRTC."""

from __future__ import annotations

import difflib

import pytest
from golden_tool import CUDA_BUILDS, GOLDEN, cuda_golden_dumps


@pytest.mark.parametrize("name", sorted(CUDA_BUILDS))
def test_cuda_golden_sources_match(name: str) -> None:
    problems = []
    for relative, fresh in cuda_golden_dumps(name).items():
        path = GOLDEN / f"cuda_{name}" / relative
        expected = path.read_text() if path.exists() else ""
        if fresh != expected:
            diff = difflib.unified_diff(expected.splitlines(), fresh.splitlines(),
                                        f"golden/cuda_{name}/{relative}", "fresh", lineterm="", n=2)
            problems.append("\n".join(list(diff)[:80]))
    assert not problems, "CUDA golden sources changed (run `python tests/golden_tool.py " \
        "--write` if intended):\n" + "\n\n".join(problems)
