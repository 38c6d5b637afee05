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
from .manifest import MANIFEST, dumps, fallback_dir
from .reader import fallback_targets, is_fallback_file, read_manifest, runtime_files, verify_files
from .writer import output_lock


def explain_only(manifest: dict[str, Any],
                 fallbacks: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """The listed files a slim artifact leaves out. A fallback target's files (targets/NAME/)
    are judged by its own manifest, given in `fallbacks` by target name (without it they are
    kept: `pyc build --slim` builds the fallbacks slim already)."""
    keep = {*runtime_files(manifest), INPUT_RANGES_FILE}
    dropped = sorted(name for name in manifest["files"]
                     if name not in keep and not (name.startswith("src/") and name.endswith(".h"))
                     and not is_fallback_file(name))
    for target, own in (fallbacks or {}).items():
        dropped += [f"{fallback_dir(target)}/{name}" for name in explain_only(own)]
    return dropped


def slim_manifest(manifest: dict[str, Any],
                  fallbacks: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    slim = copy.deepcopy(manifest)
    dropped = set(explain_only(manifest, fallbacks))
    slim["files"] = {name: digest for name, digest in manifest["files"].items() if name not in dropped}
    slim["model"]["kept_copy"] = None
    slim["slim"] = True
    return slim


def strip_files(root: Path, manifest: dict[str, Any],
                fallbacks: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Delete the explain-only files under `root` (and directories left empty); return the
    manifest that describes what remains."""
    dropped = explain_only(manifest, fallbacks)
    for name in dropped:
        (root / name).unlink(missing_ok=True)
    for directory in sorted({p for name in dropped
                             for p in (root / name).parents if p != root and root in p.parents},
                            key=lambda p: len(p.parts), reverse=True):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return slim_manifest(manifest, fallbacks)


def strip_artifact(artifact: Path) -> list[str]:
    """`pyc strip`: verify the artifact, delete the explain-only files, then replace the
    manifest with the slim one (a kill in between leaves listed explain files absent, which
    `pyc run` accepts and a second strip completes). A fallback target's explain files go too;
    its own manifest stays as built (listing them absent, as after deleting them by hand), so
    the hash the artifact's manifest holds for it stays true. Returns what was removed."""
    read_manifest(artifact)  # not an artifact: E030 before anything is created
    with output_lock(artifact):
        manifest = read_manifest(artifact)
        verify_files(artifact, manifest)
        fallbacks = {name: read_manifest(artifact / fallback_dir(name))
                     for name in fallback_targets(manifest)}
        removed = [name for name in explain_only(manifest, fallbacks) if (artifact / name).exists()]
        slim = strip_files_checked(artifact, manifest, fallbacks)
        if slim != manifest:
            _replace_manifest(artifact, slim)
    return removed


def strip_files_checked(artifact: Path, manifest: dict[str, Any],
                        fallbacks: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    try:
        return strip_files(artifact, manifest, fallbacks)
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
