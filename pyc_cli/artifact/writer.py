"""Writing an artifact atomically: build everything in a temporary sibling directory, then rename."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import PycError
from .manifest import FORMAT, MANIFEST


@contextmanager
def staging_directory(out_dir: Path) -> Iterator[Path]:
    """Yield an empty temporary directory next to `out_dir`; on success it replaces `out_dir`,
    on failure it is removed, so no half-written artifact is ever visible."""
    try:
        out_dir = out_dir.resolve()
        _refuse_foreign_directory(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except (OSError, RuntimeError) as exc:  # RuntimeError: Path.resolve on a symlink loop
        raise _unwritable(out_dir, exc) from exc
    try:
        yield staging
        _replace(staging, out_dir)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _unwritable(out_dir, exc) from exc
        raise


def _unwritable(out_dir: Path, exc: Exception) -> PycError:
    reason = exc.strerror if isinstance(exc, OSError) else None
    return PycError("E022", f"cannot write the artifact to {out_dir}: {reason or exc}",
                    where=str(out_dir), hint="choose another -o directory")


def _refuse_foreign_directory(out_dir: Path) -> None:
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    manifest = out_dir / MANIFEST
    is_artifact = False
    if manifest.is_file():
        try:
            is_artifact = json.loads(manifest.read_text()).get("format") == FORMAT
        except (OSError, ValueError, AttributeError, RecursionError):
            is_artifact = False
    if not out_dir.is_dir() or (any(out_dir.iterdir()) and not is_artifact):
        raise PycError("E021", f"{out_dir} exists and is not a PyC artifact", where=str(out_dir),
                       hint="choose another -o directory or remove it")


def _replace(staging: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
    staging.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def write_bytes(root: Path, relative: str, data: bytes) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


