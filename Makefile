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
	mkdir -p .artifacts/demo
	$(PY) -m papermill notebooks/01-quickstart.ipynb .artifacts/demo/01-quickstart.ipynb --cwd .artifacts/demo \
		-p progress text -p workspace "$(CURDIR)/.artifacts/demo/workspace" -k python3 --log-output --no-progress-bar
	@echo "Executed notebook: $(CURDIR)/.artifacts/demo/01-quickstart.ipynb"

bench: install
	$(PY) benchmarks/serving_bench.py

lint: install
	$(PY) -m ruff check mlmagics tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
