"""The golden IR / plan / decision log / generated C of the reference models must not change
unnoticed: any difference fails with a readable unified diff (`make golden` accepts it)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from golden_tool import GOLDEN, REFERENCE_BUILDS, golden_dumps


@pytest.mark.parametrize("name", sorted(REFERENCE_BUILDS))
def test_golden_dumps_match(name: str, tmp_path: Path) -> None:
    dumps = golden_dumps(name, tmp_path / f"{name}.pyc")
    problems = []
    for relative, fresh in dumps.items():
        golden_path = GOLDEN / name / relative.replace("src/", "")
        expected = golden_path.read_text() if golden_path.exists() else ""
        if fresh != expected:
            diff = difflib.unified_diff(expected.splitlines(), fresh.splitlines(),
                                        f"golden/{name}/{golden_path.name}", "fresh build",
                                        lineterm="", n=2)
            problems.append("\n".join(list(diff)[:80]))
    assert not problems, "golden dumps changed (run `make golden` if intended):\n" + \
        "\n\n".join(problems)
