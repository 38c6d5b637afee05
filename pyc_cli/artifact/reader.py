"""Opening an artifact: manifest checks and hash verification before any native code loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PycError
from ..ir.graph import Graph
from ..ir.text import blob_key, parse_graph
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


def load_graph(artifact: Path, manifest: dict[str, Any]) -> Graph:
    """The IR after passes, with large constants read back from the weights file."""
    weights = (artifact / manifest["weights"]["file"]).read_bytes()
    text = (artifact / "model.ir").read_text()
    shell = parse_graph(text, _BlobProbe())
    blobs = {}
    for name, offset in manifest["weights"]["layout"].items():
        ttype = shell.types[name]
        array = np.frombuffer(weights, ttype.dtype.numpy, ttype.numel, offset).reshape(ttype.shape)
        blobs[blob_key(array)] = array
    return parse_graph(text, blobs)


class _BlobProbe(dict):
    """Answers any blob lookup with an empty array (first parse only learns the types)."""

    def __getitem__(self, key: str) -> np.ndarray:
        return np.empty(0)

    def get(self, key, default=None):  # noqa: ANN001, ANN201
        return np.empty(0)
