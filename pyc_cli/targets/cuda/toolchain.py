"""NVRTC through cuda-python: CUDA C++ -> CUBIN for one GPU architecture, with the PTX kept.

The CUBIN is what runs (a driver older than this NVRTC still loads it); the PTX is a fallback
only on a driver new enough for its ISA version, which the manifest records with the NVRTC
version, the options and the architecture. A failure is PYC-E028 carrying NVRTC's log and the
template of the kernel the first error points into."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import PycError
from . import bindings

# -default-device: every function is device code unless marked; fast math stays off (IEEE
# division, square root and denormals, as the CPU kernels); FMA contraction is NVRTC's default
OPTIONS = ("--std=c++17", "-default-device", "--fmad=true")
SUPPORTED_ARCHS = ("sm_80", "sm_86", "sm_87", "sm_89", "sm_90")
DEFAULT_ARCH = "sm_90"
# architecture-specific CUBINs: sm_90a (Hopper's wgmma and setmaxnreg) where the source uses
# them; such a CUBIN (and its PTX) runs on that GPU only (compute capability 9.0 exactly)
SPECIFIC_ARCHS = {"sm_90": "sm_90a"}
# cuda/wgmma.cuh.j2's first line: a line of its own (a model's name, in a comment, cannot
# start a line of the source with it)
SPECIFIC_MARKER = "\n#define PYC_SM90A 1\n"
SOURCE_NAME = "model.cu"


@dataclass(frozen=True)
class Compiled:
    cubin: bytes
    ptx: str
    log: str


def check_arch(arch: str) -> str:
    if arch not in SUPPORTED_ARCHS:
        raise PycError("E050", f"--arch {arch!r} is not a GPU architecture the CUDA target builds for",
                       where="--arch", hint=f"use one of {', '.join(SUPPORTED_ARCHS)} (sm_90: Hopper)")
    return arch


def programmatic_launch(arch: str) -> bool:
    """Whether kernels built for `arch` are launched as programmatic dependents: compute
    capability 9.0 and up run griddepcontrol (each kernel's blocks start while the previous
    kernel ends, and wait for it), which hides most of the gap between small kernels."""
    return int(arch.removeprefix("sm_")) >= 90


def compile_arch(arch: str, source: str) -> str:
    """The architecture NVRTC compiles `source` for: `arch`, or its architecture-specific
    variant (sm_90a) where the source holds instructions only that has."""
    return SPECIFIC_ARCHS.get(arch, arch) if SPECIFIC_MARKER in source else arch


def options(arch: str) -> list[str]:
    return [f"--gpu-architecture={arch}", *OPTIONS]


def version() -> str:
    nvrtc = bindings.nvrtc()
    _, major, minor = nvrtc.nvrtcVersion()
    return f"{major}.{minor}"


def _check(nvrtc: object, result: tuple, call: str) -> tuple:
    status = result[0]
    if int(status) != 0:
        _, text = nvrtc.nvrtcGetErrorString(status)  # type: ignore[attr-defined]
        raise PycError("E028", f"NVRTC {call} failed: {text.decode(errors='replace')}",
                       hint="rerun with --debug and report this")
    return result[1:]


def compile_source(source: str, arch: str, templates: dict[int, str] | None = None,
                   extra: tuple[str, ...] = ()) -> Compiled:
    """CUBIN and PTX of `source` for `arch`; `templates` maps the first line of each kernel
    to the template that rendered it (for the error's attribution); `extra`: more NVRTC
    options (resource_usage's -v), never in a build."""
    nvrtc = bindings.nvrtc()
    (program,) = _check(nvrtc, nvrtc.nvrtcCreateProgram(source.encode(), SOURCE_NAME.encode(),
                                                         0, [], []), "nvrtcCreateProgram")
    try:
        opts = [o.encode() for o in (*options(arch), *extra)]
        (status,) = nvrtc.nvrtcCompileProgram(program, len(opts), opts)
        log = _log(nvrtc, program)
        if int(status) != 0:
            raise PycError("E028", f"NVRTC could not compile the generated CUDA for {arch}"
                           f"{_culprit(log, templates or {})}: {log.strip()[:4000]}",
                           where=SOURCE_NAME, hint="rerun with --debug and report this "
                           "(the template named is the one that produced the failing code)")
        (size,) = _check(nvrtc, nvrtc.nvrtcGetCUBINSize(program), "nvrtcGetCUBINSize")
        cubin = b" " * size
        _check(nvrtc, nvrtc.nvrtcGetCUBIN(program, cubin), "nvrtcGetCUBIN")
        (size,) = _check(nvrtc, nvrtc.nvrtcGetPTXSize(program), "nvrtcGetPTXSize")
        ptx = b" " * size
        _check(nvrtc, nvrtc.nvrtcGetPTX(program, ptx), "nvrtcGetPTX")
    finally:
        nvrtc.nvrtcDestroyProgram(program)
    return Compiled(cubin, ptx.rstrip(b"\x00").decode(), log)


@dataclass(frozen=True)
class Usage:
    """One kernel's resources as ptxas reports them."""

    kernel: str
    registers: int
    stack_bytes: int
    spill_store_bytes: int
    spill_load_bytes: int


def resource_usage(source: str, arch: str) -> list[Usage]:
    """Each kernel's registers, stack frame and spills (ptxas -v through NVRTC): what the GPU
    would run, read without one."""
    log = compile_source(source, arch, extra=("--ptxas-options=-v",)).log
    found = []
    for block in re.split(r"Compiling entry function '", log)[1:]:
        name = block.split("'", 1)[0]
        frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, "
                          r"(\d+) bytes spill loads", block)
        regs = re.search(r"Used (\d+) registers", block)
        stack, stores, loads = (int(x) for x in frame.groups()) if frame else (0, 0, 0)
        found.append(Usage(name, int(regs.group(1)) if regs else 0, stack, stores, loads))
    return found


def _log(nvrtc: object, program: object) -> str:
    (size,) = _check(nvrtc, nvrtc.nvrtcGetProgramLogSize(program), "nvrtcGetProgramLogSize")  # type: ignore[attr-defined]
    text = b" " * size
    _check(nvrtc, nvrtc.nvrtcGetProgramLog(program, text), "nvrtcGetProgramLog")  # type: ignore[attr-defined]
    return text.rstrip(b"\x00").decode(errors="replace")


def _culprit(log: str, templates: dict[int, str]) -> str:
    """' in the kernel of TEMPLATE (line N)' for the first error line of the log."""
    found = re.search(rf"{re.escape(SOURCE_NAME)}\((\d+)\): (?:catastrophic )?error", log)
    if not found or not templates:
        return ""
    line = int(found.group(1))
    starts = [start for start in templates if start <= line]
    return f" in the kernel of template {templates[max(starts)]} (line {line})" if starts else \
        f" (line {line}, in the prelude)"


def ptx_isa(ptx: str) -> str:
    found = re.search(r"^\.version (\d+\.\d+)", ptx, re.MULTILINE)
    return found.group(1) if found else ""


def ptx_min_driver(isa: str) -> str:
    """The oldest CUDA driver version that JIT-compiles PTX of ISA `isa` (PTX 9.x came with
    CUDA 13.x, 8.x with 12.x: the minor numbers match from 8.0 to 8.5 and in 9.x, then 12.8
    brought 8.7, 12.9 8.8)."""
    major, minor = (int(x) for x in isa.split("."))
    late_12 = {6: "12.7", 7: "12.8", 8: "12.9"}
    if major == 8 and minor in late_12:
        return late_12[minor]
    return f"{major + 4}.{minor}" if major >= 8 else "11.0"


def record(arch: str, ptx: str, cubin_arch: str = "") -> dict[str, object]:
    """The manifest's toolchain record; `cubin_arch`: what NVRTC compiled for where that is
    not `arch` (sm_90a), recorded then (with its flags) and absent otherwise."""
    isa = ptx_isa(ptx)
    built = cubin_arch or arch
    return {"compiler": "nvrtc", "compiler_family": "nvrtc", "compiler_version": f"NVRTC {version()}",
            "nvrtc_version": version(), "flags": options(built), "arch": arch,
            **({"cubin_arch": built} if built != arch else {}), "ptx_isa": isa,
            "ptx_min_driver": ptx_min_driver(isa) if isa else ""}
