"""Every op the registry declares supported passes all of its ONNX backend node tests, or refuses
them at build time with the reason listed in tests/conformance_rejections.json.

The suite (tests/conformance.py) runs once per session in a process pool, restricted to the ops
whose tests were selected (`-k Softmax` runs only the Softmax cases); each op is one test, so a
failure names the op and lists its failing cases with what went wrong.
"""

from __future__ import annotations

import json

import conformance
import pytest

OPS = conformance.declared_ops()


def _selected_ops(session: pytest.Session) -> list[str]:
    ops = {item.callspec.params["op"] for item in session.items
           if getattr(item, "originalname", "") == "test_op_conformance" and hasattr(item, "callspec")}
    return sorted(ops) or OPS


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest) -> conformance.Report:
    return conformance.run_suite(_selected_ops(request.session))


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
