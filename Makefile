# voicebridge: make run · make test · make bench · make lint (each creates .venv when missing)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test bench lint

# Local settings: a .env file (see .env.example) is read when present.
ifneq (,$(wildcard .env))
include .env
export
endif

$(VENV)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# A local development server: DEBUG on unless the environment says otherwise.
run: $(VENV)/.runtime
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py collectstatic --noinput -v 0
	DEBUG=$${DEBUG:-1} $(BIN)/daphne -b $(HOST) -p $(PORT) voicebridge.asgi:application

# The whole suite on SQLite, then the database tests again on PostgreSQL when it answers.
test: $(VENV)/.dev
	$(BIN)/python -m pytest
	$(BIN)/python -m tests.on_postgres -q

bench: $(VENV)/.dev
	$(BIN)/python -m bench

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
