"""The what-if simulator (issue #16, point 1): `pyc explain ARTIFACT --what-if KEY=VALUE,...` and
`pyc plan MODEL --compare-modes` predict an alternative build's arena (exactly: the planner is
rerun) and latency (per-kernel timings, the tuning database, the calibrated cost model) without
generating or compiling its code. spec.py parses alternatives, simulate.py plans and predicts,
report.py gathers and prints the comparison; the latency model is passes/latency_model.py (the
build uses it too, for a contract's latency clause)."""
