"""The element-type codes of the ABI are defined once (pyc_cli/abi.py); the C runtime's enum,
which C callers of a model read, says the same numbers."""

from __future__ import annotations

import re

from pyc_cli.abi import DTYPE_CODES
from pyc_cli.templating import runtime_dir


def test_runtime_header_dtype_enum_matches_the_abi() -> None:
    header = (runtime_dir() / "pyc_runtime.h").read_text()
    found = {name.lower(): int(code) for name, code in re.findall(r"PYC_DTYPE_(\w+) = (\d+)", header)}
    assert found == {dtype.value: code for dtype, code in DTYPE_CODES.items()}
