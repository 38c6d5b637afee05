"""Where the Jinja templates and the C runtime live (inside the installed wheel, or in a checkout),
and the one Jinja environment that renders them all: C and CUDA sources (not escaped: a name from a
model reaches them only through `c_string`), the explain report and the memory timeline (HTML and
SVG, under report/: autoescaped)."""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import jinja2

from .units import format_size

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parent


def _find(name: str) -> Path:
    for candidate in (_PACKAGE / "_data" / name, _REPO / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"PyC installation is missing its {name}/ directory")


def templates_dir() -> Path:
    return _find("codegen_templates")


def runtime_dir() -> Path:
    return _find("runtime_c")


def c_string(text: str) -> str:
    """A C string literal holding `text` (UTF-8); anything but plain characters is octal-escaped,
    so no model-provided name can end the literal, open a comment or inject a directive."""
    safe = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-/ ")
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03o}" for b in text.encode()) + '"'


def mentioned_in(word: str, code: str) -> bool:
    """Whether C `code` uses the identifier `word` (a kernel marks the operands it never reads
    `(void)`: shape-like inputs are compiled in, and -Wextra warns of unused parameters)."""
    return re.search(rf"\b{re.escape(word)}\b", code) is not None


def _escaped(template_name: str | None) -> bool:
    return template_name is not None and template_name.startswith("report/")


@functools.lru_cache(maxsize=1)
def template_env() -> jinja2.Environment:
    """One environment per process: compiled templates are reused across builds (Jinja still
    reloads a template whose file changed)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=_escaped,
    )
    env.filters["c_string"] = c_string
    env.filters["product"] = lambda values: math.prod(values)
    env.filters["size"] = format_size
    env.tests["mentioned_in"] = mentioned_in
    return env
