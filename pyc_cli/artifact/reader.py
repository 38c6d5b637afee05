"""Opening an artifact: manifest checks and hash verification before any native code loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import PycError
from .manifest import FORMAT, FORMAT_VERSION, MANIFEST, file_sha256


def read_manifest(artifact: Path) -> dict[str, Any]:
    path = artifact / MANIFEST
    if not path.is_file():
        raise PycError("E030", f"{artifact} is not a PyC artifact (no {MANIFEST})",
                       where=str(artifact), hint="pass a directory made by `pyc build`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PycError("E030", f"{MANIFEST} is unreadable ({exc})", where=str(path),
                       hint="rebuild the artifact") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PycError("E030", f"{MANIFEST} does not describe a PyC artifact", where=str(path),
                       hint="rebuild the artifact")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise PycError("E032", f"artifact format version {manifest.get('format_version')} is not "
                       f"{FORMAT_VERSION}", where=str(path), hint="rebuild it with this PyC")
    return manifest


def verify_files(artifact: Path, manifest: dict[str, Any]) -> None:
    """Every listed file must exist with its recorded sha256 (checked before native code loads)."""
    listed: dict[str, str] = manifest.get("files", {})
    for relative, expected in sorted(listed.items()):
        path = artifact / relative
        if not path.is_file():
            raise PycError("E030", f"artifact file {relative} is missing", where=str(artifact),
                           hint="rebuild the artifact")
        if file_sha256(path) != expected:
            raise PycError("E031", f"{relative} does not match its sha256 in {MANIFEST}",
                           where=str(path), hint="the artifact was modified; rebuild it")
