"""The NVRTC check every CUDA build test makes of the source it emitted."""

from __future__ import annotations

from pyc_cli.targets.cuda import toolchain
from pyc_cli.targets.cuda.target import kernel_templates


def compile_cleanly(source: str, arch: str) -> toolchain.Compiled:
    """NVRTC's CUBIN of `source` for `arch`, checked: an ELF image (what a CUBIN is), PTX for
    that arch, no warning in the log."""
    compiled = toolchain.compile_source(source, arch, kernel_templates(source))
    assert compiled.cubin[:4] == b"\x7fELF"
    assert f".target {arch}" in compiled.ptx
    assert "warning" not in compiled.log.lower(), compiled.log
    return compiled
