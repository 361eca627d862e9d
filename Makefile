# Two commands: `make demo` and `make test`. Everything else is a convenience.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel on this kind of machine. GPU users: make TORCH="torch==2.13.0 --index-url ..." or any spec pip accepts.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-slow demo clean

venv: $(STAMP)

# Torch goes in first, in its own call, so nothing that depends on it can pull another build.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: venv
	$(BIN)/python -m pytest -m slow -q

demo: venv
	PATH="$(abspath $(BIN)):$$PATH" bash benchmarks/demo.sh

clean:
	rm -rf $(VENV) demo_output
