# The two commands of the README: `make demo` (set up, then run a simulated autonomous
# campaign) and `make test` (set up, then the whole test suite). Set-up steps are skipped
# when their inputs have not changed (scripts/setup.sh keeps stamps).
SHELL := /bin/bash
ENV := source scripts/env.sh &&
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup test demo generate bench-planner bench-physics bench-navigation bench-vision clean

setup:
	@scripts/setup.sh

test: setup
	@$(ENV) python -m pytest test $(PYTEST_ARGS)

# A full 688-experiment campaign on the simulated lab; DEMO_ARGS="--batches 5" for a short one.
demo: setup
	@$(ENV) mobile-chemist campaign --database runs/demo.db --fresh $(DEMO_ARGS)

bench-planner: setup
	@$(ENV) python bench/planner.py $(BENCH_ARGS)

# Builtin navigation in the MuJoCo lab: BENCH_ARGS="--quick", "--ros" (over the ROS graph).
bench-navigation: setup
	@$(ENV) python bench/navigation.py $(BENCH_ARGS)

# Vision on the held-out synthetic set, HeinSight beside it, latency: BENCH_ARGS="--quick".
bench-vision: setup
	@$(ENV) python bench/vision.py $(BENCH_ARGS)

# Regenerate the committed robot description and map from config/lab.yaml (tests check they
# are in sync).
generate: setup
	@$(ENV) python -m mobile_chemist.robot_description && python -m mobile_chemist.lab_map

bench-physics: setup
	@$(ENV) python -m mobile_chemist.physics_sim --seconds 120

clean:
	rm -rf build install .venv
