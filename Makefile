PYTHON ?= python3
PYTEST_ARGS ?= -q

.PHONY: test golden bench lint docs models coverage fuzz architecture

test:  ## run the whole test suite
	$(PYTHON) -m pytest $(PYTEST_ARGS)

golden:  ## regenerate golden IR / plan / decision-log / C dumps of the reference models
	$(PYTHON) tests/golden_tool.py --write

bench:  ## PyC vs onnxruntime, side by side (writes benchmarks/results/)
	$(PYTHON) benchmarks/bench.py

lint:
	$(PYTHON) -m ruff check pyc_cli tests benchmarks

architecture:  ## regenerate docs/module_graph.md (layers and imports, read from the source)
	$(PYTHON) -m pyc_cli.testing.layers --write docs/module_graph.md

docs:  ## regenerate generated documentation
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
