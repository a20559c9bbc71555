# The two commands of the README: `make demo` (set up, then run a simulated autonomous
# campaign) and `make test` (set up, then the whole test suite). Set-up steps are skipped
# when their inputs have not changed (scripts/setup.sh keeps stamps).
SHELL := /bin/bash
ENV := source scripts/env.sh &&
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup test demo bench-planner clean

setup:
	@scripts/setup.sh

test: setup
	@$(ENV) python -m pytest test $(PYTEST_ARGS)

# A full 688-experiment campaign on the simulated lab; DEMO_ARGS="--batches 5" for a short one.
demo: setup
	@$(ENV) mobile-chemist campaign --database runs/demo.db --fresh $(DEMO_ARGS)

bench-planner: setup
	@$(ENV) python bench/planner.py $(BENCH_ARGS)

clean:
	rm -rf build install .venv
