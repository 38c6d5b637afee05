"""`pyc build --tune / --tune-budget / --tuning-db / --retune` on the command line, and the
tuning section of `pyc explain`."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import REFERENCE_MODELS, invoke
from test_cli_reports import SCHEMA_PATH, schema_errors

MLP = str(REFERENCE_MODELS["mlp"].path)


def test_tune_then_build_and_explain(tmp_path: Path) -> None:
    db = tmp_path / "tuning.json"
    code, output = invoke("build", MLP, "-o", str(tmp_path / "a.pyc"), "--input-shape", "x=3,64",
                          "--tune", "--tune-budget", "60", "--tuning-db", str(db))
    assert code == 0, output
    assert "tuned 3 kernel signature(s)" in output and str(db) in output
    sections = json.loads(db.read_text())["machines"]
    assert len(sections) == 1 and len(next(iter(sections.values()))["entries"]) == 3
    code, output = invoke("build", MLP, "-o", str(tmp_path / "b.pyc"), "--input-shape", "x=3,64",
                          "--tuning-db", str(db))
    assert code == 0, output
    assert (tmp_path / "a.pyc" / "src" / "model.c").read_bytes() == \
        (tmp_path / "b.pyc" / "src" / "model.c").read_bytes()
    code, output = invoke("explain", str(tmp_path / "b.pyc"))
    assert code == 0 and "Tuning (3 kernel signatures chosen by measurement)" in output
    code, output = invoke("explain", str(tmp_path / "b.pyc"), "--json")
    data = json.loads(output)
    tuning = data["tuning"]
    assert len(tuning) == 3 and all(t["winner"] and t["measured"] for t in tuning)
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema_errors(data, schema, schema) == []


def test_a_corrupt_database_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    db = tmp_path / "tuning.json"
    db.write_text("{ not json")
    code, output = invoke("build", MLP, "-o", str(tmp_path / "a.pyc"), "--input-shape", "x=3,64",
                          "--tuning-db", str(db))
    assert code == 0, output
    assert "warning: PYC-E039: the tuning database is ignored" in output


def test_zero_budget_tunes_nothing_and_retune_needs_tune(tmp_path: Path) -> None:
    db = tmp_path / "tuning.json"
    code, output = invoke("build", MLP, "-o", str(tmp_path / "a.pyc"), "--input-shape", "x=3,64",
                          "--tune", "--tune-budget", "0", "--tuning-db", str(db))
    assert code == 0, output
    assert "tuned 0 kernel signature(s)" in output and "the budget ran out" in output
    assert not db.exists()
    code, output = invoke("build", MLP, "-o", str(tmp_path / "b.pyc"), "--input-shape", "x=3,64",
                          "--retune")
    assert code != 0 and "PYC-E050" in output


def test_a_compile_budget_cuts_or_skips_the_tuning_and_says_so(tmp_path: Path) -> None:
    """--compile-budget: a budget the passes and compiling leave nothing of skips the tuning
    (the database is not written), one smaller than --tune-budget cuts it; each decision is in
    the build's output, the decision log and `pyc explain`; a build over its budget warns
    PYC-W003 and is complete."""
    db = tmp_path / "tuning.json"
    code, output = invoke("build", MLP, "-o", str(tmp_path / "a.pyc"), "--input-shape", "x=3,64",
                          "--tune", "--tuning-db", str(db), "--compile-budget", "0.01s")
    assert code == 0, output
    assert "compile budget: no tuning (" in output and not db.exists()
    assert "warning: PYC-W003: the build took" in output and "over its compile budget of 0.01 s" in output
    decisions = (tmp_path / "a.pyc" / "decisions.jsonl").read_text()
    assert '"action":"compile_budget"' in decisions and "no tuning" in decisions
    code, output = invoke("explain", str(tmp_path / "a.pyc"))
    assert code == 0 and "Compile budget: no tuning (" in output
    code, output = invoke("build", MLP, "-o", str(tmp_path / "b.pyc"), "--input-shape", "x=3,64",
                          "--tune", "--tune-budget", "600", "--tuning-db", str(db),
                          "--compile-budget", "1m")
    assert code == 0, output
    # (whether this build then stays within its minute depends on the machine's load: the
    # tuning may use all it is given, so no assertion on PYC-W003 here)
    assert "compile budget: tuning given " in output and " s of its 600 s (about " in output
    code, output = invoke("explain", str(tmp_path / "b.pyc"), "--json")
    budget = json.loads(output)["compile_budget"]
    assert len(budget) == 1 and budget[0].startswith("compile budget: tuning given ")


def test_a_compile_budget_leaves_an_untuned_artifact_unchanged(tmp_path: Path) -> None:
    for name, extra in (("a", []), ("b", ["--compile-budget", "1h"])):
        code, output = invoke("build", MLP, "-o", str(tmp_path / f"{name}.pyc"), "--no-cache",
                              "--input-shape", "x=3,64", *extra)
        assert code == 0 and "PYC-W003" not in output, output
    for path in sorted(p.relative_to(tmp_path / "a.pyc") for p in (tmp_path / "a.pyc").rglob("*")
                       if p.is_file()):
        assert (tmp_path / "a.pyc" / path).read_bytes() == (tmp_path / "b.pyc" / path).read_bytes(), path


def test_malformed_compile_budgets_are_refused(tmp_path: Path) -> None:
    for text in ("abc", "0", "0s", "-5s", "5 parsecs", ""):
        code, output = invoke("build", MLP, "-o", str(tmp_path / "a.pyc"), "--input-shape",
                              "x=3,64", "--compile-budget", text)
        assert code == 2 and "PYC-E050" in output and "not a positive duration" in output, text
        assert not (tmp_path / "a.pyc").exists()
