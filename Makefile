# Two entry points: `make app` starts the app, `make test` runs the test suite.
# Each creates .venv and installs requirements on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: app test venv bench lint clean

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.installed

app: venv
	$(PY) -m app

test: venv
	$(PY) -m pytest -q tests

bench: venv
	$(PY) benchmarks/bench_topology.py

clean:
	rm -rf $(VENV) .pytest_cache
