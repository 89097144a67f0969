# voicebridge: make run · make demo · make test · make check · make bench (each creates .venv when missing)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run demo test check lint bench

# Settings come from the environment and from .env, which voicebridge's settings read themselves.
# Without a .env, a local server runs with DEBUG on unless the environment says otherwise.
LOCAL := $(if $(wildcard .env),,DEBUG=$${DEBUG:-1})

$(VENV)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# A local development server.
run: $(VENV)/.runtime
	$(LOCAL) $(BIN)/python manage.py migrate --noinput
	$(LOCAL) $(BIN)/python manage.py collectstatic --noinput -v 0
	$(LOCAL) $(BIN)/daphne -b $(HOST) -p $(PORT) --http-timeout 30 voicebridge.asgi:application

# A server beside the fake Deepgram, with one call placed: try it with no key and no phone.
demo: $(VENV)/.dev
	$(BIN)/python -m devtools.demo

# The whole suite on SQLite, then the database tests again on PostgreSQL when it answers.
test: $(VENV)/.dev
	$(BIN)/python -m pytest
	$(BIN)/python -m tests.on_postgres -q

check: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

lint: check

bench: $(VENV)/.dev
	$(BIN)/python -m bench

