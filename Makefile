# hybridrl — `make reproduce` regenerates paper/, `make test` runs the test suite (both create .venv first).
#
#   make reproduce                  every chapter, profile `quick` (a laptop CPU), results cached in build/cache
#   make reproduce PROFILE=paper    the published scale (meant for a GPU: add DEVICE=cuda)
#   make reproduce FORCE=1          recompute instead of reading the cache
#   make reproduce CACHED_ONLY=1    train nothing: draw every chapter from its finished runs (stamped partial)
#   make reproduce PLAIN=1          run the chapters as plain Python scripts (no Jupyter; e.g. a headless GPU node)
#   make reproduce DEVICE=cuda DETERMINISTIC=1   deterministic CUDA kernels (HYBRIDRL_DETERMINISTIC; slower)
#   make test                       unit tests + every notebook in the `smoke` profile (< 10 min on 2 cores)
#   make bench                      timings -> paper/benchmarks.md (not part of `reproduce`); REPEATS=1 for speed
#   make sweep PROFILE=paper BACKEND=ray GPUS_PER_RUN=0.25   every chapter's runs, no notebooks (hybridrl.sweeps)
#   make sync                       pair notebooks/*.py with their output-free .ipynb after editing

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PROFILE ?= quick
DEVICE ?= cpu
FORCE ?= 0
CACHED_ONLY ?= 0
PLAIN ?= 0
DETERMINISTIC ?= $(or $(HYBRIDRL_DETERMINISTIC),0)
export HYBRIDRL_DETERMINISTIC := $(DETERMINISTIC)
BACKEND ?= local
GPUS_PER_RUN ?= 0

.PHONY: venv test reproduce bench sweep sync clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,ray]"
	touch $@

venv: $(BIN)/.installed

test: venv
	$(BIN)/python -m pytest -q

reproduce: venv
	$(BIN)/python -m hybridrl.pipeline reproduce --profile $(PROFILE) --device $(DEVICE) $(if $(filter 1,$(FORCE)),--force,) $(if $(filter 1,$(CACHED_ONLY)),--cached-only,) $(if $(filter 1,$(PLAIN)),--plain,)

bench: venv
	$(BIN)/python -m hybridrl.pipeline bench --device $(DEVICE) $(if $(filter 1,$(PLAIN)),--plain,) $(if $(REPEATS),--repeats $(REPEATS),)

sweep: venv
	$(BIN)/python -m hybridrl.sweeps --profile $(PROFILE) --backend $(BACKEND) --gpus-per-run $(GPUS_PER_RUN) $(if $(filter 1,$(FORCE)),--force,)

sync: venv
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.py

clean:
	rm -rf build
