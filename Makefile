PYTHON ?= python3
PYTEST_ARGS ?= -q

# the fast tier: IR, passes, planning, op references and unit tests of the tools; little C is
# compiled, so it runs in well under a minute on two cores (CI runs everything: `make test`)
FAST_TESTS = tests/ir tests/passes tests/planning tests/ops/test_references.py \
	tests/ops/test_ops_hold_semantics.py tests/targets/cpu/test_cpu_kernels.py tests/test_layers.py \
	tests/test_abi.py tests/testing/test_oracle.py tests/testing/test_per_node.py tests/testing/test_known.py

.PHONY: test test-fast check-determinism golden bench bench-load bench-dynamic bench-feedback bench-pressure bench-whatif bench-check bench-baseline lint docs models coverage fuzz architecture

test:  ## run the whole test suite
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-fast:  ## the fast tier (under a minute on two cores; the autotuner's tests compile, so not here)
	$(PYTHON) -m pytest $(PYTEST_ARGS) $(FAST_TESTS) --ignore=tests/passes/test_tuning.py

# every reference model, built twice with each registered planner policy (fresh processes,
# different hash seeds), must give byte-identical artifacts (issue #16; a few minutes)
check-determinism:  ## build each reference model twice per planner policy; compare the bytes
	$(PYTHON) -m pyc_cli.testing.policy_determinism

golden:  ## regenerate golden IR / plan / decision-log / C dumps of the reference models
	$(PYTHON) tests/golden_tool.py --write

bench:  ## PyC vs onnxruntime and OpenVINO on the real models, then the toy ones (benchmarks/results/)
	$(PYTHON) benchmarks/bench.py --suite real
	$(PYTHON) benchmarks/bench.py --suite toy

# issue #16 point 2: kernels chosen first vs chosen with the memory plan, budget 60% of the
# latency_first arena (benchmarks/results/memory-pressure.*)
bench-pressure:  ## sequential vs co-selected kernels under a memory budget, interleaved
	$(PYTHON) benchmarks/memory_pressure.py

bench-feedback:  ## issue #16 point 5: tail-latency drift before/after one pyc build --feedback rebuild
	$(PYTHON) benchmarks/feedback_drift.py --work /tmp/pyc-feedback

# issue #15 point 5: MiniLM-L6 on a long-tailed stream of (batch, seq) requests: the generic
# PyC (adaptive team; fixed team: PYC_ADAPTIVE_THREADS=0) vs onnxruntime at 2 threads, idle and
# beside 1 and 2 busy-loop processes, interleaved (benchmarks/results/under-load.{json,md})
bench-load:  ## issue #13 point 2: p50/p95 under synthetic CPU load, PyC vs onnxruntime
	$(PYTHON) benchmarks/under_load.py --engines pyc,pyc+PYC_ADAPTIVE_THREADS=0,ort,openvino --interleave \
		--out benchmarks/results/under-load

# symbolic plan, shape buckets and onnxruntime, interleaved (benchmarks/results/dynamic-buckets.*)
bench-dynamic:  ## p50/p95 latency and arena: generic symbolic plan vs shape buckets vs onnxruntime
	$(PYTHON) benchmarks/dynamic_buckets.py --work /tmp/pyc-dynamic-buckets

# the regression gate (issue #13): PyC/onnxruntime ratios of three small real models against
# benchmarks/baselines/cpu.json, failing beyond the noise band measured there
bench-check:  ## fail when a real model's PyC/onnxruntime ratio worsens beyond the baseline's band
	$(PYTHON) benchmarks/real_models.py --check benchmarks/baselines/cpu.json

bench-baseline:  ## rewrite benchmarks/baselines/cpu.json (5 fresh-process runs; commit first)
	$(PYTHON) benchmarks/real_models.py --write-baseline benchmarks/baselines/cpu.json --runs 5 \
		--models mlp,ppocr_cls,silero --repeat 40 --rounds 3 --threads 1

lint:
	$(PYTHON) -m ruff check pyc_cli tests benchmarks

architecture:  ## regenerate docs/module_graph.md (layers and imports, read from the source)
	$(PYTHON) -m pyc_cli.testing.layers --write docs/module_graph.md

docs: architecture  ## regenerate generated documentation (error codes, the module graph, op coverage)
	$(PYTHON) -m pyc_cli.coverage docs/conformance.json > docs/op_coverage.md
	$(PYTHON) -c "from pyc_cli.errors import errors_markdown; open('docs/errors.md','w').write(errors_markdown())"

models:  ## regenerate the reference models (transformer needs torch==2.13.0)
	$(PYTHON) tests/models/make_reference_models.py tests/models

coverage:  ## run the ONNX node-test conformance suite and regenerate docs/op_coverage.md
	$(PYTHON) tests/conformance.py --quiet --report docs/conformance.json
	$(PYTHON) -m pyc_cli.coverage docs/conformance.json > docs/op_coverage.md

FUZZ_SECONDS ?= 600
FUZZ_SEED ?= 1
FUZZ_JOBS ?= 1

fuzz:  ## differential fuzzing against onnxruntime (writes benchmarks/results/fuzz.json)
	$(PYTHON) -m pyc_cli.testing.fuzz --seconds $(FUZZ_SECONDS) --seed $(FUZZ_SEED) --jobs $(FUZZ_JOBS) --out benchmarks/results/fuzz.json

# issue #16 point 1: the what-if simulator's predictions against builds of the alternatives
# (benchmarks/results/whatif.{json,md}, the real models' figures apart; about 25 minutes on two
# loaded cores, of which the real models about 13: WHATIF_ARGS=--real for those, --quick a few)
bench-whatif:  ## predicted vs measured latency and arena over (model, A, B) pairs
	$(PYTHON) benchmarks/bench_whatif.py $(WHATIF_ARGS)
