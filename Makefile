# `make demo` and `make test` on a fresh machine with Python 3.11+, make and git. Each creates .venv.
# The collector needs Python 3.11+: the first of python3.13, python3.12, python3.11, python3 that is 3.11 or newer
# (or PYTHON=/path/to/python).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	  && { echo $$p; break; }; done)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint typecheck docs pytest bench debs lock clean

$(STAMP): pyproject.toml hatch_build.py collector/llmmeter_collector/ingest/_otlp_fields.c
	@[ -n "$(PYTHON)" ] && $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	  { echo "llmmeter needs Python 3.11 or newer for the collector (found: $$($(or $(PYTHON),python3) --version 2>&1 || echo none)); install python3.11+ or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
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

# KEEP=1: keep the demo's collector running for the CLI until Ctrl-C.
demo: $(STAMP)
	$(PY) -m llmmeter_collector.devtools.demo $(if $(filter-out 0,$(KEEP)),--keep)

# lint-imports: no import cycles, the collector's stages import downwards only ([tool.importlinter] in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The documentation site (mkdocs.yml, docs/), built strictly into a temporary directory: a broken link fails.
docs: $(STAMP)
	@out=$$(mktemp -d) && NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet -d "$$out"; \
	  status=$$?; rm -rf "$$out"; exit $$status

pytest: $(STAMP) debs
	$(VENV)/bin/pytest

test: lint typecheck docs pytest

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# The Docker image installs from these hash-locked files (Dockerfile); regenerate after changing dependencies.
LOCK = $(VENV)/bin/uv pip compile --python-version 3.12 --python-platform x86_64-manylinux_2_28 \
	--generate-hashes --no-header --emit-index-url
lock: $(STAMP)
	$(PY) -m pip install --quiet uv
	printf 'hatchling>=1.25\n' | $(LOCK) - -o requirements/build.lock
	$(LOCK) pyproject.toml --extra collector -o requirements/collector.lock
	$(LOCK) pyproject.toml --extra collector --extra archive -o requirements/collector-archive.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
