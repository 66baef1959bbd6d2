# The two quick-start commands: `make demo` and `make test` (CI runs `make test`).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test servers bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"

# nats-server (Debian package) for the multi-node tests; needs root, skipped otherwise
servers:
	@command -v nats-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server) \
	      || echo "warning: could not install nats-server"; \
	  else echo "note: run 'sudo apt-get install nats-server' for the multi-node tests"; fi; }

demo: install
	$(BIN)/gridledger demo

test: install-test servers
	$(BIN)/python -m pytest -q tests benchmarks

bench: install-test
	for b in ledger clearing grid privacy; do $(BIN)/gridledger bench $$b; done

clean:
	rm -rf $(VENV) gridledger-out .pytest_cache .hypothesis
