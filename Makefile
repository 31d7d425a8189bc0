# `make demo` runs the quickstart; `make test` runs the whole suite. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install
	$(PY) -m mlmagics quickstart --workdir .artifacts/quickstart

bench: install
	$(PY) benchmarks/serving_bench.py

lint: install
	$(PY) -m ruff check mlmagics tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
