"""The C compiler: found in one place for every site that compiles (the CPU target's library
build, the JIT's objects, the per-node debug build, the CPU probes), and described for the
manifest's toolchain record.

The compiler is `CC` when set (a program name looked up on PATH, or a path to one), else the
first of cc, gcc, clang on PATH. The record holds what identifies it without naming this
machine's directories: the program's file name, its family (from the macros it predefines)
and the first line of `--version`.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ...errors import PycError

ENV = "CC"
CANDIDATES = ("cc", "gcc", "clang")


@dataclass(frozen=True)
class Compiler:
    path: str  # what runs: an absolute path
    name: str  # its file name (`cc`, `gcc-12`, `clang`)
    family: str  # gcc, clang or unknown
    version: str  # the first line of `--version`

    def record(self) -> dict[str, str]:
        """The manifest's part: no absolute path, nothing that changes between builds."""
        return {"compiler": self.name, "compiler_family": self.family,
                "compiler_version": self.version}


def find_compiler() -> str:
    """The compiler's absolute path: `CC`, else cc / gcc / clang on PATH (PYC-E026 if none)."""
    wanted = os.environ.get(ENV, "").strip()
    if wanted:
        found = shutil.which(wanted)
        if not found:
            raise PycError("E026", f"CC={wanted!r} is not an executable C compiler", where=ENV,
                           hint="set CC to the name of a C compiler on PATH (gcc, clang) or the "
                           "path to one, without arguments; or unset CC to use cc, gcc or clang")
        return str(Path(found).absolute())
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return str(Path(found).absolute())
    raise PycError("E026", "no C compiler found: CC is not set and none of "
                   f"{', '.join(CANDIDATES)} is on PATH",
                   hint="install one (e.g. `apt-get install gcc` or `apt-get install clang`), "
                   "or set CC to a C compiler")


def current() -> Compiler:
    """The compiler builds use now, described (once per compiler per process)."""
    return describe(find_compiler())


@functools.lru_cache(maxsize=8)
def describe(path: str) -> Compiler:
    name = Path(path).name
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True,
                                 check=False).stdout.splitlines()
        macros = subprocess.run([path, "-dM", "-E", "-x", "c", os.devnull], capture_output=True,
                                text=True, check=False).stdout
    except OSError as error:
        raise PycError("E026", f"the C compiler {name} cannot be run: {error.strerror}",
                       where=path, hint="set CC to a working C compiler (gcc, clang)") from None
    first = version[0].strip() if version else ""
    # a compiler run by path may echo it; the record names no directory of this machine
    first = first.replace(str(Path(path).parent) + os.sep, "")
    return Compiler(path, name, _family(macros), first)


def _family(macros: str) -> str:
    defined = {line.split()[1] for line in macros.splitlines() if line.startswith("#define ")}
    if "__clang__" in defined:
        return "clang"
    return "gcc" if "__GNUC__" in defined else "unknown"
