# `make demo` and `make test` set up .venv on first use, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch: an unpinned torch pulls a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0

.PHONY: demo test test-all bench clean docs

$(BIN)/sers: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/sers

venv: $(BIN)/sers

demo: $(BIN)/sers
	$(BIN)/sers demo --out demo_out

test: $(BIN)/sers
	$(BIN)/python -m pytest -q

test-all: $(BIN)/sers
	$(BIN)/python -m pytest -q -m "slow or not slow"

clean:
	rm -rf $(VENV) demo_out *.egg-info
