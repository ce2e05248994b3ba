# The two commands of the README: `make run` and `make test`. Everything else is theirs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000

NODE_STAMP := node_modules/.installed-$(shell cksum package-lock.json | cut -d' ' -f1)

.PHONY: run test test-sqlite setup setup-clis migrate

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

# The real agent CLIs the tests drive (Codex CLI, Claude Code), the MCP clients and conformance suite
# they test the bridge with, and the Node runtime (22), pinned in
# package-lock.json and installed under node_modules/ (never globally). Needs npm on PATH.
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "make: npm is needed to install the agent CLIs the tests run (package.json)" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	rm -f node_modules/.installed-*
	touch $@

setup-clis: $(NODE_STAMP)

migrate: setup
	$(BIN)/python manage.py migrate --noinput

## Create the environment, migrate the embedded SQLite database under var/, and serve on 127.0.0.1:8000.
run: migrate
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/orkiva

## Create the environment and run the whole test suite against PostgreSQL (TEST_DATABASE_URL).
test: setup setup-clis
	@$(BIN)/python -m tests.preflight $(TEST_DATABASE_URL)
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

## The embedded default: every test that does not need PostgreSQL's row locks, on SQLite.
test-sqlite: setup setup-clis
	DATABASE_URL=sqlite:///$(CURDIR)/var/test-orkiva.sqlite3 $(BIN)/python -m pytest -m "not postgres_only" $(PYTEST_ARGS)
