"""Writing an artifact: locked, staged, and swapped in atomically.

A build holds `.NAME.lock` beside the output (fcntl.flock) from start to end: a second build into
the same `-o` is refused (PYC-E034, naming the first) rather than silently replacing its result.
The lock file is also a journal: it names the staging directory `.NAME.<16 hex digits>` before that
directory exists, so the next build removes what a killed one left, and nothing else.
Everything is written into the staging directory, which then replaces the output: atomically
with renameat2(RENAME_EXCHANGE) where the kernel and file system offer it, else by two renames
(output -> `.NAME.old`, staging -> output) that the next build or run completes or undoes.
Directories and files are created with the default modes, so they follow the umask.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import PycError
from .manifest import FORMAT, MANIFEST


def lock_path(out_dir: Path) -> Path:
    return out_dir.with_name(f".{out_dir.name}.lock")


def old_path(out_dir: Path) -> Path:
    return out_dir.with_name(f".{out_dir.name}.old")


class OutputLock:
    """An exclusive flock on `.NAME.lock`, whose content records the holder and its staging."""

    def __init__(self, out_dir: Path, fd: int) -> None:
        self.out_dir, self.path, self.fd = out_dir, lock_path(out_dir), fd

    def journal(self) -> dict[str, Any]:
        try:
            data = json.loads(os.pread(self.fd, 4096, 0).decode())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def record(self, staging: str | None) -> None:
        text = json.dumps({"pid": os.getpid(), "staging": staging}).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text, 0)
        os.fsync(self.fd)


@contextmanager
def output_lock(out_dir: Path) -> Iterator[OutputLock]:
    """Hold the output's lock (PYC-E034 when another build holds it); on entry, finish or undo
    what an interrupted build left: a half-done replacement, its staging directory."""
    out_dir = _resolved(out_dir)
    created: list[Path] = []
    try:
        created = [p for p in (out_dir.parent, *out_dir.parent.parents) if not p.exists()]
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        fd = _acquire(lock_path(out_dir), out_dir)
    except OSError as exc:
        _remove_empty(created)
        raise _unwritable(out_dir, exc) from exc
    lock = OutputLock(out_dir, fd)
    try:
        try:
            _clean_after_interrupted(lock)
        except OSError as exc:
            raise _unwritable(out_dir, exc) from exc
        yield lock
    finally:
        lock.path.unlink(missing_ok=True)  # while still held: see _acquire
        os.close(fd)
        if not out_dir.exists():  # a failed build leaves no directories it made for -o
            _remove_empty(created)


def _remove_empty(directories: list[Path]) -> None:
    for directory in directories:  # deepest first
        try:
            directory.rmdir()
        except OSError:
            return


def _acquire(path: Path, out_dir: Path) -> int:
    """flock the file at `path`; retried when it was replaced between open and flock (the
    holder unlinks it on exit, so a waiter may have locked a file no longer in place)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = OutputLock(out_dir, fd).journal().get("pid", "unknown")
            os.close(fd)
            raise PycError("E034", f"another build (process {holder}) is writing {out_dir}",
                           where=str(path), hint="wait for it to finish, or choose another -o "
                           "directory") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _clean_after_interrupted(lock: OutputLock) -> None:
    """With the lock held no build is running for this output: a staging directory the journal
    names is a killed build's, and `.NAME.old` is the old artifact of an unfinished swap."""
    staging = lock.journal().get("staging")
    if isinstance(staging, str) and _is_staging_name(staging, lock.out_dir):
        shutil.rmtree(lock.out_dir.parent / staging, ignore_errors=True)
    recover_interrupted_swap(lock.out_dir)
    lock.record(None)


def _is_staging_name(name: str, out_dir: Path) -> bool:
    prefix = f".{out_dir.name}."
    token = name[len(prefix):]
    return name.startswith(prefix) and len(token) == 16 and all(c in "0123456789abcdef" for c in token)


def recover_interrupted_swap(out_dir: Path) -> None:
    """Killed between the two renames: the output is missing and the old artifact waits in
    `.NAME.old` (put it back); killed after them: `.NAME.old` is left over (remove it)."""
    old = old_path(out_dir)
    if not old.is_dir() or old.is_symlink():
        return
    if out_dir.exists() or out_dir.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(old, out_dir)


def restore_if_interrupted(artifact: Path) -> None:
    """For `pyc run` / `load` of a missing artifact: put back the one an interrupted build
    left in `.NAME.old` (under the output lock; PYC-E034 while a build holds it)."""
    try:
        if artifact.exists() or not old_path(artifact).is_dir():
            return
    except OSError:  # a name too long, a path through a file: read_manifest says so
        return
    try:
        with output_lock(artifact):
            pass
    except PycError as exc:
        if exc.code != "E022":
            raise
        raise PycError("E030", f"{artifact} is missing: a build replacing it was interrupted, and "
                       f"the previous artifact in {old_path(artifact).name} cannot be moved back "
                       "(the directory is not writable)", where=str(artifact.parent),
                       hint=f"rename {old_path(artifact).name} to {artifact.name}, or rebuild") from exc


@contextmanager
def staging_directory(out_dir: Path, lock: OutputLock) -> Iterator[Path]:
    """Yield an empty directory next to `out_dir` (recorded in the lock's journal first); on
    success it replaces `out_dir`, on failure it is removed, so no half-written artifact is
    ever visible."""
    out_dir = lock.out_dir
    _refuse_foreign_directory(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.{secrets.token_hex(8)}")
    try:
        lock.record(staging.name)
        staging.mkdir()  # mode 0o777 & ~umask, unlike tempfile.mkdtemp's 0o700
    except OSError as exc:
        raise _unwritable(out_dir, exc) from exc
    try:
        yield staging
        _replace(staging, out_dir)
        lock.record(None)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _unwritable(out_dir, exc) from exc
        raise


def _resolved(out_dir: Path) -> Path:
    try:
        return out_dir.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: Path.resolve on a symlink loop
        raise _unwritable(out_dir, exc) from exc


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
    """Swap atomically when possible (the staging name then holds the old artifact, removed
    next); else rename the old one aside first (see recover_interrupted_swap)."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    if exchange(staging, out_dir):
        shutil.rmtree(staging, ignore_errors=True)
        return
    old = old_path(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    os.rename(out_dir, old)
    os.rename(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where the C library, the kernel or
    the file system does not offer it."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def write_text(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def write_bytes(root: Path, relative: str, data: bytes) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
