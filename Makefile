# Hospital platform: one-command local stack and test run. See README.md.
SHELL := /bin/bash
PY := .venv/bin/python
STACK := $(PY) deploy/local/stack.py
DB ?= sqlite
ROLE ?= receptionist
PYTEST_ARGS ?=
# Test files run in parallel on TEST_WORKERS pytest-xdist workers, each with its own servers and ports
# (ADR 0011); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
LINT_PATHS := conftest.py libs services tests tools deploy

.PHONY: help setup up down ps logs token test test-fast bench proto proto-check lint typecheck k8s-check clean

help:
	@echo "make up [DB=postgres]   set up on first use, start the whole platform on loopback"
	@echo "make down | ps | logs   stop / list / show logs of what make up started"
	@echo "make token ROLE=doctor  print a development bearer token"
	@echo "make test               unit, integration (real NATS, S3, PostgreSQL) and cross-service tests"
	@echo "make lint               ruff rules and formatting (what CI checks before the tests)"
	@echo "make bench              benchmarks (results in bench-results/, figures in docs/benchmarks.md)"
	@echo "make proto              regenerate libs/contracts from proto/"

setup:
	@bash deploy/local/bootstrap.sh

up: setup
	@$(STACK) up --db $(DB)

down:
	@$(STACK) down

ps:
	@$(STACK) ps

logs:
	@$(STACK) logs $(SERVICE)

token:
	@$(STACK) token $(ROLE)

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: setup
	$(PY) tests/bench/run.py

proto: setup
	$(PY) tools/gen_proto.py

proto-check: setup
	$(PY) tools/gen_proto.py --check

lint: setup
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)

typecheck: setup
	$(PY) -m mypy libs/chassis/src libs/testing/src $(wildcard services/*/src)

clean: down
	rm -rf var bench-results
