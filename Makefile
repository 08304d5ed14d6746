# `make help` lists the targets. Everything runs inside .venv, made from pyproject.toml and
# the pinned constraints.txt on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Offline machines: MLflow's telemetry has nowhere to go; set it to false to send it.
export MLFLOW_DISABLE_TELEMETRY ?= true
UI_PORT ?= 5000

.DEFAULT_GOAL := help
.PHONY: help install run sweep check test test-all browser postgres bench ui server params remote \
  plots-html

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

PIP := $(VENV)/bin/pip install --quiet --disable-pip-version-check -c constraints.txt

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[test,dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the project (pinned)

# Beyond the solo install: the team's tracking server, and what the tests exercise (the
# server and the optional launchers).
$(VENV)/.installed-server: $(VENV)/.installed
	$(PIP) -e '.[test,dev,server]'
	touch $@

$(VENV)/.installed-extras: $(VENV)/.installed
	$(PIP) -e '.[test,dev,server,joblib,ray,slurm]'
	touch $@

# The benchmark's peer beyond Keras: the same model in PyTorch (a CPU build).
$(VENV)/.installed-bench: $(VENV)/.installed
	$(PIP) -e '.[test,dev,bench]'
	touch $@

run: install ## run the pipeline: dvc repro (download, preprocess, train, evaluate)
	dvc repro

sweep: install ## the overfitting sweep: epochs 5,10,20 x batch 64,128,256, 3 seeds each (conf/grid/)
	python -m pipeline.sweep -m grid=overfitting

check: install ## the gate CI runs first: ruff check, ruff format --check, mypy (pinned)
	ruff check pipeline hydra_plugins bench tests
	ruff format --check pipeline hydra_plugins bench tests
	mypy pipeline hydra_plugins bench

test: $(VENV)/.installed ## the fast tests: no servers, browser or real-MNIST training
	pytest -m "not e2e and not server and not browser"

test-all: $(VENV)/.installed-extras browser postgres ## the whole test suite (real MNIST: set MNIST_SOURCE when offline)
	pytest

# Debian packages the tests use; where one cannot be installed, its tests say so and skip.
# $(call apt-get,PACKAGE): install it, updating the package lists first if need be.
APT := $(if $(filter 0,$(shell id -u)),,sudo -n) env DEBIAN_FRONTEND=noninteractive apt-get -qq
apt-get = $(APT) install --no-install-recommends $(1) >/dev/null 2>&1 || \
  ($(APT) update && $(APT) install --no-install-recommends $(1) >/dev/null) || \
  echo "could not install $(1): the tests that need it will skip"

# Chromium for the UI test; PostgreSQL's programs (initdb, pg_ctl) for the team server.
browser:
	@command -v chromium >/dev/null || $(call apt-get,chromium)

postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	  $(call apt-get,postgresql)

server: $(VENV)/.installed-server postgres ## the team's MLflow server on PostgreSQL (./server; ARGS=--help)
	python -m pipeline.server $(ARGS)

remote: ## the team's DVC remote for data, models and experiments: URL=<folder, ssh://, s3://>
	@test -n "$(URL)" || { echo "usage: make remote URL=/shared/dvc | ssh://host/path | s3://bucket/path [ENDPOINT=https://...]"; exit 2; }
	dvc remote add --default --force shared "$(URL)"
	$(if $(ENDPOINT),dvc remote modify shared endpointurl "$(ENDPOINT)")
	@echo "commit .dvc/config to share it; then dvc push, dvc exp push origin <exp>"

bench: $(VENV)/.installed-bench ## speed and memory against the notebook and its peers (Keras on JAX, PyTorch); writes bench/RESULTS.md
	python -m bench

ui: install ## browse runs: the MLflow UI for ./mlflow.db on http://127.0.0.1:$(UI_PORT)
	python -m pipeline.ui --port $(UI_PORT)

params: install ## recompose params.yaml from conf/ (never edit params.yaml by hand)
	python -m pipeline.config

plots-html: install ## regenerate .dvc/plots.html: dvc plots show's page, Vega inline (offline)
	python -m pipeline.ui.plots_html

