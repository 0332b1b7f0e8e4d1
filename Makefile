# `make run` and `make test` create .venv on first use (about 2 minutes), then reuse it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# DVC stage commands call `python`: the one in .venv.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help run test lint bench params clean-venv

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## set up .venv and rebuild the whole study with `dvc repro`
	$(BIN)/dvc repro

test: $(STAMP)  ## set up .venv and run the test suite
	$(BIN)/pytest

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)  ## install the benchmark extras, then run benchmarks/ (about 10 min)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/dvc repro prepare
	$(BIN)/python -m benchmarks.run

params: $(STAMP)  ## recompose params.yaml from conf/ (what `dvc exp run` does)
	$(BIN)/python -m mnist_regression.params

clean-venv:  ## remove .venv
	rm -rf $(VENV)
