# The two quick-start commands: `make demo` and `make test` (CI runs `make test`).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install install-test servers bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"

# Debian packages for the tests: nats-server (multi-node tests) and chromium (the demo
# report opened in a headless browser); needs root, those tests are skipped otherwise
servers:
	@command -v nats-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server) \
	      || echo "warning: could not install nats-server"; \
	  else echo "note: run 'sudo apt-get install nats-server' for the multi-node tests"; fi; }
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || command -v google-chrome >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	      || echo "warning: could not install chromium"; \
	  else echo "note: run 'sudo apt-get install chromium' for the report browser test"; fi; }

demo: install
	$(BIN)/gridledger demo

# CI's command: every test in tests/ on both cores (pytest-xdist).
# Performance targets are not checked here: they are ratios measured by `make bench`, which
# wants an otherwise idle machine (a shared CI box distorts timings, not correctness).
test: install-test servers
	$(BIN)/python -m pytest -q -n 2 tests

# ruff (rule set in pyproject.toml) and mypy --strict over src/
lint: install-test
	$(BIN)/ruff check src
	$(BIN)/mypy src

# every performance target in quick mode (benchmarks/test_*.py), one after the other
bench: install-test
	$(BIN)/python -m pytest -q benchmarks

clean:
	rm -rf $(VENV) gridledger-out .pytest_cache .hypothesis
