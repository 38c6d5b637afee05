"""Malformed-input fuzzer of the importer and the artifact loader.

Seeded mutators (malformed_onnx.py, malformed_artifact.py) produce hostile models, paths and
artifacts; each case runs the `pyc` CLI in a child process, in a fresh sandbox, with a timeout.
The only acceptable outcomes are success (a correct result) or a reason-coded PYC error (exit 2,
stderr starting with `PYC-E`, no traceback). Anything else is recorded as a failure:

    traceback     a Python traceback on stderr
    internal      PYC-E090 / exit 3 (an internal error reached by user input), or PYC-E020
                  (the compiler emitted C that does not compile)
    crash / hang  the child died of a signal / ran past the timeout
    bad_exit      another exit code, or exit 2 without a PYC-E message
    wrong_result  success where an error was required, a wrong error code, or wrong numbers
    wrote_outside a file created, changed or removed outside the allowed output paths
    half_written  a failed build left its output directory, or a "successful" one is incomplete

    python -m pyc_cli.testing.malformed --seconds 60 --seed 1

Children are forked from a process that has already imported PyC (fast: no interpreter start
per case) and run the same entry point as `python -m pyc_cli.cli.main`; `--exec` starts a fresh
interpreter per command instead.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import malformed_artifact, malformed_onnx
from .cases import Case

ACCEPTED = ("ok", "pyc_error")
MEMORY_LIMIT = 4 << 30  # a child that tries to allocate more fails (MemoryError), not the host
MUTATORS: dict[str, Callable[[random.Random], Case]] = {
    **{f"onnx.{k}": v for k, v in malformed_onnx.MUTATORS.items()},
    **{f"artifact.{k}": v for k, v in malformed_artifact.MUTATORS.items()},
}


@dataclass
class Result:
    """What one CLI command did."""

    rc: int | None
    signal: int | None
    stdout: str
    stderr: str
    timed_out: bool = False


@dataclass
class Outcome:
    case: str
    status: str
    detail: str = ""


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(o.status for o in self.outcomes).items()))

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status not in ACCEPTED]


# ---------------------------------------------------------------- generating cases


def generate(seed: int, index: int, families: list[str] | None = None) -> Case:
    """Case `index` of the run with `seed`: families in turn, parameters from a seeded RNG."""
    names = families or sorted(MUTATORS)
    family = names[index % len(names)]
    case = MUTATORS[family](random.Random(f"{seed}:{index}"))
    case.name = f"#{index} {family}: {case.name}"
    if index % 3 == 0 and case.commands and _is_build(case.commands[0]):
        case.commands.append(["check", case.commands[0][1]])  # the importer's other entry
    return case


REFERENCE_RUN = ["run", malformed_onnx.OUT, "--inputs", "x.npz", "--output", "y.npz"]


# ---------------------------------------------------------------- executing commands


def run_forked(argv: list[str], cwd: Path, tmp: Path, timeout: float) -> Result:
    """Run the CLI on `argv` in a forked child (its own process group, memory-limited)."""
    with tempfile.TemporaryDirectory(prefix="pyc-malformed-io-") as scratch:
        out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
        pid = os.fork()
        if pid == 0:
            _child(argv, cwd, tmp, out, err)
        status, timed_out = _wait(pid, timeout)
        return Result(os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                      os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                      out.read_bytes().decode("utf-8", "replace"),
                      err.read_bytes().decode("utf-8", "replace"), timed_out)


def _child(argv: list[str], cwd: Path, tmp: Path, out: Path, err: Path) -> None:
    code = 70
    try:
        os.setpgid(0, 0)
        _redirect(out, err)
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        os.chdir(cwd)
        os.environ["TMPDIR"] = str(tmp)
        tempfile.tempdir = None
        from ..cli.main import main

        main.main(args=argv, prog_name="pyc")
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:  # noqa: BLE001  (an escaped exception is what the fuzzer looks for)
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os._exit(code)


def _redirect(out: Path, err: Path) -> None:
    """fds 1/2 to files, with text streams set up as a fresh interpreter would (stderr escapes
    what it cannot encode; stdout does not)."""
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
    os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 2)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), "utf-8", "strict",
                                  line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), "utf-8", "backslashreplace",
                                  line_buffering=True)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _wait(pid: int, timeout: float) -> tuple[int, bool]:
    deadline = time.monotonic() + timeout
    delay = 0.002
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    _kill_group(pid)
    return os.waitpid(pid, 0)[1], True


def _kill_group(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        with contextlib.suppress(ProcessLookupError):
            target()


def run_exec(argv: list[str], cwd: Path, tmp: Path, timeout: float) -> Result:
    """Run `python -m pyc_cli.cli.main argv` as a fresh interpreter."""
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=_pythonpath())
    process = subprocess.Popen([sys.executable, "-m", "pyc_cli.cli.main", *argv], cwd=cwd,
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True,
                               preexec_fn=_limit_memory)  # noqa: PLW1509
    try:
        out, err = process.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        out, err = process.communicate()
        timed_out = True
    rc = process.returncode
    return Result(rc if rc >= 0 else None, -rc if rc < 0 else None,
                  out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), timed_out)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _pythonpath() -> str:
    root = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])


# ---------------------------------------------------------------- checking one case


def classify(result: Result, expect: str | None, command: str = "") -> Outcome:
    """The outcome of one command from its exit status and stderr (`pyc check` exits 1, quietly,
    when it reports unsupported nodes)."""
    err = result.stderr
    if result.timed_out:
        return Outcome("", "hang", err[-300:])
    if result.signal is not None:
        return Outcome("", "crash", f"signal {result.signal}; {err[-300:]}")
    if "Traceback" in err:
        return Outcome("", "traceback", _last_lines(err))
    if result.rc == 0 or (command == "check" and result.rc == 1 and not err.strip()):
        if expect is not None:
            return Outcome("", "wrong_result", f"succeeded; expected {expect}")
        return Outcome("", "ok")
    if result.rc == 3 or "PYC-E090" in err or err.startswith("PYC-E020"):
        return Outcome("", "internal", _last_lines(err))  # E020: generated C that does not compile
    if result.rc == 2 and err.startswith("PYC-E"):
        code = err[4:8]
        if expect not in (None, "error") and code != expect:
            return Outcome("", "wrong_result", f"{code} instead of {expect}: {_last_lines(err)}")
        return Outcome("", "pyc_error", err.splitlines()[0][:200])
    return Outcome("", "bad_exit", f"exit {result.rc}: {_last_lines(err)}")


def _last_lines(text: str, count: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-count:])[:600]


Snapshot = dict[str, tuple]


def snapshot(root: Path, skip: Path) -> Snapshot:
    """Every path under root (symlinks not followed) with what identifies its content."""
    entries: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        if base == skip:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = base / name
            info = path.lstat()
            kind = info.st_mode >> 12
            detail = os.readlink(path) if path.is_symlink() else (
                None if path.is_dir() else (info.st_size, info.st_mtime_ns))
            entries[_key(path.relative_to(root))] = (kind, detail)
    return entries


def _key(path: Path | str) -> str:
    """A path as text even when its bytes are not UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def changes_outside(before: Snapshot, after: Snapshot, allowed: list[str]) -> list[str]:
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    return sorted(p for p in changed if not any(p == a or p.startswith(a + "/") for a in allowed))


class Fuzzer:
    """Runs cases; builds the base artifact (the mlp model) once for the artifact mutators."""

    def __init__(self, workdir: Path, timeout: float = 30.0, use_exec: bool = False) -> None:
        self.workdir = workdir
        self.timeout = timeout
        self.execute = run_exec if use_exec else run_forked
        self._artifact: Path | None = None

    def base_artifact(self) -> Path:
        if self._artifact is None:
            from ..api import build

            model = self.workdir / "base" / "mlp.onnx"
            model.parent.mkdir(parents=True, exist_ok=True)
            model.write_bytes(malformed_onnx.mlp().SerializeToString())
            self._artifact = build(model, model.parent / "art").artifact
        return self._artifact

    def run(self, case: Case) -> Outcome:
        root = Path(tempfile.mkdtemp(prefix="case-", dir=self.workdir))
        try:
            outcome = self._run_in(case, root)
        except Exception as exc:  # noqa: BLE001  (a broken case is reported, not fatal)
            outcome = Outcome(case.name, "fuzzer_error", f"{type(exc).__name__}: {exc}")
        finally:
            _remove(root)
        outcome.case = case.name
        return outcome

    def _run_in(self, case: Case, root: Path) -> Outcome:
        work, tmp = root / "work", root / "tmp"
        self._setup(case, work, tmp)
        before = snapshot(root, tmp)
        existed = {c[3]: _exists(work / c[3]) for c in case.commands if _is_build(c)}
        outcomes = []
        for index, argv in enumerate(case.commands):
            outcome = self._command(argv, work, tmp, case.expect if index == 0 else None)
            if _is_build(argv) and outcome.status in ACCEPTED:
                problem = _build_problem(argv, work, existed, outcome)
                outcome = Outcome(case.name, "half_written", problem) if problem else outcome
            outcomes.append(outcome)
        if case.reference is not None and outcomes[0].status == "ok":
            outcomes.append(self._command(REFERENCE_RUN, work, tmp, None))
            if outcomes[-1].status == "ok":
                outcomes.append(self._check_reference(case, work, outcomes[-1]))
        outcome = next((o for o in outcomes if o.status not in ACCEPTED), outcomes[0])
        outside = changes_outside(before, snapshot(root, tmp),
                                  [_key(os.path.normpath(f"work/{w}")) for w in case.writable])
        if outside and outcome.status in ACCEPTED:
            outcome = Outcome(case.name, "wrote_outside", ", ".join(outside[:5]))
        return outcome

    def _setup(self, case: Case, work: Path, tmp: Path) -> None:
        work.mkdir(parents=True)
        tmp.mkdir()
        for relative, data in case.files.items():
            path = work / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for relative, target in case.links.items():
            (work / relative).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, work / relative)
        if case.artifact:
            shutil.copytree(self.base_artifact(), work / malformed_artifact.ART)
        if case.reference is not None:
            np.savez(work / "x.npz", **{case.reference[0]: malformed_onnx.reference_inputs()})
        if case.prepare is not None:
            case.prepare(work)

    def _command(self, argv: list[str], work: Path, tmp: Path, expect: str | None) -> Outcome:
        outcome = classify(self.execute(argv, work, tmp, self.timeout), expect, argv[0])
        outcome.detail = f"[{argv[0]}] {outcome.detail}"
        return outcome

    @staticmethod
    def _check_reference(case: Case, work: Path, outcome: Outcome) -> Outcome:
        """A hostile-name build that succeeded must compute the right numbers."""
        if not (work / "y.npz").exists():
            return Outcome(case.name, "wrong_result", "run wrote no y.npz")
        with np.load(work / "y.npz") as data:
            names = list(data.files)
            if names != [case.reference[1]]:
                return Outcome(case.name, "wrong_result", f"output names {names!r}")
            got = data[names[0]]
        want = malformed_onnx.mlp_reference(malformed_onnx.reference_inputs())
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-5, atol=1e-5):
            return Outcome(case.name, "wrong_result", "outputs differ from numpy")
        return outcome


def _is_build(argv: list[str]) -> bool:
    return argv[0] == "build" and len(argv) >= 4 and argv[2] == "-o"


def _build_problem(argv: list[str], work: Path, existed: dict[str, bool], outcome: Outcome) -> str:
    """A failed build leaves no new output directory; a successful one leaves a verified one."""
    from ..artifact.reader import read_manifest, verify_files
    from ..errors import PycError

    out = Path(os.path.realpath(work / argv[3]))  # where `pyc build` resolves -o to
    if outcome.status != "ok":
        return f"failed build left {argv[3]!r}" if _exists(out) and not existed[argv[3]] else ""
    try:
        verify_files(out, read_manifest(out))
    except PycError as exc:
        return f"built artifact does not verify: {exc}"
    return ""


def _exists(path: Path) -> bool:
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):
        return False


def _remove(root: Path) -> None:
    for dirpath, _, _ in os.walk(root):
        os.chmod(dirpath, 0o700)
    shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- driving


def fuzz(seed: int, seconds: float | None = None, cases: int | None = None,
         families: list[str] | None = None, use_exec: bool = False, timeout: float = 30.0,
         progress: Callable[[Outcome], None] | None = None) -> Report:
    """Run cases 0, 1, 2, ... of `seed` until `cases` ran or `seconds` passed."""
    report = Report()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pyc-malformed-") as workdir:
        fuzzer = Fuzzer(Path(workdir), timeout, use_exec)
        for index in _indexes(cases):
            if seconds is not None and time.monotonic() - start >= seconds:
                break
            outcome = fuzzer.run(generate(seed, index, families))
            report.outcomes.append(outcome)
            if progress is not None:
                progress(outcome)
    return report


def _indexes(limit: int | None) -> Iterator[int]:
    index = 0
    while limit is None or index < limit:
        yield index
        index += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyc_cli.testing.malformed",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=None, help="time budget")
    parser.add_argument("--cases", type=int, default=None, help="number of cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--family", action="append", choices=sorted(MUTATORS),
                        help="only these mutator families (repeatable)")
    parser.add_argument("--exec", dest="use_exec", action="store_true",
                        help="a fresh interpreter per command instead of a fork")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per command")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = parser.parse_args(argv)
    if args.seconds is None and args.cases is None:
        args.seconds = 60.0

    def progress(outcome: Outcome) -> None:
        if args.verbose or outcome.status not in ACCEPTED:
            print(f"{outcome.status:13} {outcome.case}  {outcome.detail}", flush=True)

    report = fuzz(args.seed, args.seconds, args.cases, args.family, args.use_exec, args.timeout,
                  progress)
    print(f"{len(report.outcomes)} cases: " + ", ".join(f"{k} {v}" for k, v in report.counts().items()))
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
