# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates its own virtual environment in .venv and installs what it needs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q --disable-pip-version-check
STAMP  := $(VENV)/.installed

.PHONY: test lint demo golden clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[train,kernels,export,lsp,dev,nextrec,rechub]'
	$(PIP) install --no-deps nextrec==0.6.14  # its pins would pull a CUDA torch; see docs/nextrec.md
	$(PIP) install --no-deps --target $(VENV)/nextrec-0.4.28 nextrec==0.4.28  # apart: STAR's parity test
	touch $(STAMP)

# The habits first (lint, format, types: pyproject.toml configures each), then the tests.
test: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

demo: $(STAMP)
	$(PY) -m mtlc.cli.demo

# Refresh the golden files (generated modules, rendered diagnostics and the code list of
# docs/language.md); each prints its diff: review it, then commit.
golden: $(STAMP)
	$(PY) -m tests.golden.refresh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
