# `make run` and `make test` do all set-up: venv, packages, PostgreSQL/Redis (see config/devservices.py).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := run

VENV := .venv
PY := $(VENV)/bin/python
# Find or start PostgreSQL and Redis, then export DATABASE_URL and REDIS_URL.
# Assigned first so that a failure stops the recipe (a bare `eval "$(...)"` would not).
SERVICES := services="$$($(PY) -m config.devservices env)"; eval "$$services"

.PHONY: run test bench screenshots lint clean-data

# Debian's python3 lacks the venv module until python3-venv is installed; do that when we can.
$(PY):
	python3 -m venv $(VENV) || { \
		rm -rf $(VENV); \
		[ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null || { echo "install python3-venv, then retry" >&2; exit 1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
		python3 -m venv $(VENV); \
	}

# Stamps: reinstall only when the requirements change.
$(VENV)/.stamp-run: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.stamp-dev: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.stamp-run

run: $(VENV)/.stamp-run
	$(SERVICES); exec $(PY) bin/run

# The browser tests use Debian's chromium; without it they fail (they do not skip).
test: $(VENV)/.stamp-dev
	@if ! command -v chromium >/dev/null; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
				|| echo "WARNING: apt-get could not install chromium; the browser tests will fail." >&2; \
		else \
			echo "WARNING: chromium is missing and cannot be installed with apt-get here;" \
				"install it (e.g. sudo apt-get install chromium) or the browser tests will fail." >&2; \
		fi; \
	fi
	$(SERVICES); $(PY) -m pytest

bench: $(VENV)/.stamp-dev
	$(SERVICES); $(PY) bench/run.py

screenshots: $(VENV)/.stamp-dev
	$(SERVICES); $(PY) -m pytest tests/screenshots.py

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check .

# Stop the embedded servers (if any) and delete their data.
clean-data:
	if [ -x $(PY) ]; then $(PY) -m config.devservices stop; fi
	rm -rf .data
