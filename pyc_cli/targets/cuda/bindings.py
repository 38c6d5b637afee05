"""cuda-python, imported on use: a CPU-only install of PyC never imports it, and a CUDA build or
run without it is PYC-E027 with the command that installs it."""

from __future__ import annotations

from types import ModuleType

from ...errors import PycError

INSTALL_HINT = ('install the CUDA extra: pip install "pyc-compiler[cuda]" '
                '(pip install ".[cuda]" in a checkout)')


def _missing(what: str, error: BaseException) -> PycError:
    return PycError("E027", f"the CUDA target needs {what}, which cannot be loaded: {error}",
                    where="--target cuda", hint=INSTALL_HINT)


def nvrtc() -> ModuleType:
    """cuda.bindings.nvrtc with its library loadable (the nvidia-cuda-nvrtc wheel)."""
    try:
        from cuda.bindings import nvrtc as module
    except ImportError as error:
        raise _missing("cuda-python's bindings (cuda-bindings)", error) from None
    try:
        module.nvrtcVersion()  # loads libnvrtc: a missing wheel shows here, not mid-build
    except Exception as error:  # noqa: BLE001 (pathfinder raises its own error types)
        raise _missing("the NVRTC library (nvidia-cuda-nvrtc)", error) from None
    return module


def driver() -> ModuleType:
    """cuda.bindings.driver (the driver library itself is loaded by cuInit: runtime/cuda.py)."""
    try:
        from cuda.bindings import driver as module
    except ImportError as error:
        raise _missing("cuda-python's driver bindings (cuda-bindings)", error) from None
    return module


def available() -> bool:
    """Whether NVRTC can compile here (tests skip without it)."""
    try:
        nvrtc()
    except PycError:
        return False
    return True
