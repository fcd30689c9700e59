# `make run` and `make test` do all set-up: venv, packages, PostgreSQL/Redis (see config/devservices.py).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := run

VENV := .venv
PY := $(VENV)/bin/python
# Find or start PostgreSQL and Redis, then export DATABASE_URL and REDIS_URL.
# Assigned first so that a failure stops the recipe (a bare `eval "$(...)"` would not).
SERVICES := services="$$($(PY) -m config.devservices env)"; eval "$$services"

.PHONY: run test test-fast bench screenshots lint clean-data

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

# Debian packages the tests need: chromium (browser tests) and nodejs (the page's JavaScript unit
# tests). Installed with apt where we can; without them those tests fail (they do not skip).
APT_NEEDS := chromium:chromium node:nodejs
define apt_install
	@missing=""; for need in $(APT_NEEDS); do command -v "$${need%%:*}" >/dev/null || missing="$$missing $${need#*:}"; done; \
	if [ -n "$$missing" ]; then \
		if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing \
				|| echo "WARNING: apt-get could not install$$missing; their tests will fail." >&2; \
		else \
			echo "WARNING:$$missing missing and cannot be installed with apt-get here;" \
				"install them (e.g. sudo apt-get install$$missing) or their tests will fail." >&2; \
		fi; \
	fi
endef

test: $(VENV)/.stamp-dev
	$(apt_install)
	node --test tests/js/
	$(SERVICES); $(PY) -m pytest

# Everything but the browser tests: the quick loop while working.
test-fast: $(VENV)/.stamp-dev
	node --test tests/js/
	$(SERVICES); $(PY) -m pytest -m "not browser"

bench: $(VENV)/.stamp-dev
	$(SERVICES); $(PY) bench/run.py

screenshots: $(VENV)/.stamp-dev
	$(SERVICES); $(PY) -m pytest tests/screenshots.py

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy catalog quotas generation live chat api

# Stop the embedded servers (if any) and delete their data.
clean-data:
	if [ -x $(PY) ]; then $(PY) -m config.devservices stop; fi
	rm -rf .data
