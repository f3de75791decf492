# RailFlow — `make run` builds everything on DuckDB, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
# The stamp changes whenever requirements.txt or pyproject.toml does, so `make setup` reinstalls
# only then.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml 2>/dev/null | cksum | cut -d' ' -f1)
# dbt reads the project's profile (a copy of profiles.example.yml) unless you point it at yours
DBT_PROFILES_DIR ?= $(CURDIR)/.dbt
export DBT_PROFILES_DIR

.PHONY: help setup run test test-python test-fast lint format app serve bench bench-anomalies docs requirements clean distclean airflow-setup airflow airflow-requirements

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

setup: $(STAMP) .dbt/profiles.yml ## Create .venv and install pinned dependencies (idempotent)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# uv when it can be had (fast); plain pip otherwise. Bytecode is compiled at install: with
	@# PYTHONDONTWRITEBYTECODE set (as on this machine), every process would otherwise recompile numpy,
	@# polars and dbt on import (~1 s per dbt invocation here).
	@if command -v uv >/dev/null 2>&1; then UV=uv; \
	elif $(PY) -m pip install -q "uv==$(UV_VERSION)" >/dev/null 2>&1; then UV=$(BIN)/uv; \
	else UV=; fi; \
	if [ -n "$$UV" ]; then echo "installing with uv"; $$UV pip install -q --compile-bytecode --python $(PY) -r requirements.txt; \
	else echo "installing with pip"; $(PY) -m pip install -q --compile -r requirements.txt; fi; \
	echo "installing railflow (editable: the \`railflow\` command runs this checkout)"; \
	if [ -n "$$UV" ]; then $$UV pip install -q --python $(PY) --no-deps -e .; \
	else $(PY) -m pip install -q --no-deps -e .; fi
	@rm -f $(VENV)/.installed-*
	@touch $@

.dbt/profiles.yml: profiles.example.yml
	@mkdir -p .dbt
	@cp profiles.example.yml $@

run: setup ## Run the whole pipeline at the default scale (DuckDB unless RAILFLOW_TARGET says)
	$(BIN)/railflow run

test: setup airflow-setup lint test-python ## Lint, then every Python test (incl. dbt build on a small world)

test-python: setup airflow-setup ## Only the pytest suite
	$(PY) -m pytest

test-fast: setup ## The quick loop (< 2 min): ruff and every test that builds no world, runs no dbt, opens no browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(PY) -m pytest -m "not slow and not browser"

lint: setup ## ruff (Python) and sqlfluff (dbt SQL)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# the dbt templater compiles against its own scratch DuckDB file, never the warehouse
	@mkdir -p target
	RAILFLOW_DUCKDB_PATH=target/sqlfluff.duckdb $(BIN)/sqlfluff lint models macros tests/dbt snapshots --processes 2

format: setup ## Apply ruff and sqlfluff fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	@mkdir -p target
	RAILFLOW_DUCKDB_PATH=target/sqlfluff.duckdb $(BIN)/sqlfluff fix models macros tests/dbt snapshots --processes 2

app: setup ## Start the Streamlit app on http://127.0.0.1:8501
	$(BIN)/railflow app

serve: setup ## Start the scoring API on http://127.0.0.1:8000 (OpenAPI docs at /docs)
	$(PY) -m serving --host 127.0.0.1 --port 8000

bench: setup ## Run the benchmarks and rewrite docs/benchmarks.md
	$(PY) -m benchmarks

bench-anomalies: setup ## Grade anomaly detection on unseen seeds; rewrite docs/anomalies.md
	$(PY) -m benchmarks.anomalies

docs: setup ## Generate dbt docs (target/index.html)
	$(PY) -m railflow.dbt docs generate

requirements: ## Re-pin requirements.txt from requirements.in (uv on PATH, or the one make setup installed)
	$$(command -v uv || echo $(BIN)/uv) pip compile requirements.in -o requirements.txt --python-version 3.11 --upgrade

# Apache Airflow + astronomer-cosmos in their own virtualenv: their pins never constrain the
# project's (requirements-airflow.in). The DAG runs the stages and dbt through .venv.
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed-$(shell cat requirements-airflow.txt 2>/dev/null | cksum | cut -d' ' -f1)
# Airflow's metadata database, logs and config, gitignored; telemetry off (Airflow, Cosmos, dbt)
AIRFLOW_ENV := AIRFLOW_HOME=$(CURDIR)/.airflow AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__USAGE_DATA_COLLECTION__ENABLED=False \
	AIRFLOW__COSMOS__ENABLE_TELEMETRY=False SCARF_ANALYTICS=false DO_NOT_TRACK=1 \
	AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=8080

airflow-setup: setup $(AIRFLOW_STAMP) ## Create .venv-airflow with the pinned Airflow 3 + Cosmos (idempotent)

$(AIRFLOW_STAMP): requirements-airflow.txt
	@test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	@UV=$$(command -v uv || echo $(BIN)/uv); \
	if [ -x "$$UV" ]; then echo "installing Airflow with uv"; $$UV pip install -q --compile-bytecode --python $(AIRFLOW_VENV)/bin/python -r requirements-airflow.txt; \
	else echo "installing Airflow with pip"; $(AIRFLOW_VENV)/bin/python -m pip install -q --compile -r requirements-airflow.txt; fi
	@rm -f $(AIRFLOW_VENV)/.installed-*
	@touch $@

airflow: airflow-setup ## Start Airflow standalone on http://127.0.0.1:8080 with the railflow_daily DAG
	@# standalone starts its components as `airflow ...` subprocesses: its venv goes first on PATH
	PATH=$(CURDIR)/$(AIRFLOW_VENV)/bin:$$PATH $(AIRFLOW_ENV) $(AIRFLOW_VENV)/bin/airflow standalone

airflow-requirements: ## Re-pin requirements-airflow.txt from requirements-airflow.in
	$$(command -v uv || echo $(BIN)/uv) pip compile requirements-airflow.in -o requirements-airflow.txt --python-version 3.11 --upgrade

clean: ## Remove generated data, dbt target and model artifacts (keeps .venv)
	rm -rf data target logs ml/artifacts test-artifacts .pytest_cache .ruff_cache

distclean: clean ## Also remove the virtual environment and local dbt profile
	rm -rf $(VENV) .dbt $(AIRFLOW_VENV) .airflow
