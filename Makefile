# The two commands of the README (`make demo`, `make test`) and a few helpers. Every target
# runs the set-up first; it is idempotent and takes about a second when nothing changed.
.PHONY: setup demo test test-fast clean

VENV ?= .venv

setup:
	@bash scripts/setup.sh

demo: setup
	@$(VENV)/bin/live-ros demo

test: setup
	@$(VENV)/bin/pytest $(PYTEST_ARGS)

# Skip the slow tests (colcon build, training runs) while iterating.
test-fast: setup
	@$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf build install log
