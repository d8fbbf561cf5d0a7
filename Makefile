# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?=

.PHONY: run test lint typecheck tools services bench schema openapi clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed-run

## run: start healthd on the packaged default config (or CONFIG=path/to/healthd.yaml)
run: $(VENV)/.installed-run
	$(BIN)/healthd run $(if $(CONFIG),-c $(CONFIG))

## test: install test extras, make sure the local services are up, lint, type-check, run the suite
test: $(VENV)/.installed-test services lint typecheck
	$(BIN)/pytest

## tools: apt-get what the suite runs (openssl, server binaries, Nagios plugins); services calls it
tools:
	bash scripts/tools.sh

services:
	bash scripts/services.sh

lint: $(VENV)/.installed-test
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

## bench: the benchmark suite; tables printed and written to bench/results/
bench: $(VENV)/.installed-test
	command -v wrk >/dev/null || apt-get install -y -q wrk
	command -v valgrind >/dev/null || apt-get install -y -q valgrind
	command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || apt-get install -y -q haproxy
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/instructions.py
	$(BIN)/python bench/checks.py
	$(BIN)/python bench/shutdown.py
	$(BIN)/python bench/soak.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/status.py
	$(BIN)/python bench/pod_shutdown.py
	$(BIN)/python bench/embedded.py
	$(BIN)/python bench/gate.py

## schema: regenerate config/healthd.schema.json from the models
schema: $(VENV)/.installed-run
	$(BIN)/healthd schema > config/healthd.schema.json

## openapi: regenerate config/openapi.json (the probe and admin APIs)
openapi: $(VENV)/.installed-run
	$(BIN)/healthd openapi > config/openapi.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
