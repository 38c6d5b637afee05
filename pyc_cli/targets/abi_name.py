"""The model's C name: the prefix of every symbol its library exports (`NAME_create`,
`NAME_run`, ...) and of its SONAME (`libNAME.so`), so that one program can link many models."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import PycError

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
MAX_LENGTH = 64
# the runtime exports pyc_status_string: a model named `pyc` would export it twice
RESERVED_PREFIX = "pyc"


def name_problem(name: str) -> str:
    """Why `name` cannot prefix C symbols, or "" when it can."""
    if not _IDENTIFIER.fullmatch(name):
        return "it must be a C identifier: an ASCII letter, then letters, digits or '_'"
    if len(name) > MAX_LENGTH:
        return f"it is longer than {MAX_LENGTH} characters"
    if name == RESERVED_PREFIX or name.startswith(RESERVED_PREFIX + "_"):
        return f"'{RESERVED_PREFIX}' and names starting with '{RESERVED_PREFIX}_' are the runtime's"
    return ""


def check_name(name: str) -> str:
    """`name` if it can prefix the model's symbols, else PYC-E013."""
    problem = name_problem(name)
    if problem:
        raise PycError("E013", f"--name {name!r} cannot name the model's C symbols: {problem}",
                       where="pyc build --name",
                       hint=f"use e.g. --name {default_name(Path(name or 'model'))}")
    return name


def default_name(model_path: Path) -> str:
    """The model file's stem made a valid name: other characters become '_', a name that does
    not start with a letter (or is reserved) gets 'm_' in front; deterministic."""
    text = re.sub(r"[^A-Za-z0-9_]", "_", model_path.stem)[:MAX_LENGTH - 2] or "model"
    return text if not name_problem(text) else f"m_{text}"


def soname(name: str) -> str:
    return f"lib{name}.so"
