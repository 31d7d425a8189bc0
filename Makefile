# `make demo` runs the quickstart; `make test` runs the whole suite. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-fast demo bench bench-serving bench-batching lint docs clean lab

# The JupyterLab extension's sources: when they change, the next install rebuilds it (npm, via pip).
LABEXTENSION_SOURCES := $(wildcard labextension/package.json labextension/yarn.lock labextension/tsconfig.json labextension/src/* labextension/style/*)

$(STAMP): pyproject.toml $(LABEXTENSION_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The inner loop: no Docker, no browser, no notebook, nothing slow (a few minutes).
test-fast: install
	$(PY) -m pytest -m "not docker and not browser and not notebook and not slow" $(PYTEST_ARGS)

demo: install
	mkdir -p .artifacts/demo
	$(PY) -m papermill notebooks/01-quickstart.ipynb .artifacts/demo/01-quickstart.ipynb --cwd .artifacts/demo \
		-p progress text -p workspace "$(CURDIR)/.artifacts/demo/workspace" -k python3 --log-output --no-progress-bar
	@echo "Executed notebook: $(CURDIR)/.artifacts/demo/01-quickstart.ipynb"

# The benchmarks against the peers, side by side (benchmarks/README.md): the scoring server (~15 min), then adaptive
# batching (~30 min: the load, then instructions per request counted with callgrind).
bench:  # one after the other, even under make -j (both pin the same CPUs)
	$(MAKE) bench-serving
	$(MAKE) bench-batching

bench-serving: install
	$(PY) benchmarks/serving_bench.py

bench-batching: install
	$(PY) benchmarks/batching_bench.py

lint: install
	$(PY) -m ruff check mlmagics tests benchmarks
	$(PY) -m mypy

# The documentation site (docs/): the executed notebooks (fresh ones from the last test run, else executed
# now by docs/prepare_notebooks.py) and the reference pages; a warning or a broken reference fails it.
docs: install
	@[ $(VENV)/.docs-installed -nt docs/requirements.txt ] || { $(PY) -m pip install --quiet -r docs/requirements.txt && touch $(VENV)/.docs-installed; }
	$(PY) docs/prepare_notebooks.py
	$(PY) -m sphinx -W --keep-going -n -b html -q docs docs/_build/html
	@echo "Docs: $(CURDIR)/docs/_build/html/index.html"

lab: install  ## JupyterLab on the notebooks with the Deployments panel (for people, not CI)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info mlmagics/labextension labextension/lib labextension/tsconfig.tsbuildinfo
