"""The malformed-input fuzzer on a fixed seed: every hostile model, path and artifact gives a
correct result or a PYC error (no traceback, crash, hang, write outside the output directory or
half-written artifact). PYC_FUZZ_CASES (default: two cases of every mutator family) or
PYC_FUZZ_SECONDS sets the budget; run it longer with
`python -m pyc_cli.testing.malformed --seconds N --seed S`."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pyc_cli.testing import malformed
from pyc_cli.testing.cases import Case
from pyc_cli.testing.malformed import Fuzzer, Result, changes_outside, classify, snapshot

SEED = 20261202


def _budget() -> tuple[float | None, int | None]:
    seconds = os.environ.get("PYC_FUZZ_SECONDS")
    if seconds:
        return float(seconds), None
    return None, int(os.environ.get("PYC_FUZZ_CASES", str(2 * len(malformed.MUTATORS))))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the fuzzer forks a child per command")
def test_fixed_seed_finds_no_failure() -> None:
    """The fuzzer runs in a fresh interpreter of its own (forking a child per command from
    there): forked from a test worker that earlier tests had loaded libraries into (compiled
    models, the CUDA emulator), children failed with SystemError and a segfault that neither the
    fuzzer nor PyC causes (the worker order decided whether it happened)."""
    seconds, cases = _budget()
    budget = ["--seconds", str(seconds)] if seconds is not None else ["--cases", str(cases)]
    done = subprocess.run([sys.executable, "-m", "pyc_cli.testing.malformed", "--seed",
                           str(SEED), "--timeout", "60", *budget],
                          capture_output=True, text=True, check=False, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]  # "N cases: ok X, pyc_error Y, ..."
    total, _, rest = summary.partition(" cases: ")
    counts = {k: int(v) for k, v in (item.rsplit(" ", 1) for item in rest.split(", "))}
    if cases is not None and cases >= 2 * len(malformed.MUTATORS):
        # every family ran, and hostile inputs were both refused and (e.g. names) compiled
        assert int(total) >= len(malformed.MUTATORS), summary
        assert counts.get("pyc_error", 0) > 0 and counts.get("ok", 0) > 0, summary


def test_fresh_interpreter_mode_runs_the_real_cli(tmp_path: Path) -> None:
    """--exec runs `python -m pyc_cli.cli.main` itself: a tampered library and an undecodable
    model path (the latter builds)."""
    fuzzer = Fuzzer(tmp_path, timeout=120, use_exec=True)
    tampered = malformed.generate(0, 0, ["artifact.corrupt_file"])
    tampered.expect = "E031"
    assert fuzzer.run(tampered).status == "pyc_error"
    path_case = malformed.MUTATORS["onnx.hostile_path"]
    case = next(c for c in (path_case(random.Random(i)) for i in range(500))
                if c.name == "hostile_path[non_utf8]")
    outcome = fuzzer.run(case)
    assert outcome.status == "ok", outcome


@pytest.mark.parametrize(("result", "expect", "status"), [
    (Result(1, None, "", "Traceback (most recent call last):\n  ...\nKeyError: 'x'\n"), None, "traceback"),
    (Result(None, 11, "", ""), None, "crash"),
    (Result(None, 9, "", "", timed_out=True), None, "hang"),
    (Result(3, None, "", "PYC-E090: internal compiler error: KeyError\n"), None, "internal"),
    (Result(2, None, "", "Usage: pyc build\nError: bad\n"), None, "bad_exit"),
    (Result(0, None, "", ""), "E031", "wrong_result"),
    (Result(2, None, "", "PYC-E030: missing\n"), "E031", "wrong_result"),
    (Result(2, None, "", "PYC-E031: tampered\n"), "E031", "pyc_error"),
    (Result(0, None, "", ""), None, "ok"),
])
def test_classify_flags_every_kind_of_failure(result: Result, expect: str | None,
                                              status: str) -> None:
    assert classify(result, expect).status == status


def test_writes_outside_the_output_directory_are_detected(tmp_path: Path) -> None:
    (tmp_path / "work" / "out").mkdir(parents=True)
    (tmp_path / "tmp").mkdir()
    before = snapshot(tmp_path, tmp_path / "tmp")
    (tmp_path / "work" / "out" / "ok.txt").write_text("allowed")
    (tmp_path / "tmp" / "scratch").write_text("allowed")
    (tmp_path / "escaped.txt").write_text("not allowed")
    after = snapshot(tmp_path, tmp_path / "tmp")
    assert changes_outside(before, after, ["work/out"]) == ["escaped.txt"]


def test_a_crashing_command_is_recorded_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child killed by a signal (here: SIGKILL in place of the CLI) is an outcome."""
    import pyc_cli.cli.main as cli

    monkeypatch.setattr(cli.main, "main", lambda **_: os.kill(os.getpid(), signal.SIGKILL))
    outcome = Fuzzer(tmp_path, timeout=30).run(Case("abort", [["run", "x"]]))
    assert outcome.status == "crash", outcome


def test_a_hanging_command_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import pyc_cli.cli.main as cli

    monkeypatch.setattr(cli.main, "main", lambda **_: time.sleep(60))
    start = time.monotonic()
    outcome = Fuzzer(tmp_path, timeout=0.5).run(Case("sleep", [["run", "x"]]))
    assert outcome.status == "hang" and time.monotonic() - start < 10, outcome


def test_command_line_prints_counts_by_outcome(capsys: pytest.CaptureFixture[str]) -> None:
    code = malformed.main(["--cases", "3", "--seed", "5", "--family", "onnx.not_a_model",
                           "--family", "onnx.truncate_at_boundary"])
    out = capsys.readouterr().out
    assert code == 0 and "3 cases: pyc_error 3" in out, out


def test_cases_are_reproducible_from_seed_and_index() -> None:
    for index in range(2 * len(malformed.MUTATORS)):
        first, again = malformed.generate(SEED, index), malformed.generate(SEED, index)
        assert (first.name, first.commands, first.files, first.links) == \
            (again.name, again.commands, again.files, again.links)
