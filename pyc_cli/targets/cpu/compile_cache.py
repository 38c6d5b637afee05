"""An opt-in cache of compiled libraries, keyed by content: `PYC_COMPILE_CACHE=DIR`.

The key hashes everything the compiler reads: its command line (output path left out), every
source and header in the source directory, the compiler's version and the target options that
`-march` resolves to on this machine. Builds are deterministic, so the same key means the same
library bytes; the fuzzer uses it because the three memory modes of a small graph often emit
identical C. Entries are written to a temporary name and renamed, so a reader never sees half.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ENV = "PYC_COMPILE_CACHE"


def cache_dir() -> Path | None:
    value = os.environ.get(ENV, "")
    return Path(value) if value else None


@functools.lru_cache(maxsize=8)
def compiler_identity(compiler: str, march: str) -> bytes:
    """The compiler's version and the target options -march resolves to here."""
    version = subprocess.run([compiler, "--version"], capture_output=True, check=False).stdout
    target = subprocess.run([compiler, f"-march={march}", "-Q", "--help=target"],
                            capture_output=True, check=False).stdout
    return version + b"\0" + target


def key(command: list[str], output: str, src_dir: Path, identity: bytes) -> str:
    digest = hashlib.sha256(identity)
    for arg in command:
        digest.update(b"\0" + (b"<output>" if arg == output else arg.encode()))
    for path in sorted(src_dir.iterdir()):
        if path.suffix in (".c", ".h") and path.is_file():
            digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fetch(entry: str, library: Path) -> bool:
    root = cache_dir()
    cached = root / entry if root else None
    if cached is None or not cached.is_file():
        return False
    shutil.copyfile(cached, library)
    return True


def store(entry: str, library: Path) -> None:
    root = cache_dir()
    if root is None:
        return
    root.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=root, prefix=".tmp-")
    os.close(handle)
    shutil.copyfile(library, temporary)
    os.replace(temporary, root / entry)
