# `make demo` and `make test` on a fresh machine with Python 3.10+, make and git. Each creates .venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint typecheck pytest bench debs clean

$(STAMP): pyproject.toml hatch_build.py collector/llmmeter_collector/_otlp_fields.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests run for real: prometheus, promtool, prometheus-alertmanager, amtool.
debs:
	@command -v promtool >/dev/null && command -v prometheus-alertmanager >/dev/null || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    prometheus prometheus-alertmanager >/dev/null)
	@# docker-compose validates docker-compose.yml (`config` needs no Docker engine); tests/test_deploy.py
	@(docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null) || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    docker-compose >/dev/null)

demo: $(STAMP)
	$(PY) -m llmmeter_collector.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) debs
	$(VENV)/bin/pytest

test: lint typecheck pytest

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
