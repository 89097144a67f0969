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
	DEBUG=$${DEBUG:-1} $(BIN)/daphne -b $(HOST) -p $(PORT) --http-timeout 30 voicebridge.asgi:application

# The browser tests drive Debian's Chromium; install it when missing and apt-get can (as root).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Chromium for the browser tests (apt-get)..."; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
			|| echo "Chromium could not be installed: the browser tests will be skipped."; \
	else \
		echo "Chromium is missing and cannot be installed here (needs root and apt-get):" \
			"the browser tests will be skipped."; \
	fi

# The whole suite on SQLite, then the database tests again on PostgreSQL when it answers.
test: $(VENV)/.dev $(CHROMIUM)
	$(BIN)/python -m pytest
	$(BIN)/python -m tests.on_postgres -q

bench: $(VENV)/.dev
	$(BIN)/python -m bench

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
