"""PyC: an ahead-of-time compiler for ONNX models."""

__version__ = "0.1.0"

from .api import build, compile_graph, load  # noqa: E402

__all__ = ["__version__", "build", "compile_graph", "load"]
