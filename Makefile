# The two commands of the README: `make run` and `make test`. Everything else is theirs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-sqlite setup migrate

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

migrate: setup
	$(BIN)/python manage.py migrate --noinput

## Create the environment, migrate the embedded SQLite database under var/, and serve on 127.0.0.1:8000.
run: migrate
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/orkiva

## Create the environment and run the whole test suite against PostgreSQL (TEST_DATABASE_URL).
test: setup
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

## The embedded default: every test that does not need PostgreSQL's row locks, on SQLite.
test-sqlite: setup
	DATABASE_URL=sqlite:///$(CURDIR)/var/test-orkiva.sqlite3 $(BIN)/python -m pytest -m "not postgres_only" $(PYTEST_ARGS)
