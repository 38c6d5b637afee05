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
