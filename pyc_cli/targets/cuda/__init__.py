"""The CUDA target: CUDA C++ kernels (codegen_templates/cuda/), their candidates (kernels.py),
launch geometry per call (kernel_context.py), the emitter (target.py) and NVRTC through
cuda-python (toolchain.py; bindings.py imports cuda-python on use, so a CPU-only install never
needs it). The runtime is pyc_cli/runtime/cuda.py (the CUDA driver API)."""
