"""Determinism guard for planner policies (issue #16, point 4): build each model twice with each
policy, in fresh processes with different hash seeds, output paths and working directories, and
compare the artifacts byte for byte (library included).

A policy that iterates a set of names, hashes a str or reads the clock plans differently in
another process; the in-build replay (PYC-E061) catches what differs within one process
(random numbers), this catches the rest. `make check-determinism` runs it on the reference
models with every registered policy (plugins too: it builds through their entry points).

    python -m pyc_cli.testing.policy_determinism [MODEL[::NAME=d0,d1...]...] [--policy NAME]...

Without models it checks the reference models of tests/models (run from the repository root).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

SEEDS = ("1", "4242")  # two hash seeds: str hashes and set orders differ between them
REFERENCE_MODELS = ("tests/models/mlp.onnx::x=3,64", "tests/models/cnn.onnx::image=2,3,32,32",
                    "tests/models/transformer.onnx::input_ids=2,16::attention_mask=2,16",
                    "tests/models/mobilenet.onnx", "tests/models/unet.onnx",
                    "tests/models/lstm.onnx")


@dataclass(frozen=True)
class Spec:
    """A model and the --input-shape arguments it is built with."""

    path: Path
    shapes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Spec:
        path, *shapes = text.split("::")
        return cls(Path(path), tuple(shapes))


def build(spec: Spec, policy: str, out: Path, seed: str,
          env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One `pyc build` of `spec` under `policy` in a fresh process with hash seed `seed`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "pyc_cli.cli.main", "build", str(spec.path.resolve()),
            "-o", str(out), "--policy", policy, "--no-cache", "-q"]
    for shape in spec.shapes:
        args += ["--input-shape", shape]
    return subprocess.run(args, env={**(env or os.environ), "PYTHONHASHSEED": seed},
                          cwd=out.parent, capture_output=True, text=True, check=False)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def differences(spec: Spec, policy: str, work: Path,
                env: Mapping[str, str] | None = None) -> list[str]:
    """The files that differ between two builds (an error's text if a build fails)."""
    # another directory depth and name too: no path may reach the artifact
    outs = [work / f"seed{seed}" / ("deeper/" * index + f"{spec.path.stem}_{index}.pyc")
            for index, seed in enumerate(SEEDS)]
    for seed, out in zip(SEEDS, outs):
        done = build(spec, policy, out, seed, env)
        if done.returncode:
            return [f"build failed (seed {seed}): {(done.stdout + done.stderr).strip()}"]
    first, second = tree(outs[0]), tree(outs[1])
    if sorted(first) != sorted(second):
        return [f"different files: {sorted(set(first) ^ set(second))}"]
    return [name for name in first if first[name] != second[name]]


def policies() -> list[str]:
    from ..planning.policy import registry

    return list(registry())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", metavar="MODEL[::NAME=SHAPE...]",
                        default=list(REFERENCE_MODELS), help="default: the reference models")
    parser.add_argument("--policy", action="append", dest="policies",
                        help="a policy to check (repeatable; default: every registered one)")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                        help="pairs of builds run at once (default: one per core)")
    args = parser.parse_args(argv)
    pairs = [(Spec.parse(text), policy) for text in args.models
             for policy in args.policies or policies()]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max(1, args.jobs)) as pool:
        found = pool.map(lambda pair: differences(
            pair[0], pair[1], Path(tmp) / pair[0].path.stem / pair[1]), pairs)
        failed = 0
        for (spec, policy), different in zip(pairs, found):  # in order, as they finish
            failed += bool(different)
            verdict = "byte-identical" if not different else "DIFFERENT: " + "; ".join(different)
            print(f"{spec.path.name:<20} {policy:<16} {verdict}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
