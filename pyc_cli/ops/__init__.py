"""Op registry: one registered unit per ONNX op (see registry.py)."""

from .registry import REGISTRY, OpDef, all_ops, get, lookup, register

# every op module, after the registry it fills (importing pyc_cli.ops or any of its modules
# runs this first, so the registry is complete before anyone can look an op up)
from . import _catalog  # noqa: E402, F401  isort: skip

__all__ = ["REGISTRY", "OpDef", "all_ops", "get", "lookup", "register"]
