# The two commands a newcomer types: `make run` (serve on http://127.0.0.1:8080) and `make test`.
# Everything they need is set up on the way, and only when missing or stale: the virtualenv, the Docker
# engine, the sandbox image, a PostgreSQL for the integration tests (see scripts/).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help venv docker image smoke postgres kube migrate run test lint bench docs clean

help: ## this list
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

venv: $(VENV)/.stamp ## .venv with the project and its dev tools (re-installed when pyproject.toml changes)

$(VENV)/.stamp: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) \
		|| { echo "cannot create $(VENV): install python3-venv (Debian: apt-get install python3-venv)" >&2; exit 1; }
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

docker: ## make sure a Docker engine answers (installs and starts one on Debian as root)
	@bash scripts/ensure-docker.sh

image: docker ## build the sandbox image when missing or stale
	@bash scripts/ensure-image.sh

smoke: docker ## smoke-test the sandbox image
	@bash sandbox-images/python/smoke.sh

postgres: ## make sure a PostgreSQL for the tests runs; prints its URL
	@bash scripts/ensure-postgres.sh

kube: ## build (once, cached) the Kubernetes 1.20 control plane tests/kube runs; prints its bin directory
	@bash scripts/ensure-kube-apiserver.sh

migrate: venv ## apply the database migrations (CP_DATABASE_URL, default ./data SQLite)
	@mkdir -p data
	$(BIN)/controlplane migrate

run: venv image ## serve the API on http://127.0.0.1:8080 (Ctrl-C stops)
	@mkdir -p data
	$(BIN)/controlplane serve

lint: venv ## ruff, import-linter layers, mypy over the package and the tests (and shellcheck on the scripts when installed)
	$(BIN)/ruff check controlplane tests sandbox-images
	$(BIN)/lint-imports
	$(BIN)/mypy controlplane tests
	$(BIN)/mypy sandbox-images/python/volume_clear.py sandbox-images/python/volume_sweep.py sandbox-images/python/volume_own.py
	@if command -v shellcheck >/dev/null; then \
		shellcheck -x scripts/*.sh sandbox-images/python/*.sh .ci/run; \
	else echo "shellcheck not installed: shell scripts not checked" >&2; fi

test: lint image ## the whole suite, on the real Docker engine and a real PostgreSQL
	@url=$$(bash scripts/ensure-postgres.sh); \
		echo "CP_TEST_DATABASE_URL=$$url"; \
		CP_TEST_DATABASE_URL="$$url" $(BIN)/pytest -q $(PYTEST_ARGS)

bench: venv image ## benchmarks: synchronous-run overhead; throughput, burst and deadline overshoot
	$(BIN)/python tests/bench/sync_overhead.py
	$(BIN)/python tests/bench/throughput.py

docs: venv ## regenerate the README's configuration table from the Settings class
	$(BIN)/python -c 'import re,subprocess; t=subprocess.run(["$(BIN)/controlplane","config-table"],capture_output=True,text=True,check=True).stdout; p="README.md"; s=open(p).read(); a,b="<!-- config-table:start -->\n","<!-- config-table:end -->"; i=s.index(a)+len(a); open(p,"w").write(s[:i]+t+s[s.index(b):])'

clean: ## remove ./data (stops nothing)
	rm -rf data
