"""Test helper modules are imported by bare name (pytest's default import mode puts each test
directory on sys.path), so two files of one name in different directories shadow each other:
whichever a worker imports first wins, and the other directory's tests fail with an ImportError
that depends on test order. Every Python file under tests/ must have its own name."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent


def test_no_two_test_modules_share_a_name() -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in sorted(TESTS_DIR.rglob("*.py")):
        if path.name != "__init__.py" and path.name != "conftest.py":
            by_name[path.name].append(str(path.relative_to(TESTS_DIR)))
    clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not clashes, f"test modules sharing a name (rename one of each): {clashes}"
