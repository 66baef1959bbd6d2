# The two quick-start commands: `make demo` and `make test` (CI runs `make test`).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow lint install install-test servers ven bench clean

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

# The OpenADR 3 VEN the flexibility tests drive is ElaadNL's openadr3-client, which needs
# Python >= 3.12: its own venv (.venv-ven) when such a Python exists (PATH or pyenv); the test
# is skipped, naming why, when none does
VEN_PY ?= $(shell for p in $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3 python3.12 python3.13; do \
  $$p -c "import sys; assert sys.version_info >= (3, 12)" 2>/dev/null && { echo $$p; break; }; done)
ven:
	@if [ -x .venv-ven/bin/python ] && .venv-ven/bin/python -c "import openadr3_client" 2>/dev/null; then :; \
	elif [ -n "$(VEN_PY)" ]; then \
	  $(VEN_PY) -m venv .venv-ven && .venv-ven/bin/python -m pip install -q "openadr3-client>=2.4" \
	    || echo "warning: could not install openadr3-client into .venv-ven"; \
	else echo "note: no Python >= 3.12 found: the OpenADR VEN test will be skipped"; fi

demo: install
	$(BIN)/gridledger demo

# The quick-start test command: the static checks (ruff, mypy --strict), then every test in
# tests/ on both cores (pytest-xdist; a demo run shared by several tests — the default day —
# is built once, by one worker: see tests/conftest.py) except those marked `slow`: a test
# that starts a simulation run of its own (a defence-removal or variant run, ~10-60 s each)
# or searches a large case. `make test-slow` runs those; CI (.ci/run) runs both.
# Performance targets are not checked here: they are ratios measured by `make bench`, which
# wants an otherwise idle machine (a shared CI box distorts timings, not correctness).
# tests/integration start their own 4 validator processes and 3 NATS servers and wait (with
# deadlines) for their recovery from kills: they run after the rest, two at a time (a network
# mostly waits: ~0.6 of a core each; 215 s one at a time, 135-160 s two at a time at load 7-9)
# PYTHONDONTWRITEBYTECODE is emptied for the tests (the .pyc files go to the gitignored
# __pycache__ folders of this clone and its .venv): with it set (as on our CI image), every
# Python process the tests start (validator hosts, CLI runs, servers: dozens) compiled the
# package from source again (~0.4-1.4 s of CPU each).
test: install-test servers ven lint
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not slow" tests --ignore=tests/integration
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n 2 tests/integration

# every defence-removal and variant run (the tests `make test` leaves out); CI runs it after
# `make test`
test-slow: install-test servers ven
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n 2 --dist loadgroup -m slow tests --ignore=tests/integration

# ruff (rule set in pyproject.toml) and mypy --strict over src/
lint: install-test
	$(BIN)/ruff check src
	$(BIN)/mypy src

# every performance target in quick mode (benchmarks/test_*.py), one after the other
bench: install-test
	$(BIN)/python -m pytest -q benchmarks

clean:
	rm -rf $(VENV) gridledger-out .pytest_cache .hypothesis
