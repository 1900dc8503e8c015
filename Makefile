# Two commands do all the set-up: `make run` (train the default run) and `make test` (run the tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the package metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/dlrun $(ARGS)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks.bench engine
	$(BIN)/python -m benchmarks.bench sweep --json benchmarks/results/sweep.json

clean:
	rm -rf $(VENV) outputs/20* outputs/iterate multirun mlflow.db mlruns
