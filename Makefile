# The few commands a person needs. `make demo` and `make test` are the README quick start.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo test lint typecheck fmt bench policy-test clean

$(BIN)/pgwarden: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/pgwarden

demo: venv
	$(BIN)/pgwarden demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

test: venv lint typecheck
	$(BIN)/pgwarden policy test policies/rego
	$(BIN)/pgwarden policy test testdata/policies/github_actions
	$(BIN)/pgwarden policy test policies/conftest
	$(BIN)/pgwarden policy test opa/system
	$(BIN)/python -m pytest -q -p no:cacheprovider

policy-test: venv
	$(BIN)/pgwarden policy test policies/rego --coverage
	$(BIN)/pgwarden policy test policies/conftest --coverage
	$(BIN)/pgwarden policy test opa/system

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pgwarden build *.egg-info
