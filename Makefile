# The commands that matter. `make help` lists them.
PY := .venv/bin/python
CLUSTER := python3 hack/cluster.py

.PHONY: help install quickstart down test test-unit lint cluster-up cluster-down crds

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install: ## Python environment (.venv) with every component and the test tools
	bash hack/install-python.sh

quickstart: install ## The main flow on this machine: control plane, operator, train, serve, predict
	$(PY) hack/quickstart.py up

down: ## Stop everything quickstart started
	python3 hack/quickstart.py down

# Test workers for the unit layer (pure logic: safe side by side); the other layers share one
# control plane, one real node and the machine's cores, so they run one test at a time.
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

test: ## Every test: unit, integration, e2e (Ray, HTTP) and the cluster path on the real node
	$(PY) -m pytest tests -m unit -n $(WORKERS) --durations=10
	$(PY) -m pytest tests -m "not unit" --durations=20

test-unit: ## Unit tests only
	$(PY) -m pytest tests -m unit -n $(WORKERS)

lint: ## ruff, mypy, the layers (import-linter), generated files up to date, helm lint
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	.venv/bin/lint-imports
	$(PY) hack/gen_crds.py --check
	$(PY) hack/gen_reference.py --check
	bash hack/helm-lint.sh

cluster-up: ## Start the local Kubernetes control plane (builds it on first use)
	$(CLUSTER) up

cluster-down: ## Stop it
	$(CLUSTER) down

crds: ## Regenerate crds/ from the API types
	$(PY) hack/gen_crds.py
