"""What an existing artifact at the output path was built from, so that replacing it is never
silent: the same model is replaced with a note, another model's artifact only with `force`."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import PycError
from .manifest import FORMAT, MANIFEST, file_sha256


def previous_source(out_dir: Path) -> tuple[str, str] | None:
    """(model file name, sha256) recorded by the artifact at `out_dir`; None when there is no
    artifact there. The manifest is untrusted: unreadable fields read as an unknown model."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    model = manifest.get("model")
    model = model if isinstance(model, dict) else {}
    name, sha256 = model.get("file"), model.get("sha256")
    return (name if isinstance(name, str) else "an unknown model",
            sha256 if isinstance(sha256, str) else "")


def replacement_note(out_dir: Path, model_path: Path, force: bool) -> str | None:
    """A line saying which artifact a build into `out_dir` replaces (None: nothing there);
    PYC-E025 when it belongs to a different source model and `force` is not set."""
    previous = previous_source(out_dir)
    if previous is None:
        return None
    name, sha256 = previous
    try:  # a missing or unreadable model (or a FIFO, which would block the hash) is left to
        # the importer, which reports it (PYC-E001) before anything is written
        if not model_path.is_file():
            return None
        same = sha256 == file_sha256(model_path)
    except OSError:
        return None
    if same:
        return f"replacing the earlier artifact of {name} in {out_dir}"
    recorded = f"{name}, sha256 {sha256[:12]}" if sha256 else name
    if not force:
        raise PycError("E025", f"{out_dir} holds the artifact of another model ({recorded}); "
                       f"refusing to replace it with the artifact of {model_path.name}",
                       where=str(out_dir), hint="choose another -o directory, or pass --force "
                       "to replace it")
    return f"replacing the artifact of another model ({recorded}) in {out_dir} (--force)"
