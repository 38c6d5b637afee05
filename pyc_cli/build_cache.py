"""The build cache: a repeated `pyc build` of the same model with the same flags, toolchain and
PyC is a copy of the artifact built the first time (issue #15, reliability rail R2).

Builds are deterministic, so an artifact is a function of its inputs; the cache key hashes all
of them:
- the model file and every external data file it references (their bytes);
- the build's options (mode, input shapes, memory budget, targets, CPU and features, GPU arch
  and precision, threads, name, slim, keep-source);
- each target's toolchain (compiler path and version, flags, NVRTC version) and CPU record
  (the `-march` it resolved to and the features the code may use: `native` on another CPU is
  another key);
- the tuning database file's bytes (kernel choices come from it);
- this PyC: its version and a digest of its code, templates and C runtime.

Entries live under `$PYC_BUILD_CACHE` (`off` disables it), else `$XDG_CACHE_HOME/pyc/builds`,
else `~/.cache/pyc/builds`, one directory per key: the artifact as built, the IR and memory plan
the build summary is read from, and the build's notes. An entry is written to a temporary name
and renamed (a reader never sees half of one), checked against its own manifest's hashes before
use (a damaged entry is removed and the model rebuilt), and the least recently used entries are
removed past MAX_BYTES. `pyc build --tune` (it measures) and `--dump-ir-after` bypass the cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .artifact.reader import read_manifest, verify_files
from .artifact.source import external_data_files
from .errors import PycError
from .targets.base import Target

ENV = "PYC_BUILD_CACHE"
MAX_BYTES = 2 * 1024**3  # the cache's size before its least recently used entries go
ARTIFACT, SUMMARY = "artifact", "summary.json"
PACKAGE = Path(__file__).resolve().parent
CODE_ROOTS = (PACKAGE, PACKAGE.parent / "codegen_templates", PACKAGE.parent / "runtime_c")


def cache_root() -> Path | None:
    """The cache directory, or None when PYC_BUILD_CACHE is `off`."""
    value = os.environ.get(ENV, "")
    if value.strip().lower() in ("off", "0", "no", "false"):
        return None
    if value:
        return Path(value)
    base = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(base) if base else Path.home() / ".cache") / "pyc" / "builds"


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """PyC's version and the bytes of its Python code, templates and C runtime."""
    digest = hashlib.sha256(__version__.encode())
    for root in CODE_ROOTS:
        for path in sorted(p for p in root.rglob("*") if p.is_file()
                           and "__pycache__" not in p.parts and p.suffix != ".pyc"):
            digest.update(b"\0" + path.relative_to(root.parent).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _model_digest(model_path: Path) -> str | None:
    """The model's bytes and its external data files'; None when the model cannot be read or
    names data outside its directory (the build itself then reports why)."""
    try:
        digest = hashlib.sha256(model_path.read_bytes())
        root = model_path.parent.resolve()
        for location in external_data_files(model_path):
            path = (model_path.parent / location).resolve()
            if root not in path.parents or not path.is_file():
                return None
            digest.update(b"\0" + location.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()
    except Exception:  # noqa: BLE001 (an unreadable or malformed model is the importer's to report)
        return None


def build_key(model_path: Path, options: dict[str, Any], backends: list[Target],
              cpu_records: list[dict[str, Any]], tuning_db: Path | None) -> str | None:
    """The cache key of a build (None: this build cannot be cached, see _model_digest);
    `cpu_records` are the targets' CPU records as the build probed them."""
    model = _model_digest(model_path)
    if model is None:
        return None
    tuning = b""
    if tuning_db is not None and tuning_db.is_file():
        tuning = tuning_db.read_bytes()
    record = {"model": model, "options": options, "code": code_digest(),
              "tuning_db": hashlib.sha256(tuning).hexdigest(),
              "targets": [{"name": t.name, "toolchain": t.toolchain(), "cpu": record}
                          for t, record in zip(backends, cpu_records)]}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class CachedBuild:
    """A cache entry: the artifact as built, and what the build summary reads."""

    artifact: Path
    model_ir: str
    memory_plan: dict[str, Any]
    notes: list[str]
    targets: list[str]


def lookup(key: str) -> CachedBuild | None:
    """The entry of `key` when the cache holds it intact (its artifact's files match its
    manifest's hashes); a damaged entry is removed."""
    root = cache_root()
    if root is None:
        return None
    entry = root / key
    try:
        summary = json.loads((entry / SUMMARY).read_text(encoding="utf-8"))
        artifact = entry / ARTIFACT
        verify_files(artifact, read_manifest(artifact))
        os.utime(entry)  # recently used: pruned last
        return CachedBuild(artifact, summary["model_ir"], summary["memory_plan"],
                           list(summary["notes"]), list(summary["targets"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, PycError):
        shutil.rmtree(entry, ignore_errors=True)
        return None


def store(key: str, artifact: Path, model_ir: str, memory_plan: dict[str, Any],
          notes: list[str], targets: list[str]) -> bool:
    """Keep a copy of a finished artifact under `key` (best effort: a cache that cannot be
    written never fails the build); whether the cache holds it now."""
    root = cache_root()
    if root is None:
        return False
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", dir=root))
        shutil.copytree(artifact, staging / ARTIFACT, symlinks=True)
        (staging / SUMMARY).write_text(json.dumps(
            {"model_ir": model_ir, "memory_plan": memory_plan, "notes": notes,
             "targets": targets}, sort_keys=True), encoding="utf-8")
        try:
            staging.rename(root / key)
        except OSError:  # another build stored it first
            shutil.rmtree(staging, ignore_errors=True)
        prune(root)
    except OSError:
        return False
    return (root / key).is_dir()


def prune(root: Path, limit: int = MAX_BYTES) -> None:
    """Remove the least recently used entries until the cache holds at most `limit` bytes."""
    entries = []
    for entry in root.iterdir():
        if entry.is_dir() and not entry.name.startswith("."):
            size = sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
            entries.append((entry.stat().st_mtime, entry.name, size, entry))
    total = sum(size for _, _, size, _ in entries)
    for _, _, size, entry in sorted(entries):
        if total <= limit:
            break
        shutil.rmtree(entry, ignore_errors=True)
        total -= size
