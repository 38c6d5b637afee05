"""The CPU target: C kernels (codegen_templates/c/), their candidates (kernels.py) and the
per-call template contexts (kernel_context.py); building lives in codegen/cpu.py for now."""
