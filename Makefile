# CloudScale developer commands. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AZURITE_VERSION := 3.37.0
EMULATORS := .emulators
AZURITE := $(EMULATORS)/node_modules/.bin/azurite-table
COSMOSDB_SERVER_VERSION := 1.0.1
COSMOSDB_SERVER := $(EMULATORS)/node_modules/@vercel/cosmosdb-server/lib/cli.js
# The worker-conformance tier runs under the Python the app is deployed on, in a venv holding
# exactly what Azure installs (requirements.txt) plus the test runner. Override with
# `make test DEPLOY_PYTHON=/path/to/python3.13`.
# Candidates in order: $PYTHON313, python3.13 on PATH, pyenv's 3.13.0; each must really be 3.13.
PY313_PROBE := import sys; assert sys.version_info[:2] == (3, 13); print(sys.executable)
DEPLOY_PYTHON ?= $(shell { [ -n "$$PYTHON313" ] && "$$PYTHON313" -c "$(PY313_PROBE)"; } 2>/dev/null || \
	python3.13 -c "$(PY313_PROBE)" 2>/dev/null || \
	PYENV_VERSION=3.13.0 python -c "$(PY313_PROBE)" 2>/dev/null)
DEPLOY_VENV := .venv-deploy
DEPLOY_PY := $(DEPLOY_VENV)/bin/python
# What the deployment venv installs: the lock Azure's remote build installs, worker library included.
DEPLOY_REQUIREMENTS := requirements.txt
CONFORMANCE_RUNNER := tests/conformance/runner-requirements.txt
# The real Segment-API SDKs the end-to-end tests drive, in a venv of their own (requirements-sdk.in says why).
SDK_VENV := .venv-sdk
# The whole suite again under the deployment Python, in a development venv of its own.
PY313_VENV := .venv-py313
PY313 := $(PY313_VENV)/bin/python
# `make run PORT=8080 ARGS="--instances 1"`: the port and any other `cloudscale run` options.
# Set with := so that a PORT in the environment (many platforms set one) is not taken by mistake.
PORT := 7071
ARGS :=
# pip's own progress on a terminal; one line per step in a log (CI). $(shell) captures stdout,
# so the terminal test looks at stderr, which make hands down.
PIP_QUIET := $(if $(shell [ -t 2 ] && echo terminal),,--quiet)

# Before anything is installed, and before make looks at the venvs' stamps: PYTHON is 3.11 or
# newer, and .venv is not stale (.ci/check-python). Not for `make`, `make help` or `make clean`.
ifneq ($(filter-out help clean emulators,$(or $(MAKECMDGOALS),help)),)
PYTHON_CHECK := $(shell .ci/check-python "$(PYTHON)" "$(VENV)" "$(origin PYTHON)" "$(findstring n,$(firstword -$(MAKEFLAGS)))" >&2; echo $$?)
ifneq ($(PYTHON_CHECK),0)
$(error the Python check above failed)
endif
endif

.PHONY: run test conformance test-py313 bench lint format check emulators browser screenshot clean help lock lock-check

help:
	@echo "make run    - run the whole pipeline locally on http://127.0.0.1:7071 (PORT=8080, ARGS=\"--instances 1\", PYTHON=python3.12)"
	@echo "make test   - install everything needed (emulators included) and run the test suite"
	@echo "make conformance - load and invoke the app with Microsoft's Python worker (part of make test)"
	@echo "make test-py313 - the test suite under Python 3.13 (what CI runs after make test)"
	@echo "make lint   - ruff, mypy and the import (layering) contracts"
	@echo "make check  - lint, lock check and test (what CI runs)"
	@echo "make lock   - regenerate the pinned, hashed requirements*.txt from requirements*.in"
	@echo "make lock-check - the locks match their .in files and requirements.txt installs on Python 3.13"
	@echo "make screenshot - regenerate docs/images/dashboard.png (the dashboard in headless Chromium, with some traffic)"
	@echo "make bench  - wrk against each stage beside a do-nothing ASGI app (needs wrk; writes docs/benchmarks.md)"

$(PY):
	@echo "Creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version))"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) --upgrade pip

# Each venv installs one lock, which is complete: every package pinned with its hashes, so pip
# checks every download against the lock (requirements-local.txt and requirements-dev.txt carry
# the runtime pins of requirements.txt too). The project itself goes in editable, without its
# dependencies, in a pip call of its own: pip refuses to mix an unhashed requirement (`-e .`)
# into a hash-checked install.
$(VENV)/.local-installed: requirements-local.txt pyproject.toml | $(PY)
	@echo "Installing the local host's $$(grep -c '^[A-Za-z0-9]' requirements-local.txt) pinned packages" \
		"(requirements-local.txt) into $(VENV): a minute or two the first time, seconds once pip's cache has them"
	$(PY) -m pip install $(PIP_QUIET) -r requirements-local.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.local-installed
	@echo "Installing the test and lint tools' $$(grep -c '^[A-Za-z0-9]' requirements-dev.txt) pinned packages" \
		"(requirements-dev.txt) into $(VENV): another minute or two the first time"
	$(PY) -m pip install $(PIP_QUIET) -r requirements-dev.txt
	touch $@

# The locks: requirements*.in hold the ranges we choose, requirements*.txt what pip installs.
# One universal resolution (Python 3.11 and up, every OS), so Python 3.13 on Linux (Azure) and
# 3.11 (development) install the same pins; markers choose where versions must differ. uv keeps
# the pins already in a lock unless told otherwise: `make lock LOCK_ARGS=--upgrade` takes the
# newest releases the ranges allow, `LOCK_ARGS="--upgrade-package NAME"` one package.
# The order matters: requirements-local.in is constrained by requirements.txt, and
# requirements-dev.in by requirements-local.txt. LOCK_DIR lets `make lock-check` regenerate a copy.
LOCK_DIR ?= .
LOCK_COMPILE = $(abspath $(VENV))/bin/uv pip compile --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command "make lock" $(LOCK_ARGS)

lock: $(VENV)/.dev-installed
	cd $(LOCK_DIR) && $(LOCK_COMPILE) requirements.in -o requirements.txt
	cd $(LOCK_DIR) && $(LOCK_COMPILE) requirements-local.in -o requirements-local.txt
	cd $(LOCK_DIR) && $(LOCK_COMPILE) requirements-dev.in -o requirements-dev.txt
	cd $(LOCK_DIR) && $(LOCK_COMPILE) requirements-sdk.in -o requirements-sdk.txt

# Regenerating the locks changes nothing, and requirements.txt resolves with pip on Python 3.13
# (what Azure's remote build runs); see .ci/check-locks.
lock-check: $(VENV)/.dev-installed
	.ci/check-locks

run: $(VENV)/.local-installed
	$(VENV)/bin/cloudscale run --port $(PORT) $(ARGS)

# Azurite (Table Storage emulator) and cosmosdb-server (Cosmos DB emulator) install from npm
# into a project-local folder. Without Node the emulator-backed tests are skipped with a
# reason, except under CI=true.
emulators:
	@if [ -x "$(AZURITE)" ] && grep -q '"version": "$(AZURITE_VERSION)"' $(EMULATORS)/node_modules/azurite/package.json 2>/dev/null; then \
		true; \
	elif command -v npm >/dev/null 2>&1; then \
		echo "installing azurite@$(AZURITE_VERSION) into $(EMULATORS)/"; \
		npm install --prefix $(EMULATORS) --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION); \
	elif [ "$$CI" = "true" ]; then \
		echo "npm is required under CI=true (Azurite backs the Table Storage tests)" >&2; exit 1; \
	else \
		echo "WARNING: npm not found: Table Storage tests against Azurite will be SKIPPED" >&2; \
	fi
	@if [ -f "$(COSMOSDB_SERVER)" ] && grep -q '"version": "$(COSMOSDB_SERVER_VERSION)"' $(EMULATORS)/node_modules/@vercel/cosmosdb-server/package.json 2>/dev/null; then \
		true; \
	elif command -v npm >/dev/null 2>&1; then \
		echo "installing @vercel/cosmosdb-server@$(COSMOSDB_SERVER_VERSION) into $(EMULATORS)/"; \
		npm install --prefix $(EMULATORS) --no-audit --no-fund --loglevel=error @vercel/cosmosdb-server@$(COSMOSDB_SERVER_VERSION); \
	elif [ "$$CI" = "true" ]; then \
		echo "npm is required under CI=true (cosmosdb-server backs the Cosmos DB tests)" >&2; exit 1; \
	else \
		echo "WARNING: npm not found: Cosmos DB tests against cosmosdb-server will be SKIPPED" >&2; \
	fi

# Debian's chromium drives the dashboard's browser tests (Playwright launches it by path; Playwright's
# own browser download is never used). Installed with apt-get as root, or through sudo; where that
# cannot be done the browser tests are skipped with a warning, except under CI=true.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ ! -x "$(CHROMIUM)" ] && command -v apt-get >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; else SUDO=none; fi; \
		if [ "$$SUDO" != none ]; then \
			echo "installing Debian's chromium (apt-get) for the dashboard's browser tests"; \
			$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || true; \
		fi; \
	fi
	@if [ -x "$(CHROMIUM)" ]; then \
		true; \
	elif [ "$$CI" = "true" ]; then \
		echo "$(CHROMIUM) is required under CI=true (the dashboard's browser tests); apt-get install chromium" >&2; exit 1; \
	else \
		echo "WARNING: $(CHROMIUM) not found and not installable here: the dashboard's browser tests will be SKIPPED" >&2; \
	fi

# The README's picture of the dashboard: the browser test that takes it, told where to write it.
screenshot: $(VENV)/.dev-installed browser
	CLOUDSCALE_DASHBOARD_SCREENSHOT=docs/images/dashboard.png $(PY) -m pytest -q tests/e2e/test_dashboard.py -k test_screenshot

# Rebuilt from nothing when its lock changes. Any Python 3.11+ will do: only the SDKs run in it.
$(SDK_VENV)/.installed: requirements-sdk.txt
	@echo "Installing the Segment-API SDKs the end-to-end tests drive (requirements-sdk.txt) into $(SDK_VENV)"
	rm -rf $(SDK_VENV)
	$(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SDK_VENV)/bin/python -m pip install --quiet -r requirements-sdk.txt
	touch $@

test: $(VENV)/.dev-installed $(SDK_VENV)/.installed emulators browser
	$(PY) -m pytest
	@$(MAKE) --no-print-directory conformance

# Rebuilt from nothing whenever its inputs change, so a package dropped from requirements.txt
# is gone from the venv too.
$(DEPLOY_VENV)/.installed: $(DEPLOY_REQUIREMENTS) $(CONFORMANCE_RUNNER)
	rm -rf $(DEPLOY_VENV)
	$(DEPLOY_PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_PY) -c 'import sys; sys.exit(sys.version_info < (3, 13) and "DEPLOY_PYTHON must be Python 3.13 or newer")'
	$(DEPLOY_PY) -m pip install --quiet --upgrade pip
	$(DEPLOY_PY) -m pip install --quiet -r $(DEPLOY_REQUIREMENTS)
	# A second install: pip checks hashes for every requirement of an install once one has them.
	$(DEPLOY_PY) -m pip install --quiet -r $(CONFORMANCE_RUNNER)
	touch $@

$(PY313_VENV)/.installed: requirements.txt requirements-local.txt requirements-dev.txt pyproject.toml
	rm -rf $(PY313_VENV)
	$(DEPLOY_PYTHON) -m venv $(PY313_VENV)
	$(PY313) -c 'import sys; sys.exit(sys.version_info < (3, 13) and "DEPLOY_PYTHON must be Python 3.13 or newer")'
	$(PY313) -m pip install --quiet --upgrade pip
	$(PY313) -m pip install --quiet -r requirements-dev.txt
	$(PY313) -m pip install --quiet --no-deps -e .
	touch $@

# Without Python 3.13 both are skipped with a warning, except under CI=true.
ifeq ($(strip $(DEPLOY_PYTHON)),)
conformance test-py313:
	@if [ "$$CI" = "true" ]; then \
		echo "Python 3.13 is required under CI=true ($@); set DEPLOY_PYTHON=/path/to/python3.13" >&2; exit 1; \
	fi
	@echo "WARNING: Python 3.13 not found: $@ is SKIPPED; set DEPLOY_PYTHON=/path/to/python3.13" >&2
else
conformance: $(DEPLOY_VENV)/.installed
	$(DEPLOY_PY) -m pytest tests/conformance

test-py313: $(PY313_VENV)/.installed $(SDK_VENV)/.installed emulators browser
	$(PY313) -m pytest
endif

# BENCH_ARGS, e.g. BENCH_ARGS="--duration 20 --only bare ingest"
bench: $(VENV)/.local-installed
	$(PY) -m cloudscale_local.bench $(BENCH_ARGS)

# mypy twice: pyproject.toml targets 3.11, the oldest Python we run (development, CI), and
# Azure runs 3.13, where the standard library's types differ here and there. lint-imports
# checks the layering contracts in pyproject.toml ([tool.importlinter]).
lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/mypy --python-version 3.13 .
	$(VENV)/bin/lint-imports --no-cache

format: $(VENV)/.dev-installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check: lint lock-check test

clean:
	rm -rf $(VENV) $(DEPLOY_VENV) $(PY313_VENV) $(SDK_VENV) $(EMULATORS) .cloudscale .pytest_cache .mypy_cache .ruff_cache *.egg-info
