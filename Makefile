# The two commands: `make run` starts the whole product, `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint bench cluster

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

run: $(VENV)/.installed
	$(PY) scripts/run.py

# Not one of the two set-up commands: the multi-machine topology on one host (see README).
cluster: $(VENV)/.installed
	$(PY) scripts/cluster.py

test: $(VENV)/.installed-test
	$(PY) scripts/test.py $(ARGS)

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: $(VENV)/.installed-test
	$(PY) bench/overhead.py
