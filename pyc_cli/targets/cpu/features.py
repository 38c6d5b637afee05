"""Which CPU an artifact's code needs, and whether the CPU loading it has that.

At build, `--cpu NAME` (a `-march` value; `native` by default, `portable` for the baseline
below) and `--cpu-features +avx2,-avx512f` (added / removed `-m` options) choose the target. The
compiler's predefined macros (`cc -march=X -dM -E`) then say exactly which instruction-set
extensions it may use, and the manifest records them under the names Linux's /proc/cpuinfo uses.
At load, before any native code is mapped, the running CPU's flags must include all of them, or
the load is refused (PYC-E033) naming what is missing.

Only the extensions a C compiler emits on its own from plain C are recorded (SSE..SSE4.2, AVX,
AVX2, FMA, F16C, BMI, LZCNT, POPCNT, MOVBE, AVX-512, AVX-VNNI, and AMD's SSE4A, FMA4, XOP,
TBM): the generated code's only intrinsics are the GEMM micro-kernels' AVX2 / FMA / AVX-512F
ones (targets/cpu/gemm.py picks them from this record), so AES, SHA, RDRAND and the like never
appear in it.
This module imports only the standard library: loading an artifact needs no code generator.
"""

from __future__ import annotations

import copy
import functools
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from ...errors import PycError

# `--cpu portable`: x86-64-v2 (SSE4.2, SSSE3, POPCNT, CX16; every x86-64 server CPU since
# 2009) and plain ARMv8-A, for artifacts that must run on any machine of the architecture
PORTABLE = {"x86_64": "x86-64-v2", "aarch64": "armv8-a"}
# what every CPU of the architecture has: no /proc/cpuinfo is needed to run code using only these
BASELINE = {"x86_64": {"mmx", "sse", "sse2"}, "aarch64": {"asimd"}}

# predefined macro -> /proc/cpuinfo flag
X86_MACROS = {
    "__MMX__": "mmx", "__SSE__": "sse", "__SSE2__": "sse2", "__SSE3__": "pni",
    "__SSSE3__": "ssse3", "__SSE4_1__": "sse4_1", "__SSE4_2__": "sse4_2", "__SSE4A__": "sse4a",
    "__POPCNT__": "popcnt", "__LZCNT__": "abm", "__ABM__": "abm", "__AVX__": "avx",
    "__AVX2__": "avx2", "__FMA__": "fma", "__FMA4__": "fma4", "__XOP__": "xop", "__TBM__": "tbm",
    "__F16C__": "f16c", "__BMI__": "bmi1", "__BMI2__": "bmi2", "__MOVBE__": "movbe",
    "__AVXVNNI__": "avx_vnni", "__AVX512F__": "avx512f", "__AVX512CD__": "avx512cd",
    "__AVX512BW__": "avx512bw", "__AVX512DQ__": "avx512dq", "__AVX512VL__": "avx512vl",
    "__AVX512IFMA__": "avx512ifma", "__AVX512VBMI__": "avx512vbmi",
    "__AVX512VBMI2__": "avx512_vbmi2", "__AVX512VNNI__": "avx512_vnni",
    "__AVX512BITALG__": "avx512_bitalg", "__AVX512VPOPCNTDQ__": "avx512_vpopcntdq",
    "__AVX512BF16__": "avx512_bf16", "__AVX512FP16__": "avx512_fp16",
    "__AVX512VP2INTERSECT__": "avx512_vp2intersect", "__AVX512ER__": "avx512er",
    "__AVX512PF__": "avx512pf", "__AVX5124FMAPS__": "avx512_4fmaps",
    "__AVX5124VNNIW__": "avx512_4vnniw",
}
AARCH64_MACROS = {
    "__ARM_NEON": "asimd", "__ARM_FEATURE_SVE": "sve", "__ARM_FEATURE_SVE2": "sve2",
    "__ARM_FEATURE_DOTPROD": "asimddp", "__ARM_FEATURE_FP16_VECTOR_ARITHMETIC": "asimdhp",
    "__ARM_FEATURE_FP16_SCALAR_ARITHMETIC": "fphp", "__ARM_FEATURE_MATMUL_INT8": "i8mm",
    "__ARM_FEATURE_BF16_VECTOR_ARITHMETIC": "bf16",
}
_ARCH_MACROS = {"__x86_64__": "x86_64", "__aarch64__": "aarch64"}
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # a -march value or an -m option name
SKIP_ENV = "PYC_SKIP_CPU_CHECK"


def is_cpu_name(text: str) -> bool:
    return bool(_NAME.fullmatch(text))


def parse_features(text: str) -> list[str]:
    """'+avx2,-avx512f' or 'avx2 fma' -> ['+avx2', '-avx512f'] / ['+avx2', '+fma']: names are
    gcc's `-m` options (avx2, fma, sse4.2, avx512f); a bare name means added (PYC-E050 when
    malformed)."""
    features = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        sign, name = (item[0], item[1:]) if item[0] in "+-" else ("+", item)
        if not is_cpu_name(name) or name.startswith("no-"):
            raise PycError("E050", f"--cpu-features item {item!r} is not +NAME or -NAME",
                           where=f"--cpu-features {text!r}",
                           hint="e.g. --cpu-features +avx2,+fma,-avx512f (gcc -m option names)")
        features.append(sign + name)
    return features


def feature_flags(features: list[str] | tuple[str, ...]) -> list[str]:
    """['+avx2', '-avx512f'] -> ['-mavx2', '-mno-avx512f']."""
    return [f"-m{name[1:]}" if name[0] == "+" else f"-mno-{name[1:]}" for name in features]


def resolve_march(cpu: str) -> str:
    """The -march value of `--cpu`: `portable` is the baseline of this machine's architecture."""
    if cpu == "portable":
        machine = host_arch()
        if machine not in PORTABLE:
            raise PycError("E050", f"--cpu portable has no baseline for {machine!r}",
                           hint=f"pass a -march value with --cpu (known: {sorted(PORTABLE)})")
        return PORTABLE[machine]
    if not is_cpu_name(cpu):
        raise PycError("E050", f"--cpu {cpu!r} is not a -march value",
                       hint="e.g. --cpu native, --cpu portable, --cpu x86-64-v3, --cpu skylake")
    return cpu


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def probe_target(compiler: str, march: str, features: list[str]) -> dict[str, Any]:
    """The manifest's `cpu` record: architecture, -march as given and as the compiler resolves
    it, requested feature changes, and the instruction-set extensions the code may use
    (PYC-E036 when the compiler rejects the -march value or a feature)."""
    return copy.deepcopy(_probe(compiler, march, tuple(features)))


@functools.lru_cache(maxsize=16)
def _probe(compiler: str, march: str, features: tuple[str, ...]) -> dict[str, Any]:
    """Probed once per process (the fuzzer builds thousands of models with one compiler)."""
    options = [f"-march={march}", *feature_flags(features)]
    result = subprocess.run([compiler, *options, "-dM", "-E", "-x", "c", os.devnull],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        first = (result.stderr.strip().splitlines() or ["no output"])[0]
        raise PycError("E036", f"the C compiler rejects {' '.join(options)}: {first}",
                       where=Path(compiler).name,
                       hint="pass a -march value this compiler knows (`cc --help=target`) to --cpu "
                       "and gcc -m option names to --cpu-features, or --cpu portable")
    macros = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("#define ")}
    # other architectures: the build machine's name, and only the architecture is checked
    arch = next((name for macro, name in _ARCH_MACROS.items() if macro in macros), host_arch())
    table = X86_MACROS if arch == "x86_64" else AARCH64_MACROS if arch == "aarch64" else {}
    return {"arch": arch, "march": march, "resolved_march": _resolved_march(compiler, march),
            "requested_features": list(features),
            "features": sorted({flag for macro, flag in table.items() if macro in macros})}


def _resolved_march(compiler: str, march: str) -> str:
    """What `-march=native` stands for here (gcc's -Q --help=target; the value as given when
    the compiler cannot say, e.g. clang)."""
    if march != "native":
        return march
    result = subprocess.run([compiler, "-march=native", "-Q", "--help=target"],
                            capture_output=True, text=True, check=False)
    found = re.search(r"^\s*-march=\s+(\S+)\s*$", result.stdout, re.MULTILINE)
    return found.group(1) if found and is_cpu_name(found.group(1)) else march


def host_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """This CPU's flags as Linux reports them (x86 'flags', arm64 'Features'); None when they
    cannot be read (not Linux, no /proc)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    found = re.search(r"^(?:flags|Features)\s*:(.*)$", text, re.MULTILINE)
    return set(found.group(1).split()) if found else None


def check_cpu(record: dict[str, Any], where: str) -> None:
    """Refuse (PYC-E033) an artifact whose code needs an architecture or instruction-set
    extensions this CPU lacks; called before any of its native code is mapped."""
    if os.environ.get(SKIP_ENV) == "1":
        return
    rebuild = "rebuild it on this machine, or build once with `pyc build --cpu portable` for " \
              "an artifact that runs on every CPU of the architecture"
    arch = host_arch()
    if record["arch"] != arch:
        raise PycError("E033", f"the artifact was built for {record['arch']} CPUs, this is "
                       f"{arch}", where=where, hint=rebuild)
    needed = set(record["features"])
    have = host_features()
    if have is None:
        beyond = sorted(needed - BASELINE.get(arch, set()))
        if beyond:
            raise PycError("E033", "cannot read this CPU's features (no /proc/cpuinfo) to check "
                           f"that it has {', '.join(beyond)}", where=where,
                           hint=f"{rebuild}; or set {SKIP_ENV}=1 if you know it has them")
        return
    missing = sorted(needed - have)
    if missing:
        built = record["march"]
        if record["resolved_march"] != built:
            built += f" = {record['resolved_march']}"
        raise PycError("E033", f"this CPU lacks {', '.join(missing)}, which the artifact's code "
                       f"uses (built with -march={built})", where=where, hint=rebuild)
