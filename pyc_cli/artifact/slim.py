"""Slim artifacts: only what running needs (`pyc build --slim`, `pyc strip ARTIFACT`).

Running reads manifest.json, the library and the weights. Explaining also reads model.ir, the
memory plan and timeline, decisions.jsonl, the generated C and the kept source model: a slim
artifact drops those, keeping the C headers (src/*.h, a few KiB) that a C program compiles
against and input_ranges.json (what `pyc run --random-inputs` draws integers from, and how a
run names the input behind an index out of range, PYC-E048). The manifest then lists only the
files kept and says `"slim": true`, so `pyc explain` can say why it cannot explain it;
stripping a full artifact gives the bytes `--slim` builds.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from ..errors import PycError
from ..input_ranges import INPUT_RANGES_FILE
from .manifest import MANIFEST, dumps
from .reader import is_fallback_file, read_manifest, runtime_files, verify_files
from .writer import output_lock


def explain_only(manifest: dict[str, Any]) -> list[str]:
    """The listed files a slim artifact leaves out (a fallback target's artifact is slimmed
    by its own manifest: `pyc build --slim` builds it slim)."""
    keep = {*runtime_files(manifest), INPUT_RANGES_FILE}
    return sorted(name for name in manifest["files"]
                  if name not in keep and not (name.startswith("src/") and name.endswith(".h"))
                  and not is_fallback_file(name))


def slim_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    slim = copy.deepcopy(manifest)
    dropped = set(explain_only(manifest))
    slim["files"] = {name: digest for name, digest in manifest["files"].items() if name not in dropped}
    slim["model"]["kept_copy"] = None
    slim["slim"] = True
    return slim


def strip_files(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Delete the explain-only files under `root` (and directories left empty); return the
    manifest that describes what remains."""
    for name in explain_only(manifest):
        (root / name).unlink(missing_ok=True)
    for directory in sorted({p for name in explain_only(manifest)
                             for p in (root / name).parents if p != root and root in p.parents},
                            key=lambda p: len(p.parts), reverse=True):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return slim_manifest(manifest)


def strip_artifact(artifact: Path) -> list[str]:
    """`pyc strip`: verify the artifact, delete the explain-only files, then replace the
    manifest with the slim one (a kill in between leaves listed explain files absent, which
    `pyc run` accepts and a second strip completes). Returns what was removed."""
    read_manifest(artifact)  # not an artifact: E030 before anything is created
    with output_lock(artifact):
        manifest = read_manifest(artifact)
        verify_files(artifact, manifest)
        removed = [name for name in explain_only(manifest) if (artifact / name).exists()]
        slim = strip_files_checked(artifact, manifest)
        if slim != manifest:
            _replace_manifest(artifact, slim)
    return removed


def strip_files_checked(artifact: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    try:
        return strip_files(artifact, manifest)
    except OSError as exc:
        raise PycError("E022", f"cannot strip {artifact}: {exc.strerror or exc}",
                       where=str(artifact), hint="check the directory's permissions") from exc


def _replace_manifest(artifact: Path, manifest: dict[str, Any]) -> None:
    temporary = artifact / f".{MANIFEST}.tmp"
    try:
        temporary.write_text(dumps(manifest), encoding="utf-8", newline="\n")
        os.replace(temporary, artifact / MANIFEST)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise PycError("E022", f"cannot write {MANIFEST} of {artifact}: {exc.strerror or exc}",
                       where=str(artifact), hint="check the directory's permissions") from exc
