"""The CPU target: C kernels (codegen_templates/c/), their candidates (kernels.py), the per-call
template contexts (kernel_context.py), the emitter and library build (target.py), the C compiler
(toolchain.py, compile_cache.py) and the CPU's instruction-set features (features.py)."""
