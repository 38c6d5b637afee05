"""Op registry: one registered unit per ONNX op (see registry.py)."""

from .registry import REGISTRY, KernelCandidate, OpDef, all_ops, get, lookup, register

__all__ = ["REGISTRY", "KernelCandidate", "OpDef", "all_ops", "get", "lookup", "register"]
