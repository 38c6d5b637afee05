"""Where the Jinja templates and the C runtime live: inside the installed wheel, or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent
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
