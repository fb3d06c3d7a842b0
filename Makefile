# The README's commands. `make dev` is idempotent: a second run only checks pyproject.toml's age.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# llama-cpp-python compiles llama.cpp (about 8 minutes on 2 cores): build its wheel once, keep it.
# Without OpenMP, on ggml's own thread pool, as Ollama and DMR build llama.cpp (faster here:
# BENCHMARKS.md). The wheel's file name does not say so: the flavour is in the cache directory,
# so a wheel cached with OpenMP (in wheels/) is never picked up; pip's cache is bypassed for the
# same reason.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CPP_CMAKE_ARGS := -DGGML_OPENMP=OFF
WHEELS ?= $(HOME)/.cache/modelrunner/wheels/no-openmp

.PHONY: dev run up down test test-fast lint lint-chart chart-sync bench cluster cluster-down images clean

dev: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@mkdir -p $(WHEELS)
	@ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || \
		{ echo "building llama-cpp-python $(LLAMA_CPP_VERSION) (first time only, ~8 min)"; \
		  CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" $(PIP) wheel -q --no-deps --no-cache-dir \
		    -w $(WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION); }
	$(PIP) install -q --find-links $(WHEELS) -e '.[dev]'
	@touch $@

run: dev
	$(VENV)/bin/modelrunner serve --default-model

# The whole system: local cluster, CRDs, operator, a runner with the default model, a ModelRunner
# and a Model, Ready and answering (hack/up.sh). `make down` stops all of it.
up: dev
	hack/up.sh

down:
	hack/down.sh

test: dev
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

test-fast: dev
	$(PY) -m pytest -m "not slow and not cluster and not images" $(PYTEST_ARGS)

lint: dev
	$(VENV)/bin/ruff check runner operator tests bench
	$(VENV)/bin/ruff format --check runner operator tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

CHART := charts/model-runner-operator

# crds/ is the one source; the chart carries byte-identical copies.
chart-sync:
	rm -f $(CHART)/crds/*.yaml
	cp crds/*.yaml $(CHART)/crds/

lint-chart: dev
	@diff -r crds $(CHART)/crds || { echo "chart CRDs differ from crds/: run make chart-sync"; exit 1; }
	@helm=$$(hack/cluster.sh path helm) || { echo "helm is not built yet: hack/cluster.sh build"; exit 1; }; \
	  $$helm lint --strict $(CHART) && $$helm template lint $(CHART) >/dev/null && \
	  $$helm template lint $(CHART) --set watchNamespaces='{a,b}' --set serviceMonitor.enabled=true >/dev/null
	$(VENV)/bin/hadolint runner/Dockerfile operator/Dockerfile

bench: dev
	$(PY) -m bench

cluster:
	hack/cluster.sh up

# The runner and operator images from their Dockerfiles (buildah, no Docker daemon; root), pushed to
# $MODELRUNNER_REGISTRY; reuses the llama-cpp-python wheel of make dev (hack/images.sh).
# The registry defaults to the local cluster's (hack/node: reachable from the host and the node).
images:
	WHEELS=$(WHEELS) MODELRUNNER_REGISTRY=$${MODELRUNNER_REGISTRY-$$(hack/node/node.sh env | sed -n 's/^MODELRUNNER_REGISTRY=//p')} \
	  hack/images.sh

cluster-down:
	hack/cluster.sh down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
