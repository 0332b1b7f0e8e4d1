# `make run` and `make test` set up .venv from uv.lock on first use (seconds),
# then reuse it. uv comes from PyPI into .tools/ when it is not on PATH.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the test and lint tools on top (playwright, moto, psycopg, scikit-learn, ruff, pytest)
DEV_STAMP := $(VENV)/.installed-dev
UV_VERSION := 0.13.9
UV ?= $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
# uv uses the machine's Python; it never downloads one of its own.
export UV_PYTHON_DOWNLOADS := never
# DVC stage commands call `python`: the one in .venv.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help run test ui restore compare lint bench params lock clean-venv

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet uv==$(UV_VERSION)

# --frozen: install exactly what uv.lock pins; never re-resolve. --compile-bytecode:
# where PYTHONDONTWRITEBYTECODE is set (many CI runners and images), Python would
# otherwise compile MLflow's sources again in every process.
# `make run` installs what the study runs; `make test` adds the test tools.
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) venv --quiet --allow-existing --seed --python $(PYTHON) $(VENV)
	$(UV) sync --quiet --frozen --inexact --compile-bytecode --python $(BIN)/python
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(UV) sync --quiet --frozen --inexact --extra dev --compile-bytecode --python $(BIN)/python
	touch $(DEV_STAMP)

# Debian packages the service tests use (Chromium for the browser tests, not
# Playwright's own download; PostgreSQL for the tracking server's; SLURM and munge
# for the cluster's), installed on first `make test` as root or with sudo.
SYSTEM := /usr/bin/chromium /usr/bin/pg_ctlcluster /usr/sbin/slurmctld /usr/sbin/munged
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)
CAN_INSTALL := $(or $(filter 0,$(shell id -u)),$(shell sudo -n true 2>/dev/null && echo yes))

$(SYSTEM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium postgresql slurm-wlm munge >/dev/null

run: $(STAMP)  ## set up .venv and rebuild the whole study with `dvc repro`
	@$(BIN)/python -m mnist_regression.params --check >/dev/null
	$(BIN)/dvc repro
	@changed=$$(git diff --name-only HEAD -- dvc.lock reports 2>/dev/null | wc -l); \
	  if [ "$$changed" -gt 0 ]; then echo "note: $$changed files of dvc.lock and reports/ \
	differ from the commit (changes of yours, or another processor's last bits in the \
	training outputs); nothing is staged: \`make compare\` checks the study against the commit"; fi

# tests/run_suite.sh: the service tests run beside the others, in a network
# namespace where only 127.0.0.1 answers; both always run to the end.
test: $(DEV_STAMP)  ## set up .venv (and the Debian packages) and run the test suite
	@services=; if [ -n "$(CAN_INSTALL)" ]; then \
	  $(MAKE) --no-print-directory $(SYSTEM) && services=yes; fi; \
	  sh tests/run_suite.sh $(BIN)/pytest "$$services"

ui: $(STAMP)  ## start `mlflow ui` on the study's store and print the address of its runs
	$(BIN)/python -m mnist_regression.tracking.store ui

# The committed params.yaml (in the index too: `dvc exp run` stages what it
# changes), then `dvc repro`: each stage's outputs come back from DVC's run cache,
# untrained, and dvc.lock follows them. (`git restore dvc.lock && dvc checkout`
# finds only the committing machine's output hashes, which may differ here.)
restore: | $(STAMP)  ## return the workspace to the committed study, from DVC's run cache
	git restore --source=HEAD --staged --worktree params.yaml
	git restore --staged dvc.lock reports
	$(BIN)/dvc repro

compare: $(STAMP)  ## compare the rebuilt study with the committed one, within tolerances
	$(BIN)/python -m mnist_regression.study.compare

lint: $(DEV_STAMP)  ## ruff lint and format check
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# PyTorch stays out of uv.lock: pip takes the CPU build of this version from the
# machine's disk, where uv would download a CUDA build of several GB.
bench: $(STAMP)  ## install the benchmark extras, then run benchmarks/ (about 10 min)
	$(UV) sync --quiet --frozen --inexact --extra dev --extra bench --compile-bytecode --python $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/dvc repro prepare
	$(BIN)/python -m benchmarks.run

params: $(STAMP)  ## recompose params.yaml from conf/ (what `dvc exp run` does)
	$(BIN)/python -m mnist_regression.params

lock: | $(UV)  ## upgrade every pinned version in uv.lock to the newest allowed
	$(UV) lock --upgrade --python $(PYTHON)

clean-venv:  ## remove .venv
	rm -rf $(VENV)
