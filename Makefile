# CloudScale developer commands. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AZURITE_VERSION := 3.37.0
EMULATORS := .emulators
AZURITE := $(EMULATORS)/node_modules/.bin/azurite-table
COSMOSDB_SERVER_VERSION := 1.0.1
COSMOSDB_SERVER := $(EMULATORS)/node_modules/@vercel/cosmosdb-server/lib/cli.js

.PHONY: run test bench lint format check emulators clean help lock lock-check

help:
	@echo "make run    - run the whole pipeline locally on http://127.0.0.1:7071"
	@echo "make test   - install everything needed (emulators included) and run the test suite"
	@echo "make lint   - ruff and mypy"
	@echo "make check  - lint, lock check and test (what CI runs)"
	@echo "make lock   - regenerate the pinned, hashed requirements*.txt from requirements*.in"
	@echo "make lock-check - the locks match their .in files and requirements.txt installs on Python 3.13"
	@echo "make bench  - throughput and latency of each stage beside a bare endpoint (writes docs/benchmarks.md)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Each venv installs one lock, which is complete: every package pinned with its hashes, so pip
# checks every download against the lock (requirements-local.txt and requirements-dev.txt carry
# the runtime pins of requirements.txt too). The project itself goes in editable, without its
# dependencies, in a pip call of its own: pip refuses to mix an unhashed requirement (`-e .`)
# into a hash-checked install.
$(VENV)/.local-installed: requirements-local.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -r requirements-local.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.local-installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
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

# Regenerating the locks changes nothing, and requirements.txt resolves with pip on Python 3.13
# (what Azure's remote build runs); see .ci/check-locks.
lock-check: $(VENV)/.dev-installed
	.ci/check-locks

run: $(VENV)/.local-installed
	$(VENV)/bin/cloudscale run

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

test: $(VENV)/.dev-installed emulators
	$(PY) -m pytest

# BENCH_ARGS, e.g. BENCH_ARGS="--duration 20 --only bare ingest"
bench: $(VENV)/.local-installed
	$(PY) -m bench $(BENCH_ARGS)

# mypy twice: pyproject.toml targets 3.11, the oldest Python we run (development, CI), and
# Azure runs 3.13, where the standard library's types differ here and there.
lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/mypy --python-version 3.13 .

format: $(VENV)/.dev-installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check: lint lock-check test

clean:
	rm -rf $(VENV) $(EMULATORS) .cloudscale .pytest_cache .mypy_cache .ruff_cache *.egg-info
