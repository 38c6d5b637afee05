"""Every op the registry declares supported passes all of its ONNX backend node tests, or refuses
them at build time with the reason listed in tests/conformance_rejections.json.

The suite (tests/conformance.py) runs once per session in a process pool, restricted to the ops
whose tests were selected (`-k Softmax` runs only the Softmax cases); each op is one test, so a
failure names the op and lists its failing cases with what went wrong. Under pytest-xdist the
suite still runs once, not once per worker: the first worker to ask runs it (its pool takes
every core) and the others read its report.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import conformance
import pytest

OPS = conformance.declared_ops()


def _selected_ops(session: pytest.Session) -> list[str]:
    ops = {item.callspec.params["op"] for item in session.items
           if getattr(item, "originalname", "") == "test_op_conformance" and hasattr(item, "callspec")}
    return sorted(ops) or OPS


def _shared_report(ops: list[str], shared: Path) -> conformance.Report:
    """The report of `ops`, computed by the first xdist worker that takes the lock; the others
    wait for it and read it (the lock and the report live in this session's shared temp dir)."""
    import fcntl

    key = hashlib.sha256(",".join(ops).encode()).hexdigest()[:16]
    done = shared / f"conformance-{key}.pickle"
    with open(shared / f"conformance-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return pickle.loads(done.read_bytes())
        report = conformance.run_suite(ops)
        partial = done.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(report))
        partial.replace(done)
        return report


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> conformance.Report:
    ops = _selected_ops(request.session)
    if not os.environ.get("PYTEST_XDIST_WORKER") or os.name != "posix":
        return conformance.run_suite(ops)
    # every xdist worker's base temp (…/pytest-N/popen-gwK) shares its parent with the others
    # of this session only
    return _shared_report(ops, tmp_path_factory.getbasetemp().parent)


@pytest.mark.parametrize("op", OPS)
def test_op_conformance(op: str, report: conformance.Report) -> None:
    row = report.per_op[op]
    failures = report.failures(op)
    assert not failures, (
        f"{op}: {len(failures)} of {row['cases']} cases fail "
        f"({row['passed']} pass, {row['rejected']} rejected with a listed reason):\n"
        + "\n".join(f"  {f.name}: {f.detail}" for f in failures))


def test_rejection_list_names_only_cases_of_declared_ops() -> None:
    """A listed case must exist among the cases of declared ops (else the entry is stale)."""
    listed = json.loads(conformance.REJECTIONS_FILE.read_text())
    known = {case.name for case in conformance.collect_cases()}
    stale = sorted(set(listed) - known)
    assert not stale, f"tests/conformance_rejections.json lists cases that do not run: {stale}"
    assert all(isinstance(reason, str) and reason for reason in listed.values())
