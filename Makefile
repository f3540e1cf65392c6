# Every install step lives here: CI runs `make test` on a clean clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test test-quick lint bench soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	@# rsync for xp backup/sync; Debian's Chromium for the dashboard's browser tests.
	@missing=""; command -v rsync >/dev/null || missing="rsync"; \
	  test -x /usr/bin/chromium || missing="$$missing chromium"; \
	  if [ -n "$$missing" ]; then apt-get update -qq && apt-get install -y -qq $$missing; fi
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[examples]'
	touch $@

demo: $(DEMO_STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/run-demo.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples tools
	$(BIN)/ruff format --check src tests benchmarks examples tools
	$(BIN)/mypy

# Two processes (pytest-xdist); tests that start a Ray cluster share one (tests/conftest.py).
PYTEST_PARALLEL := -n 2

test: lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q $(PYTEST_PARALLEL)

test-quick: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q $(PYTEST_PARALLEL) -m "not integration"

# The fault-injection suite with every randomized fault repeated at least 100 times.
soak: $(STAMP)
	XP_SOAK=1 PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q $(PYTEST_PARALLEL) tests/reliability

bench: $(STAMP)
	bash benchmarks/run.sh

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache test-output
