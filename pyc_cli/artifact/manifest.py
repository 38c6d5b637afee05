"""manifest.json: what the artifact is, how it was built, and the sha256 of every file in it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

FORMAT = "pyc-artifact"
FORMAT_VERSION = 4  # 2: the target CPU is recorded (`cpu`, checked before loading); symbols
# prefixed by symbol_prefix; execution contexts. 3: model.ir keeps compiler facts (kernel,
# fusions, in-place operands) in ann{...}, apart from ONNX attributes. 4: weights may be stored
# through a build-time transform (`weights.transformed`: Winograd's U), which a reader of format
# 3 would take for the raw weights
MANIFEST = "manifest.json"
# an artifact of several targets (`pyc build --target cuda,cpu`): the first target's artifact is
# the directory itself, each next one a complete artifact of its own in targets/NAME/, whose
# files (its manifest included) the top manifest hashes too; "targets" lists them in order
FALLBACKS_DIR = "targets"


def fallback_dir(target: str) -> str:
    """Where a fallback target's artifact lives inside the artifact."""
    return f"{FALLBACKS_DIR}/{target}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` except its manifest (a fallback target's own manifest
    is hashed), keyed by POSIX relative path."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p != root / MANIFEST)
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in files}


def dumps(data: Any) -> str:
    """Canonical JSON: sorted keys, fixed separators, trailing newline (byte-stable)."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=True) + "\n"
