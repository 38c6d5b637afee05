"""Reason-coded user errors.

Every mistake a user can make maps to one `PYC-Exxx` code listed in `ERROR_CODES`; this table is
the single place the codes are documented (docs/errors.md is generated from it). The CLI prints
`PYC-Exxx: what, where, what to do` and exits non-zero; it never shows a traceback unless --debug.
`PYC-Wxxx` codes (same table) are warnings only: what they report never stops the work
(raised as `PycWarning`); E039 predates them and stays as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR_CODES: dict[str, str] = {
    "E001": "The model file does not exist or cannot be read.",
    "E002": "The file is not a valid ONNX model (parse failure or truncated file).",
    "E003": "onnx.checker rejected the model, or it breaks a rule onnxruntime enforces beyond the "
    "checker (two nodes of one graph with the same name).",
    "E004": "External tensor data is missing, points outside the model's directory, or has an "
    "invalid entry (offset or length not a non-negative integer, a range past the end of the "
    "file, a NUL in the location).",
    "E005": "A graph input has symbolic dimensions and no --input-shape was given for it.",
    "E006": "An --input-shape or --input-values argument is malformed or names an unknown input.",
    "E007": "The model uses operators PyC does not support (all are listed at once).",
    "E008": "An operator attribute or input combination is not supported.",
    "E009": "Shape or type inference failed: the model is inconsistent for the given shapes.",
    "E010": "The model's opset or IR version, or the schema version an operator has at that opset, is "
    "outside the supported range.",
    "E011": "No memory plan fits the --memory-budget (the error names the smallest arena).",
    "E012": "A tensor, the activation arena or the weights are larger than the target can address "
    "(the error names it and its byte size).",
    "E013": "`pyc build --name` is not usable as the prefix of the model's C symbols (not a C "
    "identifier, too long, or reserved for the runtime).",
    "E020": "The C compiler failed to build the generated code.",
    "E021": "The output directory exists and is not a PyC artifact (refusing to overwrite).",
    "E022": "An output path (the artifact directory, or run's --output file) cannot be created or "
    "written (bad path, permissions, a file in the way, a full disk).",
    "E025": "The output directory holds the artifact of a different source model (replace it "
    "with --force, or choose another -o).",
    "E026": "No usable C compiler: CC names no executable program, or CC is unset and none of "
    "cc, gcc, clang is on PATH (install gcc or clang, or set CC).",
    "E027": "The CUDA target's packages are not installed: cuda-python's bindings (`cuda-bindings`) "
    "or the NVRTC library (`nvidia-cuda-nvrtc`); install them with `pip install \"pyc-compiler[cuda]\"` "
    "(`pip install \".[cuda]\"` in a checkout).",
    "E028": "NVRTC failed to compile the generated CUDA code (the error carries the compiler log and "
    "the template that produced the failing kernel), or does not accept the --arch value.",
    "E030": "The artifact directory is missing, incomplete or not a PyC artifact.",
    "E031": "An artifact file does not match its hash in manifest.json (tampered or corrupt).",
    "E032": "The artifact was built for a different format version or target.",
    "E033": "This CPU lacks instruction-set features (or the architecture) the artifact's code was "
    "built for (the error names them; rebuild with `pyc build --cpu portable` or on this machine).",
    "E034": "Another build is writing the same output directory (the error names it): wait for "
    "it, or choose another -o.",
    "E035": "The artifact lacks files a command needs besides running (model.ir, src/, "
    "decisions.jsonl ...): it is slim (`pyc build --slim`, `pyc strip`) or they were deleted.",
    "E036": "The C compiler does not accept the --cpu or --cpu-features value.",
    "E037": "A CUDA artifact cannot run here: no NVIDIA driver or GPU, a GPU whose architecture the "
    "artifact's CUBIN was not built for (and a driver too old to JIT its PTX), or not enough "
    "device memory (the error names which).",
    "E038": "A CUDA driver call failed while loading or running a CUDA artifact (the error names the "
    "call and the driver's error).",
    "E039": "The tuning database file (`pyc build --tuning-db`, default in the user cache dir) "
    "cannot be read, is not JSON or holds another schema: a warning; it is ignored and the next "
    "`pyc build --tune` replaces it.",
    "E040": "The inputs file cannot be read (not an .npz or .npy file, empty, or an .npy file "
    "where the model has several inputs).",
    "E041": "An input is missing, unknown, or has the wrong dtype or shape.",
    "E042": "The compiled model reported a runtime error.",
    "E043": "`pyc run --compare`: model outputs differ from the reference beyond tolerance.",
    "E044": "`pyc run --compare ort` needs onnxruntime: it is not installed "
    "(`pip install onnxruntime`), or it cannot run the source model.",
    "E045": "The source model for --compare cannot be found: the artifact holds no copy of it and "
    "no --model was given, or --model does not match the sha256 the manifest recorded.",
    "E046": "`run(output_names, feeds)` names an output the model does not have (the error lists "
    "the valid ones), or the arguments follow neither calling convention.",
    "E047": "The model was closed (`close()` or the end of its `with` block) and cannot run.",
    "E048": "An integer input holds an index outside the range its consumer accepts (the "
    "error names the input, the node, the value and the valid range).",
    "E049": "The machine ran out of memory (the model at these shapes needs more than is "
    "available).",
    "E050": "An invalid option value was given on the command line.",
    "E051": "The model cannot be built with symbolic dims (`--input-shape NAME=dim:LO..HI`, issue "
    "#15) yet: a node's shape rule or kernel needs the dim as a number (the error names the node "
    "and what it needs); give that dim a number.",
    "E052": "The `--shape-sample` file of `pyc build --shape-buckets` is malformed or does not "
    "fit the model: not a JSON histogram `[{\"shapes\": {\"x\": [8, 128]}, \"count\": 120}]` "
    "or an .npz of example inputs, a request naming other inputs than those with symbolic dims, "
    "or a shape outside the `--input-shape` bounds (the error names the request).",
    "E053": "A run took a branch of a run-time If that could not be compiled for the model's "
    "input shapes (an op refused them there, as onnxruntime does at run time; the build "
    "compiled the branch as unreachable and logged why): the error names the If, the branch and "
    "the reason. Send inputs that select the other branch, or rebuild with the shapes the "
    "branch needs.",
    "E060": "The planner policy is unknown (`pyc build --policy NAME`; the error lists the known "
    "ones), or a `pyc.policies` plugin fails to load, gives no Policy, or names unknown rules.",
    "E061": "A planner policy made different decisions when run twice on the same graph (it "
    "depends on random numbers, set or hash order, time, ...): the build is refused because its "
    "artifact would not be reproducible (the error names the decision that differed).",
    "E062": "A `--contract` is malformed: an unknown clause, a missing or unparsable value (the "
    "error names the clause and lists the known ones).",
    "E063": "A contract clause is broken: at build (`pyc build --contract`, from the plan and the "
    "policy) or at run time (`pyc run --check-contract`, measured); the error names the clause, "
    "the predicted or measured value and the decisions that drove it.",
    "E066": "A `--what-if` alternative (`pyc explain ARTIFACT --what-if KEY=VALUE,...`, `pyc plan`) "
    "is malformed: an unknown key (the error lists the known ones), a key given twice, a value "
    "that does not parse, or a kernel override naming a node the model lacks or a candidate that "
    "does not apply to it (the error lists the node's candidates).",
    "E068": "A telemetry file (`PYC_TELEMETRY=PATH` at run time, `pyc build --feedback PATH`) "
    "is malformed (not JSON, another format or version, an entry missing a field or holding a "
    "wrong type; the error names it), was recorded for another model (the source model's "
    "sha256) or other dims, or holds a shape outside the build's `--input-shape` bounds; at run "
    "time it is only warned, and the runs are kept for the next write.",
    "E090": "Internal compiler error: IR verification failed, or an unexpected exception (a "
    "bug in PyC, never a user mistake: please report it with the --debug traceback).",
    "W001": "A warning: a target of an artifact built for several (`pyc build --target cuda,cpu`) "
    "cannot run here (the warning names the target and the PYC error of its guard: the CUDA "
    "packages missing, no driver or GPU, a GPU the CUBIN was not built for, too little device "
    "memory, a CPU without the code's features); loading falls back to the next target the "
    "artifact holds, and the run statistics count it (`guard_miss_count`, `fallback_count`, "
    "`last_fallback_reason`).",
    "W002": "A warning: a run on a target of an artifact built for several failed on its device "
    "(PYC-E038: a driver call failing, a kernel that cannot launch, the device lost); that run "
    "and every later one of the loaded model go to the next target the artifact holds, and the "
    "run statistics count it (`fallback_count`, `last_fallback_reason`). Reload the artifact to "
    "try the first target again.",
    "W003": "A warning: the build took longer than its `--compile-budget`; the artifact is "
    "complete (the budget only cuts or skips `--tune`'s measurements, which the build's notes "
    "and decision log say).",
}


@dataclass
class PycError(Exception):
    """A user-facing error: `code` is a key of ERROR_CODES, `where` locates it, `hint` says what to do."""

    code: str
    what: str
    where: str = ""
    hint: str = ""

    def __post_init__(self) -> None:
        if self.code not in ERROR_CODES:
            raise ValueError(f"unknown error code {self.code}")
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [f"PYC-{self.code}: {self.what}"]
        if self.where:
            parts.append(f"where: {self.where}")
        if self.hint:
            parts.append(f"what to do: {self.hint}")
        return "; ".join(parts)


@dataclass
class RunTimeCheckedError(PycError):
    """A case an op's rule refuses for concrete sizes that its kernel also checks at run time
    (status 6, PYC-E041 from Python; TopK's constant K past a row along a symbolic axis). It is
    an ordinary PycError everywhere, except where the bounds of symbolic dims include such
    sizes: the build's corner check (ops/propagate.check_symbolic) then skips that point (no
    run there gets past the kernel's check) instead of refusing the bounds."""


class PycWarning(UserWarning):
    """A coded problem that does not stop the work (the PycError says what and what to do)."""

    def __init__(self, error: PycError) -> None:
        super().__init__(str(error))
        self.error = error


def errors_markdown() -> str:
    """The error-code reference, generated from ERROR_CODES."""
    lines = ["# PyC error codes", "", "Generated from `pyc_cli/errors.py`.", "",
             "| code | meaning |", "| --- | --- |"]
    lines += [f"| PYC-{code} | {text} |" for code, text in ERROR_CODES.items()]
    return "\n".join(lines) + "\n"
