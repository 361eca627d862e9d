# Two commands: `make demo` and `make test`. Everything else is a convenience.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel on this kind of machine. GPU users add the index of their CUDA build:
# make TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu126" test
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-slow demo clean

venv: $(STAMP)

# Torch goes in first, in its own call, so nothing that depends on it can pull another build.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)" $(TORCH_PIP_ARGS)
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
